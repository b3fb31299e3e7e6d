// events_bench: troupe (memory mode, and durable: SQLite WAL, synchronous=FULL) beside
// raw libzmq with no delivery guarantee, over tcp loopback, in one invocation. Absolute
// numbers drift on a noisy machine; ratios hold better.
//   --mode events   1 publisher -> N subscribers, events/s each subscriber received
//   --mode command  a command sent -> the event it caused seen by the sender (one at a time)
//   --mode query    a query -> its reply (one at a time)
// Run with no options it prints the 1 -> 1, 100-byte table of the three systems.
// scripts/bench runs one system per invocation and reads --json.
#include "bench_report.hpp"

#include <troupe/adapters/toml/topology_loader.hpp>
#include <troupe/runtime/client.hpp>
#include <troupe/adapters/zmq/keys.hpp>
#include <troupe/runtime/node.hpp>

#include <spdlog/spdlog.h>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>
#include <unistd.h>

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* kUsage = R"(usage: events_bench [EVENTS] [options]
  --mode events|command|query  what to measure (default events)
  --system all|raw|memory|durable|durable-pipelined  which system (default all = the
                   first three; repeatable); durable-pipelined: commit = "pipelined"
  --count N        events to publish, or round trips to time (default 200000 / 5000)
  --payload BYTES  payload size of each event, command and query (default 100)
  --fanout N       subscribers of the publisher, events mode (default 1)
  --samples FILE   round-trip latencies, one per line in ms (FILE.<system> if several)
  --json FILE      records {scenario, system, metric, value, unit} as a JSON array
  --scenario NAME  scenario name in the records (default from mode, payload, fanout)
  --curve          troupe systems with security = "curve" (CurveZMQ + ZAP on every endpoint)
exit status: 0 done, 1 a system lost what it promised to deliver (durable), 2 usage
)";

struct Options {
  std::string mode = "events";
  std::vector<std::string> systems;
  int count = 0;
  int payload = 100;
  int fanout = 1;
  std::string samples, json, scenario;
  bool curve = false;
};

bool g_curve = false;  // --curve: every Mesh runs with CurveZMQ

// The messages of the benchmark service: Burst makes the publisher emit `count` Ticks
// in one handler (so one commit); Ping causes one Pong; Echo is answered with its body.
struct Tick {
  std::int64_t n = 0;  // -1: a warm-up tick, not counted
  std::string body;
  TROUPE_MESSAGE(Tick, n, body)
};
struct Burst {
  std::int64_t count = 0;
  std::int64_t body_bytes = 0;
  std::int64_t warmup = 0;
  TROUPE_MESSAGE(Burst, count, body_bytes, warmup)
};
struct Ping {
  std::int64_t n = 0;
  std::string body;
  TROUPE_MESSAGE(Ping, n, body)
};
struct Pong {
  std::int64_t n = 0;
  std::string body;
  TROUPE_MESSAGE(Pong, n, body)
};
struct EchoReply {
  std::int64_t n = 0;
  std::string body;
  TROUPE_MESSAGE(EchoReply, n, body)
};
struct Echo {
  std::int64_t n = 0;
  std::string body;
  using Reply = EchoReply;
  TROUPE_MESSAGE(Echo, n, body)
};

// The body length that makes an encoded {n, body} message exactly `payload` bytes
// (or as close as msgpack's length prefixes allow).
std::size_t body_for(int payload) {
  std::size_t body = payload > 24 ? static_cast<std::size_t>(payload) - 16 : 8;
  for (int i = 0; i < 4; ++i) {
    auto size = troupe::codec::encode(Tick{1000000, std::string(body, 'x')}).size();
    if (size == static_cast<std::size_t>(payload) || (size > static_cast<std::size_t>(payload) && body == 8)) break;
    body = size > static_cast<std::size_t>(payload) ? body - std::min(body - 8, size - payload)
                                                   : body + (payload - size);
  }
  return body;
}

struct Throughput {
  double rate = 0;  // events/s each subscriber received
  long lost = 0;    // over all subscribers
  // troupe: the batches every node of the run committed while it was timed (each one
  // SQLite transaction), and the fsyncs they cost: one per commit when the commit is
  // inline, fewer when pipelined (one sync covers what was committed before it began).
  std::uint64_t commits = 0, fsyncs = 0;
};

