// shipping: handlers around the pure decisions in shipping.hpp.
#include "handlers.hpp"

#include "../shop/paging.hpp"
#include "shipping.hpp"

namespace shop::shipping {
namespace {
constexpr std::string_view kShipments = "shipments";
}

void install(troupe::Handlers& node, const Seed&) {
  node.publishes<ShipmentScheduled>();
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
  node.on_query<ListShipments>([](const ListShipments& q,
                                  const troupe::QueryContext& ctx) -> troupe::Result<ShipmentList> {
    auto limit = page_limit("ListShipments", q.limit);
    if (!limit) return limit.error();
    ShipmentList out;
    out.shipments = page<Shipment>(ctx.state(), kShipments, q.after.value_or(""), *limit);
    return out;
  });
}

}  // namespace shop::shipping
