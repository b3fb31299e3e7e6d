// Paged snapshot of the shop's services.
#include "shop_queries.hpp"

namespace troupe::cli {

std::optional<std::string> snapshot(Client& client, ShopSnapshot& out) {
  const auto timeout = std::chrono::milliseconds(5000);
  std::string after;
  while (true) {
    auto page = client.query("orders", shop::ListOrders{after, 1000}, timeout);
    if (!page) return page.error().message();
    for (auto& o : page->orders) out.orders[o.order_id] = o;
    if (page->orders.size() < 1000) break;
    after = page->orders.back().order_id;
  }
  after.clear();
  while (true) {
    auto page = client.query("inventory", shop::GetStock{after, 1000}, timeout);
    if (!page) return page.error().message();
    out.stock = page->items;
    for (auto& r : page->reservations) out.reservations[r.order_id] = r;
    if (page->reservations.size() < 1000) break;
    after = page->reservations.back().order_id;
  }
  after.clear();
  while (true) {
    auto page = client.query("payments", shop::GetBalance{after, 1000}, timeout);
    if (!page) return page.error().message();
    out.accounts = page->accounts;
    for (auto& p : page->payments) out.payments[p.order_id] = p;
    if (page->payments.size() < 1000) break;
    after = page->payments.back().order_id;
  }
  after.clear();
  while (true) {
    auto page = client.query("shipping", shop::ListShipments{after, 1000}, timeout);
    if (!page) return page.error().message();
    for (auto& s : page->shipments) out.shipments[s.order_id] = s;
    if (page->shipments.size() < 1000) break;
    after = page->shipments.back().order_id;
  }
  return std::nullopt;
}

}  // namespace troupe::cli
