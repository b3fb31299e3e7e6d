// troupe settle: waits until every stream of the mesh is at its publisher's head, then
// reports what the mesh still holds that is wrong (dead letters, streams behind
// retention, regressed or stalled) — for any mesh, knowing nothing of its services.
#include "cli.hpp"

#include <troupe/tools/settle.hpp>

#include <iostream>

namespace troupe::cli {

Runner add_settle(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "settle", "wait until every stream is at its publisher's head; report dead letters and flagged streams "
                "(exit 0 at rest and clean, 1 at rest with findings, 3 not at rest in time)");
  struct Opts : Common {
    int wait_ms = 30000;
    bool json = false, allow_dead_letters = false;
  };
  auto o = std::make_shared<Opts>();
  add_common(*cmd, *o);
  cmd->add_option("--wait", o->wait_ms, "milliseconds to wait for the mesh to come to rest")->capture_default_str();
  cmd->add_flag("--allow-dead-letters", o->allow_dead_letters, "dead letters are reported but are no finding");
  cmd->add_flag("--json", o->json,
                "print {\"settled\", \"ok\", \"why\", \"findings\": [{\"kind\", \"service\", \"text\"}], \"services\": "
                "[{\"service\", \"state\", \"head\", \"dead_letters\", \"gaps_seen\", \"gaps_repaired\", \"upstreams\": "
                "[{\"publisher\", \"position\", \"head\", \"lag\", …}]}]}");
  return [o, cmd]() -> int {
    if (!*cmd) return -1;
    auto t = load(*o);
    if (!t) return kUsage;
    Client client(*t, identity(*o));
    client.set_identity(identity(*o));
    auto settled = tools::settle(client, *t, std::chrono::milliseconds(o->wait_ms), std::chrono::milliseconds(o->timeout_ms));
    nlohmann::json found = nlohmann::json::array();
    if (settled.settled)
      for (auto& f : tools::findings(settled))
        if (!(o->allow_dead_letters && f["kind"] == "dead_letters")) found.push_back(std::move(f));
    const bool ok = settled.settled && found.empty();
    if (o->json) {
      std::cout << dump({{"mesh", t->mesh},
                         {"settled", settled.settled},
                         {"ok", ok},
                         {"why", settled.settled ? nlohmann::json() : nlohmann::json(settled.why)},
                         {"findings", found},
                         {"services", settled.services}},
                        2)
                << '\n';
    } else if (!settled.settled) {
      std::cout << "not at rest after " << o->wait_ms << " ms: " << settled.why << '\n';
    } else {
      std::size_t streams = 0, dead = 0;
      for (const auto& s : settled.services) {
        streams += s["upstreams"].size();
        dead += s["dead_letters"].get<std::uint64_t>();
      }
      for (const auto& f : found) std::cout << "finding: " << f["text"].get<std::string>() << '\n';
      std::cout << (ok ? "at rest" : "at rest with " + std::to_string(found.size()) + " finding(s)") << ": "
                << settled.services.size() << " services, " << streams << " streams at their heads, " << dead
                << " dead letter(s)\n";
    }
    return !settled.settled ? kUnreachable : ok ? kOk : kFailed;
  };
}

}  // namespace troupe::cli
