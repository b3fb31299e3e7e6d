// Paged snapshot of the shop's services.
#include "shop_queries.hpp"

#include "../../services/shop/paging.hpp"

namespace troupe::cli {

namespace {

// Asks `service` page after page (order id > after, as many at a time as a page may
// hold); `take` keeps a page's rows and returns how many it had and the last key.
template <class Query, class Take>
std::optional<std::string> pages(Client& client, const std::string& service, Take take) {
  std::string after;
  while (true) {
    auto page = client.query(service, Query{after, shop::kMaxPage}, std::chrono::milliseconds(5000));
    if (!page) return page.error().message();
    auto [rows, last] = take(*page);
    if (rows < static_cast<std::size_t>(shop::kMaxPage)) return std::nullopt;
    after = last;
  }
}

}  // namespace

std::optional<std::string> snapshot(Client& client, ShopSnapshot& out) {
  if (auto e = pages<shop::ListOrders>(client, "orders", [&](shop::OrderList& p) {
        for (auto& o : p.orders) out.orders[o.order_id] = o;
        return std::pair{p.orders.size(), p.orders.empty() ? "" : p.orders.back().order_id};
      }))
    return e;
  if (auto e = pages<shop::GetStock>(client, "inventory", [&](shop::StockReport& p) {
        out.stock = p.items;
        for (auto& r : p.reservations) out.reservations[r.order_id] = r;
        return std::pair{p.reservations.size(), p.reservations.empty() ? "" : p.reservations.back().order_id};
      }))
    return e;
  if (auto e = pages<shop::GetBalance>(client, "payments", [&](shop::BalanceReport& p) {
        out.accounts = p.accounts;
        for (auto& x : p.payments) out.payments[x.order_id] = x;
        return std::pair{p.payments.size(), p.payments.empty() ? "" : p.payments.back().order_id};
      }))
    return e;
  return pages<shop::ListShipments>(client, "shipping", [&](shop::ShipmentList& p) {
    for (auto& x : p.shipments) out.shipments[x.order_id] = x;
    return std::pair{p.shipments.size(), p.shipments.empty() ? "" : p.shipments.back().order_id};
  });
}

}  // namespace troupe::cli