struct RoundTrips {
  std::vector<double> ms;
  long lost = 0;
};

// ---- raw libzmq -------------------------------------------------------------------

// The size of a real troupe envelope, so raw frames have troupe's shapes.
std::size_t envelope_bytes() {
  auto env = troupe::make_envelope("pub", "Tick", troupe::Kind::event);
  env.sequence = 123456;
  return troupe::codec::encode_envelope(env).size();
}

Throughput raw_events(int events, int payload_bytes, int fanout) {
  zmq::context_t ctx;
  zmq::socket_t pub(ctx, zmq::socket_type::pub);
  pub.set(zmq::sockopt::sndhwm, 0);
  pub.bind("tcp://127.0.0.1:*");
  std::vector<zmq::socket_t> subs;
  for (int i = 0; i < fanout; ++i) {
    subs.emplace_back(ctx, zmq::socket_type::sub);
    subs.back().set(zmq::sockopt::rcvhwm, 0);
    subs.back().set(zmq::sockopt::rcvtimeo, 100);
    subs.back().set(zmq::sockopt::subscribe, "");
    subs.back().connect(pub.get(zmq::sockopt::last_endpoint));
  }
  // Every subscription is live once a probe got through to it; then measure.
  std::vector<bool> live(subs.size(), false);
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (std::count(live.begin(), live.end(), true) < fanout) {
    if (Clock::now() > deadline) throw std::runtime_error("raw libzmq: subscriptions not live within 10 s");
    pub.send(zmq::str_buffer("probe"), zmq::send_flags::none);
    for (std::size_t i = 0; i < subs.size(); ++i) {
      zmq::message_t m;
      while (subs[i].recv(m, zmq::recv_flags::dontwait)) live[i] = true;
    }
    std::this_thread::sleep_for(milliseconds(1));
  }
  std::vector<long> got(subs.size(), 0);
  std::vector<Clock::time_point> last(subs.size());
  std::vector<std::thread> readers;
  for (std::size_t i = 0; i < subs.size(); ++i)
    readers.emplace_back([&, i] {
      auto quiet_since = Clock::now();
      while (got[i] < events) {
        std::vector<zmq::message_t> frames;
        if (zmq::recv_multipart(subs[i], std::back_inserter(frames)) && frames.size() == 3) {
          ++got[i];
          last[i] = quiet_since = Clock::now();
        } else if (frames.empty() && Clock::now() - quiet_since > std::chrono::seconds(3)) {
          break;  // lost: counted below, never hidden
        }
      }
    });
  auto t0 = Clock::now();
  std::string topic = "Tick ", env(envelope_bytes(), 'e'), payload(static_cast<std::size_t>(payload_bytes), 'p');
  for (int i = 0; i < events; ++i) {
    std::array<zmq::const_buffer, 3> b{zmq::buffer(topic), zmq::buffer(env), zmq::buffer(payload)};
    zmq::send_multipart(pub, b);
  }
  for (auto& r : readers) r.join();
  Throughput t;
  long total = 0;
  auto end = t0;
  for (std::size_t i = 0; i < subs.size(); ++i) {
    total += got[i];
    end = std::max(end, last[i]);
  }
  t.lost = static_cast<long>(events) * fanout - total;
  t.rate = static_cast<double>(total) / fanout / std::max(1e-9, std::chrono::duration<double>(end - t0).count());
  return t;
}

