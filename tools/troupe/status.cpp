// troupe status: one aligned table of every service's health, stream heads and counters.
#include "cli.hpp"

#include <troupe/runtime/builtin.hpp>

#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

namespace troupe::cli {
namespace {

std::string uptime(double s) {
  std::ostringstream o;
  if (s < 120) o << std::fixed << std::setprecision(1) << s << "s";
  else if (s < 7200) o << static_cast<int>(s / 60) << "m";
  else o << static_cast<int>(s / 3600) << "h";
  return o.str();
}

// Messages handled per service at the previous refresh, for a current rate.
struct Sample {
  std::uint64_t handled = 0;
  std::chrono::steady_clock::time_point at;
};

int print_table(Client& client, const Topology& t, int timeout_ms, std::map<std::string, Sample>& previous) {
  std::vector<std::vector<std::string>> rows{{"SERVICE", "STATE", "UPTIME", "HEAD", "LAG (per publisher)", "MSG/S",
                                              "HANDLED", "REJECTED", "GAPS", "REPAIRED", "DEAD", "SUBS"}};
  int unreachable = 0;
  for (const auto& s : t.services) {
    auto h = client.query_raw(s.name, std::string(builtin::kHealth), std::string(1, '\x80'),
                              std::chrono::milliseconds(timeout_ms));
    if (!h) {
      ++unreachable;
      rows.push_back({s.name, "unreachable", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-"});
      continue;
    }
    auto health = to_json(h->payload);
    auto m = client.query_raw(s.name, std::string(builtin::kMetrics), std::string(1, '\x80'),
                              std::chrono::milliseconds(timeout_ms));
    auto metrics = m ? to_json(m->payload) : nlohmann::json::object();
    std::uint64_t handled = 0, rejected = 0;
    std::string lags;
    if (health.contains("upstreams"))
      for (const auto& u : health["upstreams"])
        lags += (lags.empty() ? "" : " ") + u.value("publisher", std::string("?")) + ":" +
                std::to_string(u.value("lag", 0ull)) +
                (u.value("behind_retention", false) || u.value("head_regressed", false) ? "!" : "");
    if (lags.empty()) lags = "-";
    if (metrics.contains("types"))
      for (const auto& tm : metrics["types"]) {
        handled += tm.value("handled", 0ull);
        rejected += tm.value("rejected", 0ull);
      }
    // Rate: since the previous refresh (--watch), else the average since the node started.
    auto now = std::chrono::steady_clock::now();
    double rate = 0;
    auto prev = previous.find(s.name);
    if (prev != previous.end() && handled >= prev->second.handled)
      rate = (handled - prev->second.handled) /
             std::max(1e-3, std::chrono::duration<double>(now - prev->second.at).count());
    else
      rate = handled / std::max(1e-3, health.value("uptime_s", 0.0));
    previous[s.name] = {handled, now};
    std::ostringstream r;
    r << std::fixed << std::setprecision(rate < 10 ? 1 : 0) << rate;
    rows.push_back({s.name, health.value("state", "?"), uptime(health.value("uptime_s", 0.0)),
                    std::to_string(health.value("head", 0ull)), lags, r.str(), std::to_string(handled),
                    std::to_string(rejected), std::to_string(metrics.value("gaps_seen", 0ull)),
                    std::to_string(metrics.value("gaps_repaired", 0ull)),
                    std::to_string(health.value("dead_letters", 0ull)),
                    std::to_string(health.value("subscriptions", 0ull))});
  }
  std::vector<std::size_t> width(rows[0].size(), 0);
  for (const auto& r : rows)
    for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  for (const auto& r : rows) {
    for (std::size_t i = 0; i < r.size(); ++i)
      std::cout << std::left << std::setw(static_cast<int>(width[i]) + 2) << r[i];
    std::cout << '\n';
  }
  return unreachable;
}

}  // namespace

Runner add_status(CLI::App& app) {
  auto* cmd = app.add_subcommand("status", "one table of every service: state, heads, lag, counters");
  struct Opts : Common {
    bool watch = false;
    double interval = 2.0;
  };
  auto o = std::make_shared<Opts>();
  o->timeout_ms = 500;
  add_common(*cmd, *o);
  cmd->add_flag("--watch,-w", o->watch, "refresh until interrupted");
  cmd->add_option("--interval", o->interval, "seconds between refreshes with --watch")->capture_default_str();
  return [o, cmd]() -> int {
    if (!*cmd) return -1;
    auto t = load(*o);
    if (!t) return kUsage;
    Client client(*t, identity(*o));  // the source it writes is who it is (checked under CURVE)
    client.set_identity(identity(*o));
    std::map<std::string, Sample> previous;
    if (!o->watch) return print_table(client, *t, o->timeout_ms, previous) ? kUnreachable : kOk;
    while (true) {
      std::cout << "\x1b[H\x1b[2J" << t->mesh << " — " << rfc3339_now() << "\n\n";
      print_table(client, *t, o->timeout_ms, previous);
      std::cout.flush();
      std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int>(o->interval * 1000)));
    }
  };
}

}  // namespace troupe::cli
