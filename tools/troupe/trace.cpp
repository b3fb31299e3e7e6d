// troupe trace ID: the causal tree of one saga, from every service's outbox ($trace),
// with per-hop latency, the outcome, or where it waits and on whom.
#include "cli.hpp"

#include <troupe/runtime/builtin.hpp>

#include <ctime>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>

namespace troupe::cli {
namespace {

struct Node {
  Envelope env;
  nlohmann::json data;
  std::vector<std::size_t> children;
};

// Microseconds since the epoch of an RFC 3339 UTC time with microseconds.
std::int64_t micros(const std::string& t) {
  std::tm tm{};
  std::istringstream in(t.substr(0, 19));
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%S");
  std::int64_t us = 0;
  if (t.size() >= 26 && t[19] == '.') us = std::stoll(t.substr(20, 6));
  return static_cast<std::int64_t>(timegm(&tm)) * 1000000 + us;
}

// The time from a cause to its effect, in ms; negative when the two hosts' clocks
// disagree by more than the hop took (their times come from different clocks).
struct Hop {
  double ms = 0;
  bool skewed() const { return ms < 0; }
};
Hop hop(std::int64_t cause_us, std::int64_t effect_us) { return {(effect_us - cause_us) / 1000.0}; }

// Marks in the tree, by the type's name (docs/operations.md): a failure that turns the
// saga back, and the compensating steps that undo earlier work.
const char* mark(const std::string& type) {
  for (const char* w : {"Declined", "Rejected", "Failed"})
    if (type.find(w) != std::string::npos) return "  [failure]";
  for (const char* w : {"Cancelled", "Released", "Refunded", "Returned", "Compensat"})
    if (type.find(w) != std::string::npos) return "  [compensation]";
  return "";
}

}  // namespace

Runner add_trace(CLI::App& app) {
  auto* cmd = app.add_subcommand("trace", "the causal tree of one saga: who caused what, hop latency, outcome or where it waits");
  struct Opts : Common {
    std::string id;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  add_common(*cmd, *o);
  cmd->add_option("ID", o->id, "an order id or any correlation id")->required();
  cmd->add_flag("--json", o->json,
                "print only the events, as CloudEvents JSON one per line (no tree), each with its hop from its "
                "cause: \"hopms\", or \"clockskew\": true when the hosts' clocks disagree");
  return [o, cmd]() -> int {
    if (!*cmd) return -1;
    auto t = load(*o);
    if (!t) return kUsage;
    Client client(*t, "trace");
    client.set_identity(identity(*o));
    std::vector<Node> nodes;
    std::map<std::string, nlohmann::json> health;
    std::vector<std::string> unreachable;
    for (const auto& s : t->services) {
      auto r = client.query_raw(s.name, std::string(builtin::kTrace), codec::encode(builtin::TraceRequest{o->id, 1000}),
                                std::chrono::milliseconds(o->timeout_ms));
      if (!r) {
        unreachable.push_back(s.name);
        continue;
      }
      for (std::size_t i = 0; i + 1 < r->extra.size(); i += 2) {
        auto env = codec::decode_envelope(r->extra[i]);
        if (env) nodes.push_back({*env, to_json(r->extra[i + 1]), {}});
      }
      auto h = client.query_raw(s.name, "$health", std::string(1, '\x80'), std::chrono::milliseconds(o->timeout_ms));
      if (h) health[s.name] = to_json(h->payload);
    }
    for (const auto& u : unreachable) std::cerr << "trace: " << u << " did not answer; its part is missing\n";
    if (nodes.empty()) {
      (o->json ? std::cerr : std::cout) << "trace: no service holds events of '" << printable(o->id) << "'\n";
      return kFailed;
    }
    std::sort(nodes.begin(), nodes.end(), [](const Node& a, const Node& b) { return a.env.time < b.env.time; });
    std::map<std::string, std::size_t> by_id;
    for (std::size_t i = 0; i < nodes.size(); ++i) by_id[nodes[i].env.id] = i;
    if (o->json) {  // only the events, so the output stays JSON lines
      for (const auto& n : nodes) {
        auto j = cloudevent_json(n.env, n.data);
        if (auto cause = by_id.find(n.env.causationid); cause != by_id.end()) {
          Hop h = hop(micros(nodes[cause->second].env.time), micros(n.env.time));
          if (h.skewed()) j["clockskew"] = true;
          else j["hopms"] = h.ms;
        }
        std::cout << dump(j) << '\n';
      }
      return kOk;
    }
    std::vector<std::size_t> roots;
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      auto parent = by_id.find(nodes[i].env.causationid);
      if (parent == by_id.end()) roots.push_back(i);
      else nodes[parent->second].children.push_back(i);
    }
    // From the first root: under clock skew an effect can be stamped before it.
    auto t0 = micros(nodes.front().env.time);
    if (!roots.empty()) {
      t0 = micros(nodes[roots.front()].env.time);
      for (auto r : roots) t0 = std::min(t0, micros(nodes[r].env.time));
    }
    bool skew = false;  // some effect is stamped before its cause: the hosts' clocks disagree
    for (const auto& n : nodes)
      if (auto cause = by_id.find(n.env.causationid);
          cause != by_id.end() && hop(micros(nodes[cause->second].env.time), micros(n.env.time)).skewed())
        skew = true;
    std::function<void(std::size_t, const std::string&, bool, std::int64_t)> print =
        [&](std::size_t i, const std::string& prefix, bool last, std::int64_t parent_us) {
          const auto& n = nodes[i];
          auto us = micros(n.env.time);
          std::ostringstream hop_text;
          hop_text << std::fixed << std::setprecision(2);
          if (parent_us < 0) hop_text << "at " << (us - t0) / 1000.0 << " ms";
          else if (Hop h = hop(parent_us, us); h.skewed())
            hop_text << std::setprecision(1) << "clock skew (stamped " << -h.ms / 1000.0 << " s before its cause)";
          else hop_text << "+" << h.ms << " ms";
          std::string fields = short_fields(n.data, 60);
          std::cout << prefix << (last ? "└─ " : "├─ ") << printable(n.env.source) << "/" << printable(n.env.type)
                    << " #" << n.env.sequence << "  " << hop_text.str() << mark(n.env.type) << "  " << fields
                    << '\n';
          for (std::size_t c = 0; c < n.children.size(); ++c)
            print(n.children[c], prefix + (last ? "   " : "│  "), c + 1 == n.children.size(), us);
        };
    std::cout << "saga " << o->id << " (" << nodes.size() << " events)\n";
    for (std::size_t r = 0; r < roots.size(); ++r) {
      std::cout << (nodes[roots[r]].env.causationid.empty() ? "(no cause)" : "caused by " + printable(nodes[roots[r]].env.causationid.substr(0, 18)) + "…") << '\n';
      print(roots[r], "", true, -1);
    }
    // Where does it wait? A leaf event that a reacting service has not applied yet.
    auto now_us = micros(rfc3339_now());
    int waiting = 0;
    for (const auto& n : nodes) {
      if (!n.children.empty()) continue;
      for (const auto& s : t->services)
        for (const auto& sub : s.reacts_to) {
          if (sub.publisher != n.env.source ||
              std::find(sub.types.begin(), sub.types.end(), n.env.type) == sub.types.end())
            continue;
          std::uint64_t position = 0;
          bool known = false;
          if (health.count(s.name))
            for (const auto& u : health[s.name]["upstreams"])
              if (u.value("publisher", "") == n.env.source) {
                position = u.value("position", 0ull);
                known = true;
              }
          if (known && position >= n.env.sequence) continue;
          ++waiting;
          auto waited = now_us - micros(n.env.time);  // this host's clock against the publisher's
          std::ostringstream since;
          if (waited < 0) since << "waiting (clock skew)";
          else since << std::fixed << std::setprecision(1) << "waiting " << waited / 1e6 << " s";
          std::cout << since.str() << ": " << s.name << " has not reacted to " << printable(n.env.type) << " #" << n.env.sequence
                    << (known ? " (it has applied " + n.env.source + " up to #" + std::to_string(position) + ")"
                              : " (" + s.name + " is not answering)")
                    << '\n';
        }
    }
    auto last = nodes.back();
    for (const auto& n : nodes)
      if (n.children.empty() && n.env.time >= last.env.time) last = n;
    if (!waiting) {
      std::cout << std::fixed << std::setprecision(2) << "outcome: " << printable(last.env.source) << "/"
                << printable(last.env.type);
      if (skew) std::cout << " (no total time: clock skew between hosts)";
      else std::cout << " after " << (micros(last.env.time) - t0) / 1000.0 << " ms";
      std::cout << "; every reacting service has applied every step\n";
    }
    return waiting ? kFailed : kOk;
  };
}

}  // namespace troupe::cli
