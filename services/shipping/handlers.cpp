// shipping: handlers around the pure decisions in shipping.hpp.
#include "handlers.hpp"

#include "shipping.hpp"

namespace shop::shipping {
namespace {
constexpr std::string_view kShipments = "shipments";
}

void install(troupe::Node& node, const Seed&) {
  node.on<PaymentCaptured>([](const PaymentCaptured& e, troupe::Context& ctx) {
    auto s = schedule(ctx.state().load<Shipment>(kShipments, e.order_id), e);
    if (!s) return;
    ctx.state().save(kShipments, e.order_id, *s);
    ctx.emit(ShipmentScheduled{s->order_id, s->shipment_id}, e.order_id);
  });
  node.on<OrderCancelled>([](const OrderCancelled& e, troupe::Context& ctx) {
    auto s = cancel(ctx.state().load<Shipment>(kShipments, e.order_id), e);
    if (s) ctx.state().save(kShipments, e.order_id, *s);
  });
  node.on_query<ListShipments>([](const ListShipments& q, const troupe::QueryContext& ctx) {
    ShipmentList out;
    ctx.state().for_each<Shipment>(kShipments, [&](std::string_view key, const Shipment& s) {
      if (key <= q.after.value_or("")) return true;
      out.shipments.push_back(s);
      return static_cast<std::int64_t>(out.shipments.size()) < q.limit.value_or(500);
    });
    return out;
  });
}

}  // namespace shop::shipping
