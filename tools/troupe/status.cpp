// troupe status: one aligned table of every service's health, stream heads and counters.
#include "cli.hpp"

#include <troupe/runtime/builtin.hpp>

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>
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

// One service's row as JSON: what --json prints, and what the table shows. An
// unreachable service is {"service", "reachable": false}.
nlohmann::json service_status(Client& client, const std::string& name, int timeout_ms,
                              std::map<std::string, Sample>& previous) {
  auto h = client.query_raw(name, std::string(builtin::kHealth), std::string(1, '\x80'),
                            std::chrono::milliseconds(timeout_ms));
  if (!h) return {{"service", name}, {"reachable", false}, {"error", h.error().message()}};
  auto health = to_json(h->payload);
  auto m = client.query_raw(name, std::string(builtin::kMetrics), std::string(1, '\x80'),
                            std::chrono::milliseconds(timeout_ms));
  auto metrics = m ? to_json(m->payload) : nlohmann::json::object();
  std::uint64_t handled = 0, rejected = 0;
  if (metrics.contains("types"))
    for (const auto& tm : metrics["types"]) {
      handled += tm.value("handled", 0ull);
      rejected += tm.value("rejected", 0ull);
    }
  nlohmann::json upstreams = nlohmann::json::array();
  if (health.contains("upstreams"))
    for (const auto& u : health["upstreams"])
      upstreams.push_back({{"publisher", u.value("publisher", std::string("?"))},
                           {"position", u.value("position", 0ull)},
                           {"known_head", u.value("known_head", 0ull)},
                           {"lag", u.value("lag", 0ull)},
                           {"behind_retention", u.value("behind_retention", false)},
                           {"head_regressed", u.value("head_regressed", false)},
                           {"stalled", u.value("stalled", false)}});
  // Rate: since the previous refresh (--watch), else the average since the node started.
  auto now = std::chrono::steady_clock::now();
  double rate = 0;
  auto prev = previous.find(name);
  if (prev != previous.end() && handled >= prev->second.handled)
    rate = (handled - prev->second.handled) / std::max(1e-3, std::chrono::duration<double>(now - prev->second.at).count());
  else
    rate = handled / std::max(1e-3, health.value("uptime_s", 0.0));
  previous[name] = {handled, now};
  return {{"service", name},
          {"reachable", true},
          {"state", health.value("state", "?")},
          {"uptime_s", health.value("uptime_s", 0.0)},
          {"head", health.value("head", 0ull)},
          {"upstreams", upstreams},
          {"rate", rate},
          {"handled", handled},
          {"rejected", rejected},
          {"gaps_seen", metrics.value("gaps_seen", 0ull)},
          {"gaps_repaired", metrics.value("gaps_repaired", 0ull)},
          {"dead_letters", health.value("dead_letters", 0ull)},
          {"subscriptions", health.value("subscriptions", 0ull)}};
}

// What --wait found of the services that did not answer: why, by name, and which of
// them refused (a $error reply: no waiting helps).
struct Unanswered {
  std::map<std::string, std::string> why;
  std::set<std::string> refused;
};

// `unanswered`: reported as --wait found them, without asking again.
nlohmann::json mesh_status(Client& client, const std::vector<std::string>& names, int timeout_ms,
                           std::map<std::string, Sample>& previous, const Unanswered& unanswered = {}) {
  nlohmann::json services = nlohmann::json::array();
  for (const auto& name : names)
    if (auto it = unanswered.why.find(name); it != unanswered.why.end())
      services.push_back({{"service", name}, {"reachable", false}, {"error", it->second}});
    else
      services.push_back(service_status(client, name, timeout_ms, previous));
  return services;
}

// --wait: asks for $health round robin, each service that has not answered yet in turn,
// each try at most `timeout_ms` (at least 10), until all have answered or `wait` is over.
// A service that has not bound yet is connected to within 10 to 100 ms of binding (the
// reconnect interval of Client::dealer). A refusal ends the wait for that service.
Unanswered wait_for_health(Client& client, const std::vector<std::string>& names, std::chrono::milliseconds wait,
                           int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  const auto per_try = std::chrono::milliseconds(std::max(timeout_ms, 10));
  Unanswered out;
  std::vector<std::string> pending = names;
  while (!pending.empty()) {
    std::vector<std::string> again;
    for (const auto& name : pending) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        again.push_back(name);
        continue;
      }
      auto h = client.query_raw(name, std::string(builtin::kHealth), std::string(1, '\x80'), std::min(left, per_try));
      if (h) continue;
      if (h.error().code == Rejection::Code::timeout) {
        again.push_back(name);
      } else {
        out.why[name] = h.error().message();
        out.refused.insert(name);
      }
    }
    pending = std::move(again);
    if (std::chrono::steady_clock::now() >= deadline) break;
  }
  for (const auto& name : pending)
    out.why[name] = "no answer to $health within " + std::to_string(wait.count()) + " ms";
  return out;
}

// The services named on the command line, as services (every instance) or instances;
// every one when none is named. nullopt after printing which name is unknown.
std::optional<std::vector<std::string>> chosen(const Topology& t, const std::vector<std::string>& wanted) {
  std::vector<std::string> names;
  for (const auto& w : wanted) {
    bool known = false;
    for (const auto& s : t.services)
      if (s.name == w || s.service() == w) {
        known = true;
        if (std::find(names.begin(), names.end(), s.name) == names.end()) names.push_back(s.name);
      }
    if (!known) {
      std::cerr << "troupe status: no service or instance '" << w << "' in " << t.file << '\n';
      return std::nullopt;
    }
  }
  if (wanted.empty())
    for (const auto& s : t.services) names.push_back(s.name);
  return names;
}

