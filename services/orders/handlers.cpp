// orders: handlers — thin wrappers around the pure decisions in orders.hpp.
#include "handlers.hpp"

#include "../inventory/messages.hpp"
#include "../payments/messages.hpp"
#include "../shipping/messages.hpp"
#include "../shop/paging.hpp"
#include "orders.hpp"

namespace shop::orders {
namespace {

constexpr std::string_view kTable = "orders";

void finish(troupe::Context& ctx, const std::string& order_id, bool confirmed, const std::string& reason) {
  auto order = ctx.state().load<OrderView>(kTable, order_id);
  if (!order) return;  // not ours: an outcome for an order this service never placed
  auto next = confirmed ? confirm(*order) : cancel(*order, reason);
  if (!next) return;
  ctx.state().save(kTable, order_id, *next);
  if (confirmed)
    ctx.emit(OrderConfirmed{next->order_id, next->customer}, next->order_id);
  else
    ctx.emit(OrderCancelled{next->order_id, next->customer, reason}, next->order_id);
}

}  // namespace

void install(troupe::Handlers& node, const Seed& seed) {
  node.publishes<OrderPlaced, OrderConfirmed, OrderCancelled>();
  node.on_command<PlaceOrder>([seed](const PlaceOrder& cmd, troupe::Context& ctx) -> troupe::Result<void> {
    auto decided = place(ctx.state().load<OrderView>(kTable, cmd.order_id), cmd, seed);
    if (!decided) return decided.error();
    if (!*decided) return {};  // already placed
    const OrderView& o = **decided;
    ctx.state().save(kTable, o.order_id, o);
    ctx.emit(OrderPlaced{o.order_id, o.customer, o.sku, o.quantity, o.amount}, o.order_id);
    return {};
  });
  node.on_command<CancelOrder>([](const CancelOrder& cmd, troupe::Context& ctx) -> troupe::Result<void> {
    if (!ctx.state().load<OrderView>(kTable, cmd.order_id))
      return troupe::reject(troupe::Rejection::Code::invalid, "CancelOrder", "no order '" + cmd.order_id + "'");
    finish(ctx, cmd.order_id, false, cmd.reason.empty() ? "cancelled by the customer" : cmd.reason);
    return {};
  });
  node.on<StockRejected>([](const StockRejected& e, troupe::Context& ctx) {
    finish(ctx, e.order_id, false, "stock: " + e.reason);
  });
  node.on<PaymentDeclined>([](const PaymentDeclined& e, troupe::Context& ctx) {
    finish(ctx, e.order_id, false, "payment: " + e.reason);
  });
  node.on<ShipmentScheduled>([](const ShipmentScheduled& e, troupe::Context& ctx) {
    finish(ctx, e.order_id, true, "");
  });
  node.on_query<GetOrder>([](const GetOrder& q, const troupe::QueryContext& ctx) -> troupe::Result<OrderView> {
    auto o = ctx.state().load<OrderView>(kTable, q.order_id);
    if (!o) return troupe::reject(troupe::Rejection::Code::invalid, "GetOrder", "no order '" + q.order_id + "'");
    return *o;
  });
  node.on_query<ListOrders>([](const ListOrders& q, const troupe::QueryContext& ctx) -> troupe::Result<OrderList> {
    auto limit = page_limit("ListOrders", q.limit);
    if (!limit) return limit.error();
    OrderList out;
    out.orders = page<OrderView>(ctx.state(), kTable, q.after.value_or(""), *limit);
    return out;
  });
}

}  // namespace shop::orders
