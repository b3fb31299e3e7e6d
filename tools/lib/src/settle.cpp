// A mesh at rest: see settle.hpp.
#include <troupe/tools/settle.hpp>

#include <troupe/runtime/builtin.hpp>
#include <troupe/tools/mesh_json.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <utility>
#include <thread>

namespace troupe::tools {
namespace {

using Clock = std::chrono::steady_clock;

// One look at one service; {"service", "reachable": false, "error"} when it does not answer.
nlohmann::json look(Client& client, const std::string& name, std::chrono::milliseconds timeout) {
  auto h = client.query_raw(name, std::string(builtin::kHealth), std::string(1, '\x80'), timeout);
  if (!h) return {{"service", name}, {"reachable", false}, {"error", h.error().message()}};
  auto health = to_json(h->payload);
  auto m = client.query_raw(name, std::string(builtin::kMetrics), std::string(1, '\x80'), timeout);
  auto metrics = m ? to_json(m->payload) : nlohmann::json::object();
  nlohmann::json upstreams = nlohmann::json::array();
  if (health.contains("upstreams") && health["upstreams"].is_array())
    for (const auto& u : health["upstreams"])
      upstreams.push_back({{"publisher", u.value("publisher", std::string("?"))},
                           {"position", u.value("position", 0ull)},
                           {"behind_retention", u.value("behind_retention", false)},
                           {"head_regressed", u.value("head_regressed", false)},
                           {"stalled", u.value("stalled", false)}});
  return {{"service", name},
          {"reachable", true},
          {"state", health.value("state", "?")},
          {"head", health.value("head", 0ull)},
          {"dead_letters", health.value("dead_letters", 0ull)},
          {"gaps_seen", metrics.value("gaps_seen", 0ull)},
          {"gaps_repaired", metrics.value("gaps_repaired", 0ull)},
          {"upstreams", upstreams}};
}

// A stream that waiting cannot move: its publisher no longer holds what it lacks
// (behind retention), or numbers events again it already applied (head regressed).
// A stalled stream is waited on: it clears once its replays are answered.
bool stopped(const nlohmann::json& upstream) {
  return upstream.value("behind_retention", false) || upstream.value("head_regressed", false);
}

}  // namespace

Settled settle(Client& client, const Topology& topology, std::chrono::milliseconds timeout,
               std::chrono::milliseconds ask_at_most, std::chrono::milliseconds poll) {
  const auto deadline = Clock::now() + timeout;
  // At rest: two clean looks with the same heads, the second begun at least three
  // heartbeats after the first ended, so that what a look cannot see has had its chance
  // to move a head: a sequenced command still in its sender's outbox is resent after two
  // heartbeats without progress, checked every half heartbeat.
  const auto confirm_after =
      poll + 3 * std::chrono::duration_cast<std::chrono::milliseconds>(topology.defaults.heartbeat);
  std::optional<std::pair<std::map<std::string, std::uint64_t>, Clock::time_point>> clean;
  Settled out;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    const auto ask = std::clamp(left, std::chrono::milliseconds(1), std::max(ask_at_most, std::chrono::milliseconds(1)));
    out.services = nlohmann::json::array();
    out.why.clear();
    std::map<std::string, std::uint64_t> heads;
    for (const auto& s : topology.services) {
      out.services.push_back(look(client, s.name, ask));
      const auto& row = out.services.back();
      if (!row["reachable"].get<bool>()) {
        if (out.why.empty()) out.why = s.name + " did not answer: " + row["error"].get<std::string>();
        continue;
      }
      heads[s.name] = row["head"].get<std::uint64_t>();
    }
    // Each stream against its publisher's own head (a publisher that did not answer
    // leaves its streams unknown, which is not at rest either). A stream behind
    // retention or head regressed does not move by waiting: it is a finding
    // (findings()), not a reason to wait until the deadline.
    for (auto& row : out.services) {
      if (!row["reachable"].get<bool>()) continue;
      for (auto& u : row["upstreams"]) {
        const std::string pub = u["publisher"];
        const auto position = u["position"].get<std::uint64_t>();
        auto head = heads.find(pub);
        u["head"] = head == heads.end() ? nlohmann::json() : nlohmann::json(head->second);
        u["lag"] = head == heads.end() || head->second < position ? nlohmann::json() : nlohmann::json(head->second - position);
        if (out.why.empty() && !stopped(u) && (head == heads.end() || head->second != position))
          out.why = row["service"].get<std::string>() + " has applied " + std::to_string(position) + " of " + pub +
                    "'s " + (head == heads.end() ? std::string("unknown") : std::to_string(head->second)) + " events";
      }
    }
    const auto looked = Clock::now();  // when this look ended
    if (!out.why.empty()) {
      clean.reset();  // the next clean look is a first one again
    } else if (clean && clean->first == heads && looked - clean->second >= confirm_after) {
      out.settled = true;
      return out;
    } else {
      if (!clean || clean->first != heads) clean.emplace(heads, looked);
      out.why = "heads still moving, or not yet confirmed by a second look three heartbeats later";
    }
    if (Clock::now() + poll >= deadline) return out;
    std::this_thread::sleep_for(poll);
  }
}

nlohmann::json findings(const Settled& settled) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& row : settled.services) {
    if (!row.value("reachable", false)) continue;
    const std::string name = row["service"];
    if (auto n = row["dead_letters"].get<std::uint64_t>())
      out.push_back({{"kind", "dead_letters"},
                     {"service", name},
                     {"text", name + " holds " + std::to_string(n) + " dead letter(s) (troupe deadletters list " + name +
                                  ")"}});
    for (const auto& u : row["upstreams"])
      for (const char* flag : {"behind_retention", "head_regressed", "stalled"})
        if (u.value(flag, false))
          out.push_back({{"kind", flag},
                         {"service", name},
                         {"text", name + "'s stream of " + u["publisher"].get<std::string>() + " is " + flag}});
  }
  return out;
}

}  // namespace troupe::tools
