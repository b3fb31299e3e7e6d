// inventory: handlers around the pure decisions in inventory.hpp.
#include "handlers.hpp"

#include "../payments/messages.hpp"
#include "../shipping/messages.hpp"
#include "../shop/paging.hpp"
#include "inventory.hpp"

namespace shop::inventory {
namespace {

constexpr std::string_view kStock = "stock", kReservations = "reservations";

void apply(troupe::Context& ctx, const std::string& order_id, bool releasing) {
  auto r = ctx.state().load<Reservation>(kReservations, order_id);
  if (!r) {
    // The order ended before its OrderPlaced was applied here (a dead letter retried
    // later, say): remember it, so that a late OrderPlaced reserves nothing.
    if (releasing) ctx.state().save(kReservations, order_id, Reservation{order_id, "", 0, "released"});
    return;
  }
  auto stock = ctx.state().load<StockItem>(kStock, r->sku);
  if (!stock) return;
  auto change = releasing ? release(*stock, *r) : commit(*stock, *r);
  if (!change) return;
  ctx.state().save(kStock, change->stock.sku, change->stock);
  ctx.state().save(kReservations, order_id, change->reservation);
  if (change->released) ctx.emit(*change->released, order_id);
}

}  // namespace

void install(troupe::Handlers& node, const Seed& seed) {
  node.publishes<StockReserved, StockRejected, StockReleased>();
  node.initialize([&seed](troupe::StateView& state) {
    for (const auto& [sku, s] : seed.skus)
      if (!state.load<StockItem>(kStock, sku)) state.save(kStock, sku, StockItem{sku, s.stock, s.stock, 0, 0});
  });
  node.on<OrderPlaced>([](const OrderPlaced& e, troupe::Context& ctx) {
    auto outcome = reserve(ctx.state().load<StockItem>(kStock, e.sku),
                           ctx.state().load<Reservation>(kReservations, e.order_id), e);
    if (auto* r = std::get_if<Reserved>(&outcome)) {
      ctx.state().save(kStock, r->stock.sku, r->stock);
      ctx.state().save(kReservations, e.order_id, r->reservation);
      ctx.emit(r->event, e.order_id);
    } else if (auto* x = std::get_if<Rejected>(&outcome)) {
      ctx.state().save(kReservations, e.order_id, Reservation{e.order_id, e.sku, 0, "rejected"});
      ctx.emit(x->event, e.order_id);
    }
  });
  node.on<PaymentDeclined>([](const PaymentDeclined& e, troupe::Context& ctx) { apply(ctx, e.order_id, true); });
  node.on<OrderCancelled>([](const OrderCancelled& e, troupe::Context& ctx) { apply(ctx, e.order_id, true); });
  node.on<ShipmentScheduled>([](const ShipmentScheduled& e, troupe::Context& ctx) { apply(ctx, e.order_id, false); });
  node.on_query<GetStock>([](const GetStock& q, const troupe::QueryContext& ctx) -> troupe::Result<StockReport> {
    auto limit = page_limit("GetStock", q.limit);
    if (!limit) return limit.error();
    StockReport out;
    ctx.state().for_each<StockItem>(kStock, [&](std::string_view, const StockItem& s) { out.items.push_back(s); });
    out.reservations = page<Reservation>(ctx.state(), kReservations, q.after.value_or(""), *limit);
    return out;
  });
}

}  // namespace shop::inventory
