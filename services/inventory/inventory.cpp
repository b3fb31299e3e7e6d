// inventory: pure decisions.
#include "inventory.hpp"

namespace shop::inventory {

ReserveOutcome reserve(const std::optional<StockItem>& stock, const std::optional<Reservation>& existing,
                       const OrderPlaced& o) {
  if (existing) return std::monostate{};
  if (!stock) return Rejected{{o.order_id, o.sku, "unknown SKU '" + o.sku + "'"}};
  if (stock->on_hand < o.quantity)
    return Rejected{{o.order_id, o.sku,
                     "only " + std::to_string(stock->on_hand) + " of " + o.sku + " on hand, " +
                         std::to_string(o.quantity) + " wanted"}};
  StockItem next = *stock;
  next.on_hand -= o.quantity;
  next.reserved += o.quantity;
  return Reserved{next, {o.order_id, o.sku, o.quantity, "held"},
                  {o.order_id, o.customer, o.sku, o.quantity, o.amount}};
}

std::optional<Change> release(const StockItem& stock, const Reservation& r) {
  Change c{stock, r, StockReleased{r.order_id, r.sku, r.quantity}};
  if (r.state == "held") {
    c.stock.reserved -= r.quantity;
    c.stock.on_hand += r.quantity;
    c.reservation.state = "released";
    return c;
  }
  if (r.state == "committed") {
    c.stock.shipped -= r.quantity;
    c.stock.on_hand += r.quantity;
    c.reservation.state = "returned";
    return c;
  }
  return std::nullopt;
}

std::optional<Change> commit(const StockItem& stock, const Reservation& r) {
  if (r.state != "held") return std::nullopt;
  Change c{stock, r, std::nullopt};
  c.stock.reserved -= r.quantity;
  c.stock.shipped += r.quantity;
  c.reservation.state = "committed";
  return c;
}

}  // namespace shop::inventory
