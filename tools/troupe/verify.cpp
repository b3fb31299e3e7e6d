// troupe verify: the shop's invariants, checked by querying every service once the
// mesh has settled. Prints each violation with its order id, or "invariants OK".
#include "cli.hpp"
#include "shop_queries.hpp"

#include <iostream>
#include <map>
#include <thread>

namespace troupe::cli {
namespace {

using namespace shop;

// Waits until every subscriber's position equals its publisher's head, twice in a row.
bool settle(Client& client, const Topology& t, std::chrono::milliseconds timeout, std::string& why) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::map<std::string, std::uint64_t> previous;
  while (std::chrono::steady_clock::now() < deadline) {
    std::map<std::string, std::uint64_t> heads;
    std::map<std::string, nlohmann::json> health;
    bool ok = true;
    for (const auto& s : t.services) {
      auto h = client.query_raw(s.name, "$health", std::string(1, '\x80'), std::chrono::milliseconds(1000));
      if (!h) {
        why = h.error().message();
        ok = false;
        break;
      }
      health[s.name] = to_json(h->payload);
      heads[s.name] = health[s.name].value("head", 0ull);
    }
    if (ok) {
      why.clear();
      for (auto& [name, h] : health)
        for (const auto& u : h["upstreams"]) {
          auto pub = u.value("publisher", "");
          if (u.value("position", 0ull) != heads[pub])
            why = name + " has applied " + std::to_string(u.value("position", 0ull)) + " of " + pub + "'s " +
                  std::to_string(heads[pub]) + " events";
        }
      if (why.empty() && heads == previous) return true;
      previous = heads;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

}  // namespace

int verify_shop(Client& client, const Topology& t, int settle_ms, bool quiet) {
  std::string why;
  if (!settle(client, t, std::chrono::milliseconds(settle_ms), why)) {
    std::cout << "verify: the mesh did not settle within " << settle_ms << " ms: " << why << '\n';
    return kUnreachable;
  }
  ShopSnapshot snap;
  if (auto err = snapshot(client, snap)) {
    std::cout << "verify: " << *err << '\n';
    return kUnreachable;
  }
  std::vector<std::string> violations;
  auto violate = [&](std::string v) { violations.push_back(std::move(v)); };
  std::size_t confirmed = 0, cancelled = 0;
  std::map<std::string, std::int64_t> committed_by_sku, held_by_sku;
  for (const auto& [id, r] : snap.reservations) {
    if (!snap.orders.count(id)) violate("reservation for unknown order " + id);
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
      ++confirmed;
      if (rstate != "committed") violate("order " + id + ": confirmed but its stock reservation is " + rstate);
      else if (res->second.quantity != o.quantity) violate("order " + id + ": confirmed for " + std::to_string(o.quantity) + " but " + std::to_string(res->second.quantity) + " committed");
      if (pay == snap.payments.end() || pay->second.captured != o.amount || pay->second.refunded != 0)
        violate("order " + id + ": confirmed but payment captured " + std::to_string(pay == snap.payments.end() ? 0 : pay->second.captured) + " of " + std::to_string(o.amount) + ", refunded " + std::to_string(pay == snap.payments.end() ? 0 : pay->second.refunded));
      if (!shipped) violate("order " + id + ": confirmed but has no scheduled shipment");
    } else if (o.status == "cancelled") {
      ++cancelled;
      if (rstate == "held" || rstate == "committed") violate("order " + id + ": cancelled but its stock is still " + rstate);
      if (net != 0) violate("order " + id + ": cancelled but " + std::to_string(net) + " is still charged");
      if (shipped) violate("order " + id + ": cancelled but a shipment is still scheduled");
    } else {
      violate("order " + id + ": not terminal (" + o.status + ")");
    }
  }
  for (const auto& s : snap.stock) {
    if (s.on_hand + s.reserved + s.shipped != s.initial)
      violate("sku " + s.sku + ": on hand " + std::to_string(s.on_hand) + " + reserved " + std::to_string(s.reserved) + " + shipped " + std::to_string(s.shipped) + " != initial " + std::to_string(s.initial));
    if (s.shipped != committed_by_sku[s.sku])
      violate("sku " + s.sku + ": shipped " + std::to_string(s.shipped) + " but committed reservations hold " + std::to_string(committed_by_sku[s.sku]));
    if (s.reserved != held_by_sku[s.sku])
      violate("sku " + s.sku + ": reserved " + std::to_string(s.reserved) + " but held reservations hold " + std::to_string(held_by_sku[s.sku]));
    if (s.on_hand < 0) violate("sku " + s.sku + ": negative stock " + std::to_string(s.on_hand));
  }
  std::map<std::string, std::pair<std::int64_t, std::int64_t>> by_customer;
  for (const auto& [id, p] : snap.payments) {
    if (!snap.orders.count(id)) violate("payment for unknown order " + id);
    by_customer[p.customer].first += p.captured;
    by_customer[p.customer].second += p.refunded;
  }
  for (const auto& a : snap.accounts) {
    if (a.balance + a.captured - a.refunded != a.initial)
      violate("customer " + a.customer + ": balance " + std::to_string(a.balance) + " + captured " + std::to_string(a.captured) + " - refunded " + std::to_string(a.refunded) + " != initial credit " + std::to_string(a.initial));
    if (by_customer[a.customer].first != a.captured || by_customer[a.customer].second != a.refunded)
      violate("customer " + a.customer + ": account says captured " + std::to_string(a.captured) + "/refunded " + std::to_string(a.refunded) + ", payments sum to " + std::to_string(by_customer[a.customer].first) + "/" + std::to_string(by_customer[a.customer].second));
    if (a.balance < 0) violate("customer " + a.customer + ": negative balance");
  }
  if (!quiet)
    for (const auto& v : violations) std::cout << "violation: " << v << '\n';
  if (violations.empty()) {
    std::cout << "invariants OK (" << snap.orders.size() << " orders: " << confirmed << " confirmed, " << cancelled
              << " cancelled; " << snap.stock.size() << " SKUs, " << snap.accounts.size() << " customers)\n";
    return kOk;
  }
  std::cout << "invariants VIOLATED: " << violations.size() << " violation(s)\n";
  return kFailed;
}

Runner add_verify(CLI::App& app) {
  auto* cmd = app.add_subcommand("verify", "check the shop's invariants across every service (exit 1 on a violation)");
  struct Opts : Common {
    int settle_ms = 30000;
  };
  auto o = std::make_shared<Opts>();
  add_common(*cmd, *o);
  cmd->add_option("--settle", o->settle_ms, "milliseconds to wait for the mesh to settle first")->capture_default_str();
  return [o, cmd]() -> int {
    if (!*cmd) return -1;
    auto t = load(*o);
    if (!t) return kUsage;
    Client client(*t, "verify");
    client.set_identity(identity(*o));
    return verify_shop(client, *t, o->settle_ms, false);
  };
}

}  // namespace troupe::cli
