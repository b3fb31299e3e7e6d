// troupe tap: watches the mesh live. Events come from every service's events socket;
// while a tap is subscribed, services also mirror the commands, queries, dead letters
// and gap/repair notices they handle (docs/protocol.md §7.7). One aligned line per
// message (colour on a terminal) or one CloudEvents JSON document per line; filters;
// --record FILE keeps everything seen, --from FILE reads it back through the filters.
#include "cli.hpp"

#include <troupe/runtime/builtin.hpp>
#include <troupe/tools/tap.hpp>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <fnmatch.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>

namespace troupe::cli {
namespace {

volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_signal(int) { g_stop = 1; }

}  // namespace

Runner add_tap(CLI::App& app) {
  auto* cmd = app.add_subcommand("tap", "watch events, commands, queries, dead letters and gap repairs live, with filters");
  struct Opts : Common {
    std::vector<std::string> services;
    std::string type = "*", kind, correlation, record_file, from_file;
    bool json = false, events_only = false;
    int limit = 0;
    double seconds = 0;
  };
  auto o = std::make_shared<Opts>();
  add_common(*cmd, *o);
  cmd->add_option("--service", o->services, "only messages from or to these services (repeatable)");
  cmd->add_option("--type", o->type, "only types matching this glob, e.g. 'Order*'")->capture_default_str();
  cmd->add_option("--kind", o->kind, "only event, command, query, deadletter, gap, repaired or refused");
  cmd->add_option("--correlation", o->correlation, "only this correlation id (an order id)");
  cmd->add_flag("--json", o->json, "one CloudEvents JSON document per line");
  cmd->add_flag("--events-only", o->events_only, "do not ask services to mirror what they handle");
  cmd->add_option("--record", o->record_file, "also write everything seen to FILE (JSON lines)");
  cmd->add_option("--from", o->from_file, "read a recording instead of the live mesh");
  cmd->add_option("--limit", o->limit, "stop after this many shown messages (0: no limit)");
  cmd->add_option("--seconds", o->seconds, "stop after this many seconds (0: until interrupted)");
  return [o, cmd]() -> int {
    if (!*cmd) return -1;
    bool colour = isatty(1) && !o->json;
    int shown = 0;
    auto show = [&](const nlohmann::json& r) {
      std::string kind = r.value("tapkind", "event"), source = r.value("source", ""),
                  target = r.value("taptarget", ""), type = r.value("type", ""),
                  corr = r.value("correlationid", "");
      if (fnmatch(o->type.c_str(), type.c_str(), 0) != 0) return;
      if (!o->kind.empty() && o->kind != kind) return;
      if (!o->correlation.empty() && o->correlation != corr) return;
      // --service orders matches every instance of a partitioned orders (orders.0, …).
      auto named = [&](const std::string& who) {
        return std::find(o->services.begin(), o->services.end(), who) != o->services.end() ||
               std::find(o->services.begin(), o->services.end(), service_of(who)) != o->services.end();
      };
      if (!o->services.empty() && !named(source) && !named(target)) return;
      ++shown;
      if (o->json) {
        std::cout << dump(r) << std::endl;
        return;
      }
      std::string time = r.value("time", "");
      if (time.size() >= 23) time = time.substr(11, 12);
      const char* c = "";
      if (colour) {
        if (kind == "deadletter" || kind == "gap") c = "\x1b[1;31m";
        else if (kind == "command") c = "\x1b[36m";
        else if (kind == "query") c = "\x1b[35m";
        else if (type.find("Cancel") != std::string::npos || type.find("Declin") != std::string::npos ||
                 type.find("Reject") != std::string::npos || type.find("Releas") != std::string::npos ||
                 type.find("Refund") != std::string::npos)
          c = "\x1b[33m";
        else c = "\x1b[32m";
      }
      const char* reset = colour ? "\x1b[0m" : "";
      std::string seq = r.contains("sequence") ? "#" + std::to_string(r["sequence"].get<std::uint64_t>()) : "";
      // What peers sent is shown with its control bytes escaped (a type name is theirs).
      std::cout << printable(time) << "  " << c << std::left << std::setw(10) << printable(kind) << reset
                << std::setw(13) << printable(source) << "→ " << std::setw(14) << printable(target) << c
                << std::setw(18) << printable(type) << reset << std::setw(6) << seq << std::setw(17)
                << printable(corr.substr(0, 16)) << short_fields(r.value("data", nlohmann::json()), 70) << std::endl;
    };

    if (!o->from_file.empty()) {
      std::ifstream in(o->from_file);
      if (!in) {
        std::cerr << "troupe: cannot read " << o->from_file << '\n';
        return kUsage;
      }
      std::string line;
      int lineno = 0;
      while (std::getline(in, line) && (o->limit == 0 || shown < o->limit)) {
        ++lineno;
        if (line.empty()) continue;
        try {
          show(nlohmann::json::parse(line));
        } catch (const nlohmann::json::exception& e) {
          std::cerr << "troupe: " << o->from_file << ":" << lineno << ": not a tap record: " << e.what() << '\n';
        }
      }
      return kOk;
    }

    auto t = load(*o);
    if (!t) return kUsage;
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    std::ofstream rec;
    if (!o->record_file.empty()) {
      rec.open(o->record_file, std::ios::app);
      if (!rec) {
        std::cerr << "troupe: cannot write " << o->record_file << '\n';
        return kUsage;
      }
    }
    zmq::context_t ctx(1);
    zmq::socket_t sub(ctx, zmq::socket_type::sub);
    sub.set(zmq::sockopt::rcvhwm, 100000);  // beyond this the services drop, never block
    sub.set(zmq::sockopt::linger, 0);
    for (const auto& s : t->services) {
      for (const auto& type : s.publishes) sub.set(zmq::sockopt::subscribe, type + " ");
      if (!o->events_only) sub.set(zmq::sockopt::subscribe, builtin::kTapTopic);
      curve_client(sub, *t, s.name, identity(*o, "tap"));
      sub.connect(t->external(s).events);
    }
    tools::MirrorGaps gaps;
    std::map<std::string, std::uint64_t> dropped;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int>(o->seconds * 1000));
    zmq::pollitem_t item{sub.handle(), 0, ZMQ_POLLIN, 0};
    while (!g_stop && (o->limit == 0 || shown < o->limit)) {
      if (o->seconds > 0 && std::chrono::steady_clock::now() >= deadline) break;
      zmq::poll(&item, 1, std::chrono::milliseconds(100));
      std::vector<zmq::message_t> frames;
      if (!zmq::recv_multipart(sub, std::back_inserter(frames), zmq::recv_flags::dontwait)) continue;
      std::vector<std::string_view> views;
      for (const auto& f : frames) views.push_back(f.to_string_view());
      auto seen = tools::read_tap(views);
      if (!seen) continue;
      if (auto n = gaps.missed(*seen)) {
        dropped[seen->mirrored_by] += n;
        std::cerr << "tap: missed " << n << " mirrored message(s) of " << seen->mirrored_by
                  << " while this tap was behind (" << dropped[seen->mirrored_by] << " in all); caught up\n";
      }
      const nlohmann::json& r = seen->json;
      if (rec) rec << dump(r) << '\n';
      show(r);
    }
    for (const auto& [service, n] : dropped)
      std::cerr << "tap: " << n << " mirrored message(s) of " << service << " were dropped for this tap\n";
    return kOk;
  };
}

}  // namespace troupe::cli
