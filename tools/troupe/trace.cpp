// troupe trace ID: the causal tree of one saga, from every service's outbox ($trace),
// with per-hop latency, the outcome, or where it waits and on whom.
#include "cli.hpp"

#include <troupe/tools/saga.hpp>

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

using tools::micros;

// The time from a cause to its effect, in ms; negative when the two hosts' clocks
// disagree by more than the hop took (their times come from different clocks).
struct Hop {
  double ms = 0;
  bool skewed() const { return ms < 0; }
};
Hop hop(std::int64_t cause_us, std::int64_t effect_us) { return {(effect_us - cause_us) / 1000.0}; }

// Marks in the tree, by the type's name (docs/operations.md).
std::string mark(const std::string& type) {
  std::string m = tools::mark(type);
  return m.empty() ? m : "  [" + m + "]";
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
    auto saga = tools::collect_saga(client, o->id, std::chrono::milliseconds(o->timeout_ms));
    for (const auto& u : saga.unreachable) std::cerr << "trace: " << u << " did not answer; its part is missing\n";
    if (saga.events.empty()) {
      (o->json ? std::cerr : std::cout) << "trace: no service holds events of '" << printable(o->id) << "'\n";
      return kFailed;
    }
    std::vector<Node> nodes;
    for (const auto& e : saga.events) nodes.push_back({e.env, e.data, {}});
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
    // Where does it wait? An event that a service reacting to it has not applied yet.
    auto pending = tools::waits(*t, saga.events, saga.positions, micros(rfc3339_now()));
    for (const auto& w : pending) std::cout << w.line() << '\n';
    auto waiting = pending.size();
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