// command: PUSH -> a responder's PULL, which publishes the caused event on PUB -> SUB.
// query: DEALER -> ROUTER -> DEALER. Frames: [envelope][payload] as troupe's.
RoundTrips raw_round_trips(const std::string& mode, int count, int payload_bytes) {
  zmq::context_t ctx;
  bool command = mode == "command";
  zmq::socket_t in(ctx, command ? zmq::socket_type::pull : zmq::socket_type::router);
  zmq::socket_t out(ctx, zmq::socket_type::pub);
  in.bind("tcp://127.0.0.1:*");
  out.bind("tcp://127.0.0.1:*");
  zmq::socket_t req(ctx, command ? zmq::socket_type::push : zmq::socket_type::dealer);
  zmq::socket_t sub(ctx, zmq::socket_type::sub);
  req.connect(in.get(zmq::sockopt::last_endpoint));
  sub.set(zmq::sockopt::subscribe, "Pong ");
  sub.connect(out.get(zmq::sockopt::last_endpoint));
  zmq::socket_t& reply_in = command ? sub : req;
  std::atomic<bool> stop{false};
  std::thread responder([&] {
    zmq::pollitem_t item{in.handle(), 0, ZMQ_POLLIN, 0};
    while (!stop.load()) {
      if (zmq::poll(&item, 1, milliseconds(50)) == 0) continue;
      std::vector<zmq::message_t> frames;
      if (!zmq::recv_multipart(in, std::back_inserter(frames))) continue;
      if (command) {
        if (frames.size() != 2) continue;
        std::array<zmq::const_buffer, 3> b{zmq::str_buffer("Pong "), zmq::buffer(frames[0].data(), frames[0].size()),
                                           zmq::buffer(frames[1].data(), frames[1].size())};
        zmq::send_multipart(out, b);
      } else {
        zmq::send_multipart(in, frames);  // [identity][envelope][payload] back to the asker
      }
    }
  });
  std::string env(envelope_bytes(), 'e'), payload(static_cast<std::size_t>(std::max(payload_bytes, 8)), 'p');
  // Returns the round trip in ms, or nullopt when nothing matching came within `timeout`.
  auto once = [&](std::int64_t n, milliseconds timeout) -> std::optional<double> {
    std::memcpy(payload.data(), &n, sizeof n);
    auto t0 = Clock::now();
    std::array<zmq::const_buffer, 2> b{zmq::buffer(env), zmq::buffer(payload)};
    zmq::send_multipart(req, b);
    zmq::pollitem_t item{reply_in.handle(), 0, ZMQ_POLLIN, 0};
    auto deadline = t0 + timeout;
    while (Clock::now() < deadline) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()) + milliseconds(1);
      if (zmq::poll(&item, 1, left) == 0) continue;
      std::vector<zmq::message_t> frames;
      if (!zmq::recv_multipart(reply_in, std::back_inserter(frames), zmq::recv_flags::dontwait)) continue;
      const auto& p = frames.back();
      std::int64_t got = -1;
      if (p.size() >= sizeof got) std::memcpy(&got, p.data(), sizeof got);
      if (got == n) return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    }
    return std::nullopt;
  };
  // Warm up: the first round trips prove the connections (and the subscription) are live.
  auto deadline = Clock::now() + std::chrono::seconds(10);
  std::int64_t n = 0;
  while (!once(--n, milliseconds(100)))
    if (Clock::now() > deadline) throw std::runtime_error("raw libzmq: no round trip within 10 s");
  for (int i = 0; i < 50; ++i) (void)once(--n, milliseconds(1000));
  RoundTrips r;
  for (int i = 0; i < count; ++i) {
    if (auto ms = once(i, milliseconds(5000))) r.ms.push_back(*ms);
    else ++r.lost;
  }
  stop = true;
  responder.join();
  return r;
}

// ---- troupe -----------------------------------------------------------------------

