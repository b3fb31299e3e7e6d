// troupe metrics --prometheus: every service's $metrics in the Prometheus text
// exposition format, e.g. for node_exporter's textfile collector on an edge host.
#include "cli.hpp"

#include <troupe/runtime/builtin.hpp>

#include <iostream>
#include <sstream>

namespace troupe::cli {
namespace {

std::string esc(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') { out += "\\n"; continue; }
    out += c;
  }
  return out;
}

struct Family {
  std::string name, help, type;
  std::ostringstream samples;
};

}  // namespace

Runner add_metrics(CLI::App& app) {
  auto* cmd = app.add_subcommand("metrics", "every service's metrics (--prometheus: text exposition format; default JSON)");
  struct Opts : Common {
    bool prometheus = false;
  };
  auto o = std::make_shared<Opts>();
  add_common(*cmd, *o);
  cmd->add_flag("--prometheus", o->prometheus, "Prometheus text exposition format");
  return [o, cmd]() -> int {
    if (!*cmd) return -1;
    auto t = load(*o);
    if (!t) return kUsage;
    Client client(*t, "metrics");
    client.set_identity(identity(*o));
    std::map<std::string, nlohmann::json> all;
    for (const auto& s : t->services) {
      auto r = client.query_raw(s.name, std::string(builtin::kMetrics), std::string(1, '\x80'),
                                std::chrono::milliseconds(o->timeout_ms));
      all[s.name] = r ? to_json(r->payload) : nlohmann::json();
    }
    if (!o->prometheus) {
      std::cout << dump(nlohmann::json(all), 2) << '\n';
      return kOk;
    }
    std::map<std::string, Family> families;
    auto family = [&](const std::string& name, const std::string& type, const std::string& help) -> std::ostringstream& {
      auto& f = families[name];
      f.name = name;
      f.type = type;
      f.help = help;
      return f.samples;
    };
    for (const auto& [service, m] : all) {
      std::string sl = "service=\"" + esc(service) + "\"";
      family("troupe_up", "gauge", "1 if the service answered $metrics.") << "troupe_up{" << sl << "} " << (m.is_object() ? 1 : 0) << '\n';
      if (!m.is_object()) continue;
      if (m.contains("types"))
        for (const auto& [type, tm] : m["types"].items()) {
          std::string l = sl + ",type=\"" + esc(type) + "\"";
          for (const char* k : {"received", "handled", "rejected", "published"})
            family(std::string("troupe_messages_") + k + "_total", "counter", std::string("Messages ") + k + ", by service and type.")
                << "troupe_messages_" << k << "_total{" << l << "} " << tm.value(k, 0ull) << '\n';
          if (tm.contains("latency_us")) {
            auto& f = family("troupe_handler_latency_microseconds", "histogram", "Handler latency, by service and type.");
            std::uint64_t cumulative = 0;
            for (const auto& b : tm["latency_us"]["buckets"]) {
              cumulative += b[1].get<std::uint64_t>();
              std::string le = b[0].is_string() ? "+Inf" : std::to_string(b[0].get<std::uint64_t>());
              f << "troupe_handler_latency_microseconds_bucket{" << l << ",le=\"" << le << "\"} " << cumulative << '\n';
            }
            f << "troupe_handler_latency_microseconds_sum{" << l << "} " << tm["latency_us"].value("sum", 0ull) << '\n';
            f << "troupe_handler_latency_microseconds_count{" << l << "} " << tm["latency_us"].value("count", 0ull) << '\n';
          }
        }
      for (const char* k : {"replays_requested", "replays_served", "gaps_seen", "gaps_repaired", "duplicates",
                            "dead_letters", "rejected_frames", "commands_resent", "store_failures", "events_lost", "published"})
        family(std::string("troupe_") + k + "_total", "counter", std::string("Node counter ") + k + ".")
            << "troupe_" << k << "_total{" << sl << "} " << m.value(k, 0ull) << '\n';
      if (m.contains("socket_events"))
        for (const auto& [ev, n] : m["socket_events"].items())
          family("troupe_socket_events_total", "counter", "ZeroMQ socket events on the bound endpoints.")
              << "troupe_socket_events_total{" << sl << ",event=\"" << esc(ev) << "\"} " << n.get<std::uint64_t>() << '\n';
      family("troupe_subscriptions", "gauge", "Live subscriptions on the events socket.")
          << "troupe_subscriptions{" << sl << "} " << m.value("subscriptions", 0ull) << '\n';
    }
    for (auto& [name, f] : families)
      std::cout << "# HELP " << name << ' ' << f.help << "\n# TYPE " << name << ' ' << f.type << '\n' << f.samples.str();
    return kOk;
  };
}

}  // namespace troupe::cli
