// troupe metrics --prometheus: every service's $metrics in the Prometheus text
// exposition format, e.g. for node_exporter's textfile collector on an edge host.
#include "cli.hpp"

#include <troupe/runtime/builtin.hpp>
#include <troupe/tools/prometheus.hpp>

#include <iostream>

namespace troupe::cli {

Runner add_metrics(CLI::App& app) {
  auto* cmd = app.add_subcommand("metrics", "every service's metrics (--prometheus: text exposition format; default JSON)");
  struct Opts : Common {
    bool prometheus = false, json = false;
  };
  auto o = std::make_shared<Opts>();
  add_common(*cmd, *o);
  cmd->add_flag("--prometheus", o->prometheus, "Prometheus text exposition format");
  cmd->add_flag("--json", o->json, "JSON, an object of every service's $metrics by name (the default)")
      ->excludes("--prometheus");
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
    std::cout << tools::prometheus_text(all);
    return kOk;
  };
}

}  // namespace troupe::cli