// A publisher service "pub" and `subscribers` services reacting to its Ticks, each a
// Node on its own thread over tcp loopback, in one process and one zmq context.
class Mesh {
 public:
  // `durability`: memory, durable (each commit fsyncs, the default) or durable-pipelined
  // (commit = "pipelined": the fsync in a thread of its own beside the next batch).
  Mesh(std::string durability, int subscribers) {
    std::string commit = "inline";
    if (durability == "durable-pipelined") {
      durability = "durable";
      commit = "pipelined";
    }
    dir_ = std::filesystem::temp_directory_path() /
           ("troupe-bench-" + durability + "-" + std::to_string(::getpid()) + "-" + std::to_string(++runs_));
    std::filesystem::remove_all(dir_);
    std::string text = "[mesh]\nname = \"bench\"\nstate_dir = \"" + dir_.string() +
                       "\"\nheartbeat_ms = 200\nsynchronous = \"full\"\ncommit = \"" + commit +
                       "\"\ndurability = \"" + durability + "\"\n" +
                       (g_curve ? "security = \"curve\"\n" : "") + service("pub") +
                       "publishes = [\"Tick\", \"Pong\"]\naccepts = [\"Burst\", \"Ping\"]\nanswers = [\"Echo\"]\n";
    for (int i = 1; i <= subscribers; ++i)
      text += service("sub" + std::to_string(i)) + "reacts_to = { pub = [\"Tick\"] }\n";
    if (g_curve) text += "[clients.bench]\ncommands = [\"*\"]\nqueries = [\"*\"]\nevents = [\"*\"]\n";
    auto topo = troupe::toml::parse_topology(text, "bench.toml");
    if (!topo) throw std::runtime_error(topo.error().message());
    topo_ = *topo;
    if (g_curve)
      if (auto made = troupe::keys::make_missing(topo_); !made) throw std::runtime_error(made.error().message());
    troupe::NodeOptions o;
    o.context = &ctx_;
    nodes_.push_back(std::make_unique<troupe::Node>(topo_, "pub", o));
    for (int i = 1; i <= subscribers; ++i)
      nodes_.push_back(std::make_unique<troupe::Node>(topo_, "sub" + std::to_string(i), o));
  }
  ~Mesh() {
    for (auto& n : nodes_) n->stop();
    for (auto& t : threads_) t.join();
    nodes_.clear();
    std::filesystem::remove_all(dir_);
  }
  Mesh(const Mesh&) = delete;
  Mesh& operator=(const Mesh&) = delete;

  troupe::Node& pub() { return *nodes_[0]; }
  troupe::Node& sub(int i) { return *nodes_[static_cast<std::size_t>(i) + 1]; }

  void start() {
    for (auto& n : nodes_)
      for (auto& peer : nodes_) n->set_peer_endpoints(peer->name(), peer->bound());
    for (auto& n : nodes_) threads_.emplace_back([&n] { n->run(); });
  }

  std::unique_ptr<troupe::Client> client() {
    auto t = topo_;
    for (auto& n : nodes_) t.find(n->name())->endpoints = n->bound();
    auto c = std::make_unique<troupe::Client>(t, "bench", &ctx_);
    c->set_identity("bench");
    return c;
  }

 private:
  static std::string service(const std::string& name) {
    return "[services." + name +
           "]\nevents = \"tcp://127.0.0.1:*\"\ncommands = \"tcp://127.0.0.1:*\"\nqueries = \"tcp://127.0.0.1:*\"\n";
  }
  static inline int runs_ = 0;
  std::filesystem::path dir_;
  zmq::context_t ctx_;
  troupe::Topology topo_;
  std::vector<std::unique_ptr<troupe::Node>> nodes_;
  std::vector<std::thread> threads_;
};