void print_table(const nlohmann::json& services) {
  std::vector<std::vector<std::string>> rows{{"SERVICE", "STATE", "UPTIME", "HEAD", "LAG (per publisher)", "MSG/S",
                                              "HANDLED", "REJECTED", "GAPS", "REPAIRED", "DEAD", "SUBS"}};
  for (const auto& s : services) {
    const std::string name = s["service"];
    if (!s["reachable"].get<bool>()) {
      rows.push_back({name, "unreachable", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-"});
      continue;
    }
    std::string lags;
    for (const auto& u : s["upstreams"])
      lags += (lags.empty() ? "" : " ") + u["publisher"].get<std::string>() + ":" +
              std::to_string(u["lag"].get<std::uint64_t>()) +
              (u["behind_retention"].get<bool>() || u["head_regressed"].get<bool>() || u["stalled"].get<bool>() ? "!"
                                                                                                              : "");
    if (lags.empty()) lags = "-";
    const double rate = s["rate"];
    std::ostringstream r;
    r << std::fixed << std::setprecision(rate < 10 ? 1 : 0) << rate;
    auto n = [&](const char* k) { return std::to_string(s[k].get<std::uint64_t>()); };
    rows.push_back({name, s["state"], uptime(s["uptime_s"]), n("head"), lags, r.str(), n("handled"), n("rejected"),
                    n("gaps_seen"), n("gaps_repaired"), n("dead_letters"), n("subscriptions")});
  }
  std::vector<std::size_t> width(rows[0].size(), 0);
  for (const auto& r : rows)
    for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  for (const auto& r : rows) {
    for (std::size_t i = 0; i < r.size(); ++i)
      std::cout << std::left << std::setw(static_cast<int>(width[i]) + 2) << r[i];
    std::cout << '\n';
  }
}

bool any_unreachable(const nlohmann::json& services) {
  return std::any_of(services.begin(), services.end(), [](const nlohmann::json& s) { return !s["reachable"].get<bool>(); });
}

}  // namespace

Runner add_status(CLI::App& app) {
  auto* cmd = app.add_subcommand("status", "one table of every service: state, heads, lag, counters");
  struct Opts : Common {
    bool watch = false, json = false;
    double interval = 2.0;
    int wait_ms = 0;
    std::vector<std::string> services;
  };
  auto o = std::make_shared<Opts>();
  o->timeout_ms = 500;
  add_common(*cmd, *o);
  cmd->add_option("services", o->services, "only these services or instances (default: every one)");
  cmd->add_flag("--watch,-w", o->watch, "refresh until interrupted");
  cmd->add_option("--wait", o->wait_ms,
                  "wait up to this many milliseconds for every service to answer $health before reporting "
                  "(how scripts/mesh waits for a mesh to come up): exit 0 once all answer, else 3 and a line on "
                  "stderr naming those that did not")
      ->check(CLI::NonNegativeNumber)
      ->excludes("--watch");
  cmd->add_option("--interval", o->interval, "seconds between refreshes with --watch")->capture_default_str();
  cmd->add_flag("--json", o->json,
                "print {\"mesh\", \"services\": [one object per service]} instead of the table (not with --watch)")
      ->excludes("--watch");
  return [o, cmd]() -> int {
    if (!*cmd) return -1;
    auto t = load(*o);
    if (!t) return kUsage;
    Client client(*t, identity(*o));  // the source it writes is who it is (checked under CURVE)
    client.set_identity(identity(*o));
    auto names = chosen(*t, o->services);
    if (!names) return kUsage;
    std::map<std::string, Sample> previous;
    if (!o->watch) {
      Unanswered unanswered;
      if (o->wait_ms > 0) {
        unanswered = wait_for_health(client, *names, std::chrono::milliseconds(o->wait_ms), o->timeout_ms);
        std::string silent;
        for (const auto& name : *names) {  // in the topology's order
          auto it = unanswered.why.find(name);
          if (it == unanswered.why.end()) continue;
          if (unanswered.refused.count(name))
            std::cerr << "troupe status: " << name << " refused $health: " << it->second << '\n';
          else
            silent += (silent.empty() ? "" : ", ") + name;
        }
        if (!silent.empty())
          std::cerr << "troupe status: no answer to $health within " << o->wait_ms << " ms from " << silent << '\n';
      }
      auto services = mesh_status(client, *names, o->timeout_ms, previous, unanswered);
      if (o->json)
        std::cout << dump(nlohmann::json{{"mesh", t->mesh}, {"services", services}}, 2) << '\n';
      else
        print_table(services);
      if (!unanswered.refused.empty()) return kFailed;
      return any_unreachable(services) ? kUnreachable : kOk;
    }
    while (true) {
      std::cout << "\x1b[H\x1b[2J" << t->mesh << " — " << rfc3339_now() << "\n\n";
      print_table(mesh_status(client, *names, o->timeout_ms, previous));
      std::cout.flush();
      std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int>(o->interval * 1000)));
    }
  };
}

}  // namespace troupe::cli
