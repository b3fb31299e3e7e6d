// troupe shop verify: the shop's invariants, checked by querying every service once the
// mesh has settled. Prints each violation with its order id, or "invariants OK".
#include "shop_cli.hpp"

#include <troupe/tools/settle.hpp>

#include <iostream>

namespace troupe::cli {

int verify_shop(Client& client, const Topology& t, int settle_ms, bool quiet, bool as_json) {
  // --json: {"settled", "ok", "orders", "confirmed", "cancelled", "skus", "customers",
  // "violations": [{"kind", "text"}], "error" when it could not look}.
  nlohmann::json out{{"settled", false}, {"ok", false}, {"violations", nlohmann::json::array()}};
  auto fail = [&](const std::string& error, int code) {
    if (as_json) {
      out["error"] = error;
      std::cout << dump(out, 2) << '\n';
    } else {
      std::cout << "verify: " << error << '\n';
    }
    return code;
  };
  auto settled = tools::settle(client, t, std::chrono::milliseconds(settle_ms));
  if (!settled.settled)
    return fail("the mesh did not settle within " + std::to_string(settle_ms) + " ms: " + settled.why, kUnreachable);
  // A stream that cannot catch up (behind retention, head regressed) leaves the shop's
  // state incomplete: its invariants would be judged on a part, so they are not.
  for (const auto& f : tools::findings(settled))
    if (f["kind"] == "behind_retention" || f["kind"] == "head_regressed")
      return fail("the mesh cannot come to rest: " + f["text"].get<std::string>(), kUnreachable);
  out["settled"] = true;
  shop::Snapshot snap;
  if (auto err = snapshot(client, snap)) return fail(*err, kUnreachable);
  shop::Tally tally;
  const auto violations = shop::violations(snap, tally);
  if (as_json) {
    for (const auto& v : violations) out["violations"].push_back({{"kind", v.kind}, {"text", v.text}});
    out["ok"] = violations.empty();
    out["orders"] = snap.orders.size();
    out["confirmed"] = tally.confirmed;
    out["cancelled"] = tally.cancelled;
    out["skus"] = snap.stock.size();
    out["customers"] = snap.accounts.size();
    std::cout << dump(out, 2) << '\n';
    return violations.empty() ? kOk : kFailed;
  }
  if (!quiet)
    for (const auto& v : violations) std::cout << "violation: " << v.text << '\n';
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
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  add_common(*cmd, *o);
  cmd->add_option("--settle", o->settle_ms, "milliseconds to wait for the mesh to settle first")->capture_default_str();
  cmd->add_flag("--json", o->json,
                "print {\"settled\", \"ok\", \"orders\", \"confirmed\", \"cancelled\", \"violations\": [{\"kind\", "
                "\"text\"}], …}; kinds in services/shop/invariants.hpp");
  return [o, cmd]() -> int {
    if (!*cmd) return -1;
    auto t = load(*o);
    if (!t) return kUsage;
    Client client(*t, "verify");
    client.set_identity(identity(*o));
    return verify_shop(client, *t, o->settle_ms, false, o->json);
  };
}

}  // namespace troupe::cli