Throughput troupe_events(int events, const std::string& durability, int payload_bytes, int fanout) {
  Mesh mesh(durability, fanout);
  std::vector<std::atomic<std::int64_t>> applied(static_cast<std::size_t>(fanout));
  std::vector<std::atomic<std::int64_t>> warm(static_cast<std::size_t>(fanout));
  mesh.pub().on_command<Burst>([](const Burst& b, troupe::Context& ctx) {
    std::string body(static_cast<std::size_t>(b.body_bytes), 'x');
    for (std::int64_t i = 0; i < b.count; ++i) ctx.emit(Tick{b.warmup ? -1 : i, body});
  });
  for (int s = 0; s < fanout; ++s)
    mesh.sub(s).on<Tick>([&, s](const Tick& t, troupe::Context&) {
      (t.n < 0 ? warm : applied)[static_cast<std::size_t>(s)].fetch_add(1, std::memory_order_relaxed);
    });
  mesh.start();
  auto client = mesh.client();
  auto body = static_cast<std::int64_t>(body_for(payload_bytes));
  // Warm up until every subscriber applied a tick: every subscription is live.
  auto deadline = Clock::now() + std::chrono::seconds(20);
  auto all_warm = [&] {
    return std::all_of(warm.begin(), warm.end(), [](const auto& w) { return w.load() > 0; });
  };
  while (!all_warm()) {
    if (Clock::now() > deadline) throw std::runtime_error("troupe " + durability + ": subscribers not live within 20 s");
    (void)client->send("pub", Burst{1, body, 1});
    auto wait = Clock::now() + milliseconds(50);
    while (!all_warm() && Clock::now() < wait) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }

  const int per_burst = 100;
  std::vector<troupe::Envelope> bursts;
  auto total = [&] {
    std::int64_t sum = 0;
    for (auto& a : applied) sum += a.load(std::memory_order_relaxed);
    return sum;
  };
  const std::int64_t want = static_cast<std::int64_t>(events) * fanout;
  auto batches = [&] {
    std::uint64_t sum = mesh.pub().counters().batches.load();
    for (int s = 0; s < fanout; ++s) sum += mesh.sub(s).counters().batches.load();
    return sum;
  };
  const std::uint64_t batches_before = batches();
  auto syncs = [&] {
    std::uint64_t n = mesh.pub().counters().store_syncs.load();
    for (int i = 0; i < fanout; ++i) n += mesh.sub(i).counters().store_syncs.load();
    return n;
  };
  const std::uint64_t syncs_before = syncs();
  // At most kWindow events of bursts not yet applied by every subscriber: the bursts
  // then stay within pub's commands socket's high-water mark (1,000 messages). Beyond
  // it libzmq stops reading the connection while pub is busy, its ZMTP heartbeat
  // (3 × heartbeat_ms) times out, and the connection is dropped with what was in flight
  // (libzmq#2709): the bursts had to be found missing and resent after a stall, which
  // was the "slow regime" of this run (about a third of the rate, by chance).
  constexpr std::int64_t kWindow = 50'000;
  auto slowest = [&] {
    std::int64_t least = INT64_MAX;
    for (auto& a : applied) least = std::min<std::int64_t>(least, a.load(std::memory_order_relaxed));
    return least;
  };
  auto t0 = Clock::now();
  for (int sent = 0; sent < events; sent += per_burst) {
    // Bounded: bursts lost anyway (memory mode) are for the stall check below to find.
    for (auto waited = Clock::now(); sent - slowest() >= kWindow && Clock::now() - waited < std::chrono::seconds(3);)
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    auto e = client->send("pub", Burst{std::min(per_burst, events - sent), body, 0});
    if (e) bursts.push_back(*e);
  }
  auto give_up = Clock::now() + std::chrono::seconds(120);
  auto last_progress = Clock::now();
  std::int64_t last_total = 0;
  while (total() < want && Clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    if (auto now_total = total(); now_total != last_total) {
      last_total = now_total;
      last_progress = Clock::now();
    } else if (Clock::now() - last_progress > std::chrono::seconds(3)) {
      // No progress: resend the bursts pub says it never handled (reported, not hidden).
      int resent = 0;
      for (const auto& b : bursts)
        if (auto s = client->seen("pub", {b.id}); s && !s->at(0)) {
          (void)client->resend("pub", b, troupe::codec::encode(Burst{per_burst, body, 0}));
          ++resent;
        }
      std::cerr << "events_bench: troupe " << durability << " stalled at " << last_total << " of " << want
                << "; resent " << resent << " lost command(s)\n";
      // Memory mode delivers at most once: what is gone stays gone, and is counted.
      if (resent == 0 && durability == "memory") break;
      last_progress = Clock::now();
    }
  }
  Throughput t;
  t.commits = batches() - batches_before;
  t.fsyncs = durability == "durable-pipelined" ? syncs() - syncs_before : t.commits;
  auto got = total();
  t.lost = static_cast<long>(want - got);
  t.rate = static_cast<double>(got) / fanout /
           std::max(1e-9, std::chrono::duration<double>(last_progress - t0).count());
  if (got == want)
    t.rate = static_cast<double>(events) / std::chrono::duration<double>(Clock::now() - t0).count();
  if (t.lost > 0)
    std::cerr << "events_bench: troupe " << durability << " lost " << t.lost << " event deliveries (pub published "
              << mesh.pub().counters().published << ", head " << mesh.pub().store().head() << ")\n";
  return t;
}

