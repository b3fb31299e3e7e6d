// events_bench: one publisher -> one subscriber, 100-byte payloads, tcp loopback.
// Raw libzmq PUB/SUB, troupe in memory mode and troupe durable (SQLite, fsync on) are
// run in the same invocation and printed with their ratios: absolute numbers drift on
// a noisy machine, ratios hold.
//   events_bench [EVENTS] [--json FILE]
#include <troupe/adapters/toml/topology_loader.hpp>
#include <troupe/runtime/client.hpp>
#include <troupe/runtime/node.hpp>

#include <spdlog/spdlog.h>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

namespace {

using Clock = std::chrono::steady_clock;

struct Tick {
  std::int64_t n = 0;
  std::string body;
  TROUPE_MESSAGE(Tick, n, body)
};
struct Burst {
  std::int64_t count = 0;
  TROUPE_MESSAGE(Burst, count)
};

const std::string kBody(84, 'x');  // + n + keys = ~100 bytes of payload

double raw_zmq(int events) {
  zmq::context_t ctx;
  zmq::socket_t pub(ctx, zmq::socket_type::pub), sub(ctx, zmq::socket_type::sub);
  pub.set(zmq::sockopt::sndhwm, 0);
  sub.set(zmq::sockopt::rcvhwm, 0);
  pub.bind("tcp://127.0.0.1:*");
  sub.set(zmq::sockopt::subscribe, "");
  sub.connect(pub.get(zmq::sockopt::last_endpoint));
  // Wait until the subscription is live (a probe gets through), then measure.
  while (true) {
    pub.send(zmq::str_buffer("probe"), zmq::send_flags::none);
    zmq::message_t m;
    if (sub.recv(m, zmq::recv_flags::dontwait)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::string payload(100, 'p');
  std::atomic<int> got{0};
  std::thread reader([&] {
    zmq::message_t m;
    while (got.load(std::memory_order_relaxed) < events) {
      std::vector<zmq::message_t> frames;
      if (zmq::recv_multipart(sub, std::back_inserter(frames)) && frames.size() == 3) got.fetch_add(1);
    }
  });
  auto t0 = Clock::now();
  std::string topic = "Tick ", env(180, 'e');  // same frame shapes as troupe's
  for (int i = 0; i < events; ++i) {
    std::array<zmq::const_buffer, 3> b{zmq::buffer(topic), zmq::buffer(env), zmq::buffer(payload)};
    zmq::send_multipart(pub, b);
  }
  reader.join();
  return events / std::chrono::duration<double>(Clock::now() - t0).count();
}

double troupe_run(int events, const std::string& durability) {
  auto dir = std::filesystem::temp_directory_path() / ("troupe-bench-" + durability + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::string text = "[mesh]\nname = \"bench\"\nstate_dir = \"" + dir.string() +
                     "\"\nheartbeat_ms = 200\nsynchronous = \"full\"\ndurability = \"" + durability +
                     "\"\n[services.pub]\nevents = \"tcp://127.0.0.1:*\"\ncommands = \"tcp://127.0.0.1:*\"\n"
                     "queries = \"tcp://127.0.0.1:*\"\npublishes = [\"Tick\"]\naccepts = [\"Burst\"]\n"
                     "[services.sub]\nevents = \"tcp://127.0.0.1:*\"\ncommands = \"tcp://127.0.0.1:*\"\n"
                     "queries = \"tcp://127.0.0.1:*\"\nreacts_to = { pub = [\"Tick\"] }\n";
  auto topo = troupe::toml::parse_topology(text, "bench.toml");
  if (!topo) throw std::runtime_error(topo.error().message());
  zmq::context_t ctx;
  troupe::NodeOptions o;
  o.context = &ctx;
  troupe::Node pub(*topo, "pub", o), sub(*topo, "sub", o);
  for (auto* n : {&pub, &sub}) {
    n->set_peer_endpoints("pub", pub.bound());
    n->set_peer_endpoints("sub", sub.bound());
  }
  std::atomic<std::int64_t> applied{0};
  pub.on_command<Burst>([](const Burst& b, troupe::Context& ctx) {
    for (std::int64_t i = 0; i < b.count; ++i) ctx.emit(Tick{i, kBody});
  });
  sub.on<Tick>([&](const Tick&, troupe::Context&) { applied.fetch_add(1, std::memory_order_relaxed); });
  std::thread tp([&] { pub.run(); }), ts([&] { sub.run(); });
  while (pub.counters().subscriptions.load() < 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto client_topo = *topo;
  client_topo.find("pub")->endpoints = pub.bound();
  troupe::Client client(client_topo, "bench", &ctx);
  const int per_burst = 100;
  std::vector<troupe::Envelope> bursts;
  auto t0 = Clock::now();
  for (int sent = 0; sent < events; sent += per_burst) {
    auto e = client.send("pub", Burst{per_burst});
    if (e) bursts.push_back(*e);
  }
  auto give_up = Clock::now() + std::chrono::seconds(120);
  auto last_progress = Clock::now();
  std::int64_t last_applied = 0;
  while (applied.load() < events) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    if (applied.load() != last_applied) {
      last_applied = applied.load();
      last_progress = Clock::now();
    } else if (Clock::now() - last_progress > std::chrono::seconds(3)) {
      // No progress: resend the bursts pub says it never handled (reported, not hidden).
      int resent = 0;
      for (const auto& b : bursts)
        if (auto s = client.seen("pub", {b.id}); s && !s->at(0)) {
          (void)client.resend("pub", b, troupe::codec::encode(Burst{per_burst}));
          ++resent;
        }
      std::cerr << "\nevents_bench: stalled at " << last_applied << "; resent " << resent << " lost command(s)\n";
      last_progress = Clock::now();
    }
    if (Clock::now() > give_up) {
      std::cerr << "\nevents_bench: stuck at " << applied.load() << " of " << events << " (pub commands "
                << pub.counters().commands_applied << ", published " << pub.counters().published << ", head "
                << pub.store().head() << "; sub applied " << sub.counters().events_applied << ", gaps "
                << sub.counters().gaps_seen << "/" << sub.counters().gaps_repaired << ", replays "
                << sub.counters().replays_requested << ", duplicates " << sub.counters().duplicates << ")\n";
      std::exit(1);
    }
  }
  double rate = events / std::chrono::duration<double>(Clock::now() - t0).count();
  pub.stop();
  sub.stop();
  tp.join();
  ts.join();
  std::filesystem::remove_all(dir);
  return rate;
}

}  // namespace

int main(int argc, char** argv) {
  int events = 200000;
  std::string json_out;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) json_out = argv[++i];
    else if (a == "-h" || a == "--help") {
      std::cout << "usage: events_bench [EVENTS] [--json FILE]\n";
      return 0;
    } else events = std::stoi(a);
  }
  spdlog::set_level(spdlog::level::warn);
  std::cerr << "events_bench: " << events << " events of ~100 B, 1 publisher -> 1 subscriber, tcp loopback\n";
  std::cerr << "  raw libzmq PUB/SUB ..." << std::flush;
  double raw = raw_zmq(events);
  std::cerr << " done\n  troupe memory mode ..." << std::flush;
  double mem = troupe_run(events, "memory");
  std::cerr << " done\n  troupe durable (SQLite WAL, synchronous=FULL) ..." << std::flush;
  double dur = troupe_run(events, "durable");
  std::cerr << " done\n";
  std::printf("%-44s %14s %10s\n", "scenario: 1 -> 1 events, 100 B, tcp", "events/s", "vs raw");
  std::printf("%-44s %14.0f %10.2f\n", "raw libzmq PUB/SUB (no delivery guarantee)", raw, 1.0);
  std::printf("%-44s %14.0f %10.2f\n", "troupe memory mode", mem, mem / raw);
  std::printf("%-44s %14.0f %10.2f\n", "troupe durable, fsync per batch", dur, dur / raw);
  if (!json_out.empty()) {
    std::ofstream j(json_out);
    j << "[\n";
    j << R"(  {"scenario": "events-1to1-100B", "system": "raw-libzmq", "metric": "throughput", "value": )" << raw << R"(, "unit": "events/s"},)" << "\n";
    j << R"(  {"scenario": "events-1to1-100B", "system": "troupe-memory", "metric": "throughput", "value": )" << mem << R"(, "unit": "events/s"},)" << "\n";
    j << R"(  {"scenario": "events-1to1-100B", "system": "troupe-durable", "metric": "throughput", "value": )" << dur << R"(, "unit": "events/s"})" << "\n]\n";
  }
  return 0;
}
