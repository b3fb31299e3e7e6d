// The shop's invariants at rest: every order ended, and stock, money and shipments agree
// with how it ended. One pure check over a snapshot of the services' own answers, used
// by `troupe shop verify` (over the live mesh) and by the simulator (over simulated nodes).
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

// One broken invariant. `kind` says what broke, for scripts (`troupe shop verify --json`):
//   not_terminal  an order that never ended (lost);
//   orphan        a reservation or payment for an order orders does not know;
//   reservation, payment, shipment   an ended order whose effect in that service
//                 disagrees with how it ended (taken twice, or not undone);
//   stock, account  a SKU's or customer's totals that do not add up.
// `text` names the order, SKU or customer and what was seen.
struct Violation {
  std::string kind;
  std::string text;
};

// What is wrong in `snap`, one violation each.
std::vector<Violation> violations(const Snapshot& snap, Tally& tally);

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

// A partitioned inventory's instances each remember a cancelled order they never
// reserved for (a "released" reservation with no SKU, so that a late OrderPlaced
// reserves nothing): the owner's reservation is the one that counts.
inline void keep_reservation(std::map<std::string, Reservation>& into, Reservation r) {
  auto it = into.find(r.order_id);
  if (it != into.end() && r.sku.empty() && !it->second.sku.empty()) return;
  into[r.order_id] = std::move(r);
}

// Fetches every list of the shop into `out`. `instances(service)` names the processes to
// ask for one service (its partitions: orders.0, orders.1, …; else itself): each is
// paged through and the rows merged.
template <class Ask, class Instances>
std::optional<std::string> fetch(Ask&& ask, Snapshot& out, Instances&& instances) {
  for (const auto& i : instances("orders"))
    if (auto e = pages<ListOrders>(ask, i, [&](OrderList& p) {
          for (auto& o : p.orders) out.orders[o.order_id] = o;
          return std::pair{p.orders.size(), p.orders.empty() ? "" : p.orders.back().order_id};
        }))
      return e;
  for (const auto& i : instances("inventory")) {
    std::vector<StockItem> items;
    if (auto e = pages<GetStock>(ask, i, [&](StockReport& p) {
          items = p.items;
          for (auto& r : p.reservations) keep_reservation(out.reservations, r);
          return std::pair{p.reservations.size(), p.reservations.empty() ? "" : p.reservations.back().order_id};
        }))
      return e;
    out.stock.insert(out.stock.end(), items.begin(), items.end());
  }
  for (const auto& i : instances("payments")) {
    std::vector<Account> accounts;
    if (auto e = pages<GetBalance>(ask, i, [&](BalanceReport& p) {
          accounts = p.accounts;
          for (auto& x : p.payments) out.payments[x.order_id] = x;
          return std::pair{p.payments.size(), p.payments.empty() ? "" : p.payments.back().order_id};
        }))
      return e;
    out.accounts.insert(out.accounts.end(), accounts.begin(), accounts.end());
  }
  for (const auto& i : instances("shipping"))
    if (auto e = pages<ListShipments>(ask, i, [&](ShipmentList& p) {
          for (auto& x : p.shipments) out.shipments[x.order_id] = x;
          return std::pair{p.shipments.size(), p.shipments.empty() ? "" : p.shipments.back().order_id};
        }))
      return e;
  return std::nullopt;
}

template <class Ask>
std::optional<std::string> fetch(Ask&& ask, Snapshot& out) {
  return fetch(ask, out, [](const std::string& service) { return std::vector<std::string>{service}; });
}

}  // namespace shop
