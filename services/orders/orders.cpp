// orders: pure decisions.
#include "orders.hpp"

namespace shop::orders {

using Code = troupe::Rejection::Code;

troupe::Result<std::optional<OrderView>> place(const std::optional<OrderView>& existing,
                                               const PlaceOrder& cmd, const Seed& seed) {
  if (cmd.order_id.empty()) return troupe::reject(Code::invalid, "PlaceOrder", "order_id is empty");
  if (cmd.customer.empty()) return troupe::reject(Code::invalid, "PlaceOrder " + cmd.order_id, "customer is empty");
  if (cmd.quantity <= 0)
    return troupe::reject(Code::invalid, "PlaceOrder " + cmd.order_id,
                          "quantity must be positive, got " + std::to_string(cmd.quantity));
  if (cmd.quantity > 1'000'000)
    return troupe::reject(Code::invalid, "PlaceOrder " + cmd.order_id,
                          "quantity must be at most 1000000, got " + std::to_string(cmd.quantity));
  if (existing) return std::optional<OrderView>{};
  auto sku = seed.skus.find(cmd.sku);
  std::int64_t price = sku == seed.skus.end() ? 0 : sku->second.price;
  return std::optional<OrderView>{OrderView{cmd.order_id, cmd.customer, cmd.sku, cmd.quantity,
                                            price * cmd.quantity, "placed", ""}};
}

bool terminal(const OrderView& o) { return o.status == "confirmed" || o.status == "cancelled"; }

std::optional<OrderView> confirm(const OrderView& o) {
  if (terminal(o)) return std::nullopt;
  OrderView next = o;
  next.status = "confirmed";
  return next;
}

std::optional<OrderView> cancel(const OrderView& o, const std::string& reason) {
  if (terminal(o)) return std::nullopt;
  OrderView next = o;
  next.status = "cancelled";
  next.reason = reason;
  return next;
}

}  // namespace shop::orders
