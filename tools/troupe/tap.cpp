// troupe tap: watches every service's events live, one aligned line per message (or
// CloudEvents JSON per line), with filters.
#include "cli.hpp"

#include <fnmatch.h>
#include <unistd.h>

#include <csignal>
#include <iomanip>
#include <iostream>

namespace troupe::cli {
namespace {

volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_signal(int) { g_stop = 1; }

// A few payload fields worth showing on one line.
std::string key_fields(const nlohmann::json& data) {
  std::string out;
  if (!data.is_object()) return out;
  for (const auto& [k, v] : data.items()) {
    if (k == "order_id") continue;  // already shown as the correlation
    if (out.size() > 60) {
      out += " …";
      break;
    }
    out += (out.empty() ? "" : " ") + k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
  }
  return out;
}

}  // namespace

Runner add_tap(CLI::App& app) {
  auto* cmd = app.add_subcommand("tap", "watch the events of every service live, with filters");
  struct Opts : Common {
    std::vector<std::string> services;
    std::string type = "*", kind, correlation;
    bool json = false;
    int limit = 0;
    double seconds = 0;
  };
  auto o = std::make_shared<Opts>();
  add_common(*cmd, *o);
  cmd->add_option("--service", o->services, "only these publishers (repeatable)");
  cmd->add_option("--type", o->type, "only types matching this glob, e.g. 'Order*'")->capture_default_str();
  cmd->add_option("--kind", o->kind, "only this kind (event)");
  cmd->add_option("--correlation", o->correlation, "only this correlation id (an order id)");
  cmd->add_flag("--json", o->json, "one CloudEvents JSON document per line");
  cmd->add_option("--limit", o->limit, "stop after this many messages (0: no limit)");
  cmd->add_option("--seconds", o->seconds, "stop after this many seconds (0: until interrupted)");
  return [o, cmd]() -> int {
    if (!*cmd) return -1;
    auto t = load(*o);
    if (!t) return kUsage;
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    Client client(*t, "tap");
    client.watch(o->services);
    bool colour = isatty(1) && !o->json;
    int shown = 0;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int>(o->seconds * 1000));
    while (!g_stop && (o->limit == 0 || shown < o->limit)) {
      if (o->seconds > 0 && std::chrono::steady_clock::now() >= deadline) break;
      auto ev = client.next_event(std::chrono::milliseconds(100));
      if (!ev) continue;
      const auto& e = ev->envelope;
      if (fnmatch(o->type.c_str(), e.type.c_str(), 0) != 0) continue;
      if (!o->kind.empty() && o->kind != to_string(e.kind)) continue;
      if (!o->correlation.empty() && o->correlation != e.correlationid) continue;
      ++shown;
      if (o->json) {
        std::cout << cloudevent(e, ev->payload).dump() << std::endl;
        continue;
      }
      std::string time = e.time.size() >= 23 ? e.time.substr(11, 12) : e.time;
      const char* c = colour ? (e.type.find("Cancel") != std::string::npos || e.type.find("Declin") != std::string::npos ||
                                        e.type.find("Reject") != std::string::npos
                                    ? "\x1b[31m"
                                    : "\x1b[32m")
                             : "";
      const char* r = colour ? "\x1b[0m" : "";
      std::cout << time << "  " << std::left << std::setw(6) << to_string(e.kind) << std::setw(14) << e.source
                << c << std::setw(18) << e.type << r << std::setw(5) << ("#" + std::to_string(e.sequence)) << ' '
                << std::setw(16) << e.correlationid.substr(0, 15) << key_fields(to_json(ev->payload)) << std::endl;
    }
    return kOk;
  };
}

}  // namespace troupe::cli