RoundTrips troupe_round_trips(const std::string& mode, int count, const std::string& durability, int payload_bytes) {
  Mesh mesh(durability, 0);
  mesh.pub().on_command<Ping>([](const Ping& p, troupe::Context& ctx) { ctx.emit(Pong{p.n, p.body}); });
  // A query reads the service's state, as a real one would (durable: one SQLite lookup).
  mesh.pub().on_query<Echo>([](const Echo& q, const troupe::QueryContext& ctx) -> troupe::Result<EchoReply> {
    if (auto cached = ctx.state().load<EchoReply>("echo", "last")) return *cached;
    return EchoReply{q.n, q.body};
  });
  mesh.start();
  auto client = mesh.client();
  std::string body(body_for(payload_bytes), 'x');
  bool command = mode == "command";
  if (command) {
    client->watch({"pub"}, /*heartbeats=*/true);
    // The first heartbeat proves the subscription is live: no caused event is missed.
    if (!client->next_event(milliseconds(10000)))
      throw std::runtime_error("troupe " + durability + ": no heartbeat within 10 s");
  }
  auto once = [&](std::int64_t n, milliseconds timeout) -> std::optional<double> {
    auto t0 = Clock::now();
    if (command) {
      auto sent = client->send("pub", Ping{n, body});
      if (!sent) return std::nullopt;
      auto deadline = t0 + timeout;
      while (Clock::now() < deadline) {
        auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()) + milliseconds(1);
        auto ev = client->next_event(left);
        if (ev && ev->envelope.type == "Pong" && ev->envelope.causationid == sent->id)
          return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      }
      return std::nullopt;
    }
    auto reply = client->query("pub", Echo{n, body}, timeout);
    if (!reply || reply->n != n) return std::nullopt;
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  };
  for (int i = 0; i < 50; ++i) (void)once(-1 - i, milliseconds(2000));
  RoundTrips r;
  for (int i = 0; i < count; ++i) {
    if (auto ms = once(i, milliseconds(5000))) r.ms.push_back(*ms);
    else ++r.lost;
  }
  return r;
}

// ---- main -------------------------------------------------------------------------

const char* system_name(const std::string& s) {
  return s == "raw" ? "raw-libzmq" : s == "memory" ? "troupe-memory" : s == "durable" ? "troupe-durable" : "troupe-durable-pipelined";
}

