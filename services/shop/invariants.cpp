// The shop's invariants over a snapshot (invariants.hpp).
#include "invariants.hpp"

namespace shop {

std::vector<Violation> violations(const Snapshot& snap, Tally& tally) {
  std::vector<Violation> violations;
  auto violate = [&](const char* kind, std::string text) { violations.push_back({kind, std::move(text)}); };
  std::map<std::string, std::int64_t> committed_by_sku, held_by_sku;
  for (const auto& [id, r] : snap.reservations) {
    if (!snap.orders.count(id)) violate("orphan", "reservation for unknown order " + id);
    if (r.state == "committed") committed_by_sku[r.sku] += r.quantity;
    if (r.state == "held") held_by_sku[r.sku] += r.quantity;
  }
  for (const auto& [id, o] : snap.orders) {
    auto res = snap.reservations.find(id);
    auto pay = snap.payments.find(id);
    auto ship = snap.shipments.find(id);
    std::string rstate = res == snap.reservations.end() ? "none" : res->second.state;
    std::int64_t net = pay == snap.payments.end() ? 0 : pay->second.captured - pay->second.refunded;
    bool shipped = ship != snap.shipments.end() && ship->second.status == "scheduled";
    if (o.status == "confirmed") {
      ++tally.confirmed;
      if (rstate != "committed") violate("reservation", "order " + id + ": confirmed but its stock reservation is " + rstate);
      else if (res->second.quantity != o.quantity) violate("reservation", "order " + id + ": confirmed for " + std::to_string(o.quantity) + " but " + std::to_string(res->second.quantity) + " committed");
      if (pay == snap.payments.end() || pay->second.captured != o.amount || pay->second.refunded != 0)
        violate("payment", "order " + id + ": confirmed but payment captured " + std::to_string(pay == snap.payments.end() ? 0 : pay->second.captured) + " of " + std::to_string(o.amount) + ", refunded " + std::to_string(pay == snap.payments.end() ? 0 : pay->second.refunded));
      if (!shipped) violate("shipment", "order " + id + ": confirmed but has no scheduled shipment");
    } else if (o.status == "cancelled") {
      ++tally.cancelled;
      if (rstate == "held" || rstate == "committed") violate("reservation", "order " + id + ": cancelled but its stock is still " + rstate);
      if (net != 0) violate("payment", "order " + id + ": cancelled but " + std::to_string(net) + " is still charged");
      if (shipped) violate("shipment", "order " + id + ": cancelled but a shipment is still scheduled");
    } else {
      violate("not_terminal", "order " + id + ": not terminal (" + o.status + ")");
    }
  }
  for (const auto& s : snap.stock) {
    if (s.on_hand + s.reserved + s.shipped != s.initial)
      violate("stock", "sku " + s.sku + ": on hand " + std::to_string(s.on_hand) + " + reserved " + std::to_string(s.reserved) + " + shipped " + std::to_string(s.shipped) + " != initial " + std::to_string(s.initial));
    if (s.shipped != committed_by_sku[s.sku])
      violate("stock", "sku " + s.sku + ": shipped " + std::to_string(s.shipped) + " but committed reservations hold " + std::to_string(committed_by_sku[s.sku]));
    if (s.reserved != held_by_sku[s.sku])
      violate("stock", "sku " + s.sku + ": reserved " + std::to_string(s.reserved) + " but held reservations hold " + std::to_string(held_by_sku[s.sku]));
    if (s.on_hand < 0) violate("stock", "sku " + s.sku + ": negative stock " + std::to_string(s.on_hand));
  }
  std::map<std::string, std::pair<std::int64_t, std::int64_t>> by_customer;
  for (const auto& [id, p] : snap.payments) {
    if (!snap.orders.count(id)) violate("orphan", "payment for unknown order " + id);
    by_customer[p.customer].first += p.captured;
    by_customer[p.customer].second += p.refunded;
  }
  for (const auto& a : snap.accounts) {
    if (a.balance + a.captured - a.refunded != a.initial)
      violate("account", "customer " + a.customer + ": balance " + std::to_string(a.balance) + " + captured " + std::to_string(a.captured) + " - refunded " + std::to_string(a.refunded) + " != initial credit " + std::to_string(a.initial));
    if (by_customer[a.customer].first != a.captured || by_customer[a.customer].second != a.refunded)
      violate("account", "customer " + a.customer + ": account says captured " + std::to_string(a.captured) + "/refunded " + std::to_string(a.refunded) + ", payments sum to " + std::to_string(by_customer[a.customer].first) + "/" + std::to_string(by_customer[a.customer].second));
    if (a.balance < 0) violate("account", "customer " + a.customer + ": negative balance");
  }
  return violations;
}

}  // namespace shop
