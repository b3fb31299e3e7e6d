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
  shop::Snapshot snap;
  if (auto err = snapshot(client, snap)) {
    std::cout << "verify: " << *err << '\n';
    return kUnreachable;
  }
  shop::Tally tally;
  const auto violations = shop::violations(snap, tally);
  if (!quiet)
    for (const auto& v : violations) std::cout << "violation: " << v << '\n';
  if (violations.empty()) {
    std::cout << "invariants OK (" << snap.orders.size() << " orders: " << tally.confirmed << " confirmed, " << tally.cancelled
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