int parse(int argc, char** argv, Options& o) {
  auto need = [&](int& i) -> std::string {
    if (i + 1 >= argc) throw std::invalid_argument(std::string(argv[i]) + " needs a value");
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      return 0;
    } else if (a == "--mode") o.mode = need(i);
    else if (a == "--system") {
      auto s = need(i);
      if (s == "all") o.systems = {"raw", "memory", "durable"};
      else o.systems.push_back(s);
    } else if (a == "--count") o.count = std::stoi(need(i));
    else if (a == "--payload") o.payload = std::stoi(need(i));
    else if (a == "--fanout") o.fanout = std::stoi(need(i));
    else if (a == "--samples") o.samples = need(i);
    else if (a == "--json") o.json = need(i);
    else if (a == "--scenario") o.scenario = need(i);
    else if (a == "--curve") o.curve = true;
    else if (!a.empty() && a[0] != '-') o.count = std::stoi(a);
    else throw std::invalid_argument("unknown option " + a);
  }
  if (o.mode != "events" && o.mode != "command" && o.mode != "query")
    throw std::invalid_argument("--mode must be events, command or query");
  for (const auto& s : o.systems)
    if (s != "raw" && s != "memory" && s != "durable" && s != "durable-pipelined")
      throw std::invalid_argument("--system must be all, raw, memory, durable or durable-pipelined, got " + s);
  if (o.systems.empty()) o.systems = {"raw", "memory", "durable"};
  if (o.count <= 0) o.count = o.mode == "events" ? 200000 : 5000;
  if (o.payload < 16 || o.payload > 1000000) throw std::invalid_argument("--payload must be 16 .. 1000000");
  if (o.fanout < 1 || o.fanout > 16) throw std::invalid_argument("--fanout must be 1 .. 16");
  if (o.curve && std::find(o.systems.begin(), o.systems.end(), "raw") != o.systems.end())
    throw std::invalid_argument("--curve applies to the troupe systems: give --system memory and/or durable");
  if (o.scenario.empty()) o.scenario = bench::scenario_name(o.mode, o.payload, o.fanout) + (o.curve ? "-curve" : "");
  g_curve = o.curve;
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    if (int rc = parse(argc, argv, o); rc >= 0) return rc;
  } catch (const std::exception& e) {
    std::cerr << "events_bench: " << e.what() << "\n" << kUsage;
    return 2;
  }
  spdlog::set_level(spdlog::level::err);  // not the "security is none" warnings of each node
  bench::Report report;
  bool broken_promise = false;
  try {
    if (o.mode == "events") {
      std::cerr << "events_bench: " << o.count << " events of " << o.payload << " B, 1 publisher -> " << o.fanout
                << " subscriber(s), tcp loopback\n";
      std::printf("%-44s %14s %10s %8s\n", ("scenario: " + o.scenario).c_str(), "events/s", "vs raw", "lost");
      double raw = 0;
      for (const auto& s : o.systems) {
        std::cerr << "  " << system_name(s) << " ..." << std::flush;
        auto t = s == "raw" ? raw_events(o.count, o.payload, o.fanout)
                            : troupe_events(o.count, s, o.payload, o.fanout);
        std::cerr << " done\n";
        if (s == "raw") raw = t.rate;
        char ratio[16] = "-";
        if (raw > 0) std::snprintf(ratio, sizeof ratio, "%.2f", t.rate / raw);
        std::printf("%-44s %14.0f %10s %8ld\n", system_name(s), t.rate, ratio, t.lost);
        report.add(o.scenario, system_name(s), "throughput", t.rate, "events/s");
        report.add(o.scenario, system_name(s), "lost", static_cast<double>(t.lost), "events");
        if (s != "raw" && s != "memory" && t.commits > 0 && t.fsyncs > 0) {
          // What the disk allows is this many events per fsync paid, over its latency.
          report.add(o.scenario, system_name(s), "commits", static_cast<double>(t.commits), "commits");
          report.add(o.scenario, system_name(s), "events-per-commit",
                     static_cast<double>(o.count) / static_cast<double>(t.commits), "events");
          report.add(o.scenario, system_name(s), "fsyncs", static_cast<double>(t.fsyncs), "fsyncs");
          report.add(o.scenario, system_name(s), "events-per-fsync",
                     static_cast<double>(o.count) / static_cast<double>(t.fsyncs), "events");
          std::cerr << "  " << system_name(s) << ": " << t.commits << " commits and " << t.fsyncs
                    << " fsyncs over every node, " << static_cast<double>(o.count) / static_cast<double>(t.fsyncs)
                    << " events per fsync\n";
        }
        if (t.lost > 0 && s != "raw" && s != "memory") broken_promise = true;
      }
    } else {
      std::cerr << "events_bench: " << o.count << " " << o.mode << " round trips, " << o.payload
                << " B payloads, tcp loopback\n";
      std::printf("%-44s %10s %10s %10s %8s\n", ("scenario: " + o.scenario).c_str(), "p50 ms", "p99 ms", "max ms",
                  "lost");
      for (const auto& s : o.systems) {
        std::cerr << "  " << system_name(s) << " ..." << std::flush;
        auto r = s == "raw" ? raw_round_trips(o.mode, o.count, o.payload)
                            : troupe_round_trips(o.mode, o.count, s, o.payload);
        std::cerr << " done\n";
        std::printf("%-44s %10.3f %10.3f %10.3f %8ld\n", system_name(s), bench::percentile(r.ms, 0.5),
                    bench::percentile(r.ms, 0.99), bench::percentile(r.ms, 1.0), r.lost);
        report.add_latency(o.scenario, system_name(s), r.ms, r.lost);
        if (!o.samples.empty())
          bench::write_samples(o.systems.size() == 1 ? o.samples : o.samples + "." + system_name(s), r.ms);
        if (r.lost > 0 && s != "raw" && s != "memory") broken_promise = true;
      }
    }
    if (!o.json.empty()) report.write_json(o.json);
  } catch (const std::exception& e) {
    std::cerr << "\nevents_bench: " << e.what() << '\n';
    return 1;
  }
  return broken_promise ? 1 : 0;
}
