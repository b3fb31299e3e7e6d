// The shop's invariants at rest: every order ended, and stock, money and shipments agree
// with how it ended. One pure check over a snapshot of the services' own answers, used
// by `troupe verify` (over the live mesh) and by the simulator (over simulated nodes).
#pragma once

#include "../inventory/messages.hpp"
#include "../orders/messages.hpp"
#include "../payments/messages.hpp"
#include "../shipping/messages.hpp"
#include "paging.hpp"

#include <troupe/domain/result.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace shop {

struct Snapshot {
  std::map<std::string, OrderView> orders;
  std::map<std::string, Reservation> reservations;
  std::vector<StockItem> stock;
  std::map<std::string, Payment> payments;
  std::vector<Account> accounts;
  std::map<std::string, Shipment> shipments;
};

// Fills `out` with the services' list queries, page after page. `ask(service, query)`
// returns a troupe::Result of the query's reply (a Client over the mesh, or a
// simulated node's own query handler). Returns the first error.
template <class Ask>
std::optional<std::string> fetch(Ask&& ask, Snapshot& out);

struct Tally {
  std::size_t confirmed = 0, cancelled = 0;
};

// What is wrong in `snap`, one line each naming the order, SKU or customer.
std::vector<std::string> violations(const Snapshot& snap, Tally& tally);

// Asks `service` the list query `Query` page after page (keys after the last one seen,
// as many as a page may hold); `take(reply)` keeps a page's rows and returns how many it
// had and the last key. Returns the first error.
template <class Query, class Ask, class Take>
std::optional<std::string> pages(Ask& ask, const std::string& service, Take take) {
  std::string after;
  while (true) {
    troupe::Result<typename Query::Reply> page = ask(service, Query{after, kMaxPage});
    if (!page) return page.error().message();
    auto [rows, last] = take(*page);
    if (rows < static_cast<std::size_t>(kMaxPage)) return std::nullopt;
    after = last;
  }
}

template <class Ask>
std::optional<std::string> fetch(Ask&& ask, Snapshot& out) {
  if (auto e = pages<ListOrders>(ask, "orders", [&](OrderList& p) {
        for (auto& o : p.orders) out.orders[o.order_id] = o;
        return std::pair{p.orders.size(), p.orders.empty() ? "" : p.orders.back().order_id};
      }))
    return e;
  if (auto e = pages<GetStock>(ask, "inventory", [&](StockReport& p) {
        out.stock = p.items;
        for (auto& r : p.reservations) out.reservations[r.order_id] = r;
        return std::pair{p.reservations.size(), p.reservations.empty() ? "" : p.reservations.back().order_id};
      }))
    return e;
  if (auto e = pages<GetBalance>(ask, "payments", [&](BalanceReport& p) {
        out.accounts = p.accounts;
        for (auto& x : p.payments) out.payments[x.order_id] = x;
        return std::pair{p.payments.size(), p.payments.empty() ? "" : p.payments.back().order_id};
      }))
    return e;
  return pages<ListShipments>(ask, "shipping", [&](ShipmentList& p) {
    for (auto& x : p.shipments) out.shipments[x.order_id] = x;
    return std::pair{p.shipments.size(), p.shipments.empty() ? "" : p.shipments.back().order_id};
  });
}

}  // namespace shop
