// redis_bench: events_bench's scenarios over Redis Streams, the durable anchor: a
// Redis server on loopback (scripts/bench starts one with appendonly yes and
// appendfsync always, so every write is in the append-only file and fsynced before
// Redis answers it), hiredis clients, one connection per thread.
//   --mode events   1 producer -> N consumer groups (one consumer each): XADD pipelined
//                   in windows of 100 with at most 1,000 unanswered; each consumer reads
//                   with XREADGROUP (COUNT 1000, BLOCK) and acknowledges every batch it
//                   read with one XACK; events/s each consumer received
//   --mode command  one at a time: the sender XADDs a command; a responder reads it
//                   through its group, XADDs the caused event and XACKs the command in
//                   one pipeline; the sender sees the event with XREAD BLOCK
// Every entry is numbered and counted: what is not delivered is reported as lost, an
// entry delivered twice as duplicated; both fail the run (exit 1).
#include "bench_report.hpp"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kUsage = R"(usage: redis_bench --port PORT [options]
  --host HOST      the server's address (default 127.0.0.1)
  --mode events|command  what to measure (default events)
  --count N        entries to produce, or round trips to time (default 200000 / 5000)
  --payload BYTES  payload size (default 100)
  --fanout N       consumer groups, events mode (default 1)
  --samples FILE   round-trip latencies, one per line in ms
  --json FILE      records {scenario, system, metric, value, unit} as a JSON array
  --scenario NAME  scenario name in the records (default from mode, payload, fanout)
exit status: 0 done, 1 the server is unreachable, refused a command, or an entry was
lost or delivered twice, 2 usage
)";

constexpr int kWindow = 100;      // XADDs pipelined together (troupe's bench emits 100 per commit)
constexpr int kInFlight = 1000;   // XADDs sent but not yet answered, at most
constexpr int kReadCount = 1000;  // entries one XREADGROUP may return

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  std::string mode = "events";
  int count = 0;
  int payload = 100;
  int fanout = 1;
  std::string samples, json, scenario;
};

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

// One connection. Throws std::runtime_error on a connection error or an error reply.
class Redis {
 public:
  explicit Redis(const Options& o) {
    timeval tv{10, 0};
    c_ = redisConnectWithTimeout(o.host.c_str(), o.port, tv);
    if (!c_ || c_->err) {
      std::string why = c_ ? c_->errstr : "out of memory";
      redisFree(c_);
      throw std::runtime_error("cannot connect to " + o.host + ":" + std::to_string(o.port) + ": " + why);
    }
    // No command waits longer than the blocking reads ask for plus this: a stalled server
    // is an error, not a bench that never ends.
    timeval command{10, 0};
    redisSetTimeout(c_, command);
  }
  ~Redis() { redisFree(c_); }
  Redis(const Redis&) = delete;
  Redis& operator=(const Redis&) = delete;

  Reply run(const std::vector<std::string>& argv) {
    append(argv);
    return reply();
  }
  void append(const std::vector<std::string>& argv) {
    std::vector<const char*> a;
    std::vector<std::size_t> len;
    for (const auto& s : argv) {
      a.push_back(s.data());
      len.push_back(s.size());
    }
    if (redisAppendCommandArgv(c_, static_cast<int>(a.size()), a.data(), len.data()) != REDIS_OK)
      throw std::runtime_error(std::string("redis: ") + c_->errstr);
  }
  // The next reply of what was appended (sending what is still buffered first).
  Reply reply() {
    void* r = nullptr;
    if (redisGetReply(c_, &r) != REDIS_OK || !r) throw std::runtime_error(std::string("redis: ") + c_->errstr);
    Reply out(static_cast<redisReply*>(r));
    if (out->type == REDIS_REPLY_ERROR) throw std::runtime_error("redis: " + std::string(out->str, out->len));
    return out;
  }

 private:
  redisContext* c_ = nullptr;
};

// The entries of an XREAD/XREADGROUP reply of one stream: (id, the value of field "n").
std::vector<std::pair<std::string, long>> entries(const redisReply& r) {
  std::vector<std::pair<std::string, long>> out;
  if (r.type != REDIS_REPLY_ARRAY || r.elements == 0) return out;  // nil: BLOCK timed out
  const redisReply* stream = r.element[0];
  if (stream->type != REDIS_REPLY_ARRAY || stream->elements < 2) return out;
  const redisReply* list = stream->element[1];
  for (std::size_t i = 0; i < list->elements; ++i) {
    const redisReply* e = list->element[i];
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2) continue;
    const redisReply* fields = e->element[1];
    long n = -1;
    for (std::size_t f = 0; f + 1 < fields->elements; f += 2)
      if (std::string(fields->element[f]->str, fields->element[f]->len) == "n")
        n = std::stol(std::string(fields->element[f + 1]->str, fields->element[f + 1]->len));
    out.emplace_back(std::string(e->element[0]->str, e->element[0]->len), n);
  }
  return out;
}

std::string key(const std::string& what) { return "troupe-bench:" + std::to_string(::getpid()) + ":" + what; }

struct Throughput {
  double rate = 0;
  long lost = 0, duplicated = 0;
};

Throughput events(const Options& o) {
  const std::string stream = key("events");
  Redis admin(o);
  for (int g = 0; g < o.fanout; ++g)
    admin.run({"XGROUP", "CREATE", stream, "g" + std::to_string(g), "0", "MKSTREAM"});
  struct Consumer {
    std::atomic<long> got{0}, duplicated{0};
    std::atomic<bool> failed{false};
  };
  std::vector<Consumer> consumers(static_cast<std::size_t>(o.fanout));
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  struct JoinAll {  // however this function is left, no thread is left running
    std::vector<std::thread>& t;
    std::atomic<bool>& stop;
    ~JoinAll() {
      stop = true;
      for (auto& x : t)
        if (x.joinable()) x.join();
    }
  } join_all{threads, stop};
  for (int g = 0; g < o.fanout; ++g)
    threads.emplace_back([&, g] {
      auto& me = consumers[static_cast<std::size_t>(g)];
      try {
        Redis r(o);
        std::vector<bool> seen(static_cast<std::size_t>(o.count), false);
        const std::string group = "g" + std::to_string(g);
        while (!stop.load() && me.got.load() < o.count) {
          auto reply = r.run({"XREADGROUP", "GROUP", group, "c", "COUNT", std::to_string(kReadCount), "BLOCK",
                              "200", "STREAMS", stream, ">"});
          auto got = entries(*reply);
          if (got.empty()) continue;
          std::vector<std::string> ack{"XACK", stream, group};
          for (const auto& [id, n] : got) {
            ack.push_back(id);
            if (n < 0 || n >= o.count) continue;
            if (seen[static_cast<std::size_t>(n)]) ++me.duplicated;
            else {
              seen[static_cast<std::size_t>(n)] = true;
              ++me.got;
            }
          }
          r.run(ack);
        }
      } catch (const std::exception& e) {
        std::cerr << "redis_bench: consumer " << g << ": " << e.what() << '\n';
        me.failed = true;
      }
    });
  auto total = [&] {
    long sum = 0;
    for (auto& c : consumers) sum += c.got.load(std::memory_order_relaxed);
    return sum;
  };
  std::string payload(static_cast<std::size_t>(o.payload), 'p');
  auto t0 = Clock::now();
  {  // should it throw, join_all stops and joins the consumers
    Redis producer(o);
    int unanswered = 0;
    for (int sent = 0; sent < o.count;) {
      for (int i = 0; i < kWindow && sent < o.count; ++i, ++sent, ++unanswered)
        producer.append({"XADD", stream, "*", "n", std::to_string(sent), "p", payload});
      while (unanswered > kInFlight - kWindow) {
        producer.reply();
        --unanswered;
      }
    }
    for (; unanswered > 0; --unanswered) producer.reply();
  }
  const long want = static_cast<long>(o.count) * o.fanout;
  auto [got, end] = bench::wait_counted(total, want);
  stop = true;
  for (auto& t : threads) t.join();
  threads.clear();
  Throughput t;
  t.lost = want - got;
  for (auto& c : consumers) {
    t.duplicated += c.duplicated.load();
    if (c.failed.load()) throw std::runtime_error("a consumer failed");
  }
  t.rate = static_cast<double>(got) / o.fanout / std::max(1e-9, std::chrono::duration<double>(end - t0).count());
  admin.run({"DEL", stream});
  return t;
}

struct RoundTrips {
  std::vector<double> ms;
  long lost = 0;
};

RoundTrips round_trips(const Options& o) {
  const std::string commands = key("commands"), caused = key("caused");
  Redis admin(o);
  admin.run({"XGROUP", "CREATE", commands, "responder", "0", "MKSTREAM"});
  std::atomic<bool> stop{false}, failed{false};
  Redis sender(o);  // before the responder starts: a failed connect leaves no thread behind
  std::thread responder([&] {
    try {
      Redis r(o);
      while (!stop.load()) {
        auto reply = r.run({"XREADGROUP", "GROUP", "responder", "r", "COUNT", "100", "BLOCK", "200", "STREAMS",
                            commands, ">"});
        for (const auto& [id, n] : entries(*reply)) {
          // The caused event and the command's acknowledgement, in one pipeline.
          r.append({"XADD", caused, "*", "n", std::to_string(n)});
          r.append({"XACK", commands, "responder", id});
          r.reply();
          r.reply();
        }
      }
    } catch (const std::exception& e) {
      std::cerr << "redis_bench: responder: " << e.what() << '\n';
      failed = true;
    }
  });
  std::string payload(static_cast<std::size_t>(o.payload), 'p');
  std::string last = "0";  // the caused stream is read from its start
  auto once = [&](long n, int timeout_ms) -> std::optional<double> {
    auto t0 = Clock::now();
    sender.run({"XADD", commands, "*", "n", std::to_string(n), "p", payload});
    auto deadline = t0 + std::chrono::milliseconds(timeout_ms);
    while (Clock::now() < deadline) {
      auto reply = sender.run({"XREAD", "COUNT", "100", "BLOCK", std::to_string(timeout_ms), "STREAMS", caused, last});
      bool found = false;
      for (const auto& [id, m] : entries(*reply)) {
        last = id;
        found = found || m == n;
      }
      if (found) return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    }
    return std::nullopt;
  };
  RoundTrips r;
  try {
    // Warm up: the first round trip proves both connections work.
    auto deadline = Clock::now() + std::chrono::seconds(10);
    long n = 0;
    while (!once(--n, 200))
      if (Clock::now() > deadline || failed.load()) throw std::runtime_error("no round trip within 10 s");
    for (int i = 0; i < 50; ++i) (void)once(--n, 1000);
    for (int i = 0; i < o.count && !failed.load(); ++i) {
      if (auto ms = once(i, 5000)) r.ms.push_back(*ms);
      else ++r.lost;
    }
  } catch (...) {
    stop = true;
    responder.join();
    throw;
  }
  stop = true;
  responder.join();
  if (failed.load()) throw std::runtime_error("the responder failed");
  admin.run({"DEL", commands, caused});
  return r;
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
    } else if (a == "--host") o.host = need(i);
    else if (a == "--port") o.port = std::stoi(need(i));
    else if (a == "--mode") o.mode = need(i);
    else if (a == "--count") o.count = std::stoi(need(i));
    else if (a == "--payload") o.payload = std::stoi(need(i));
    else if (a == "--fanout") o.fanout = std::stoi(need(i));
    else if (a == "--samples") o.samples = need(i);
    else if (a == "--json") o.json = need(i);
    else if (a == "--scenario") o.scenario = need(i);
    else throw std::invalid_argument("unknown option " + a);
  }
  if (o.port <= 0 || o.port > 65535) throw std::invalid_argument("--port is required (1 .. 65535)");
  if (o.mode != "events" && o.mode != "command") throw std::invalid_argument("--mode must be events or command");
  if (o.count <= 0) o.count = o.mode == "events" ? 200000 : 5000;
  if (o.payload < 8 || o.payload > 1000000) throw std::invalid_argument("--payload must be 8 .. 1000000");
  if (o.fanout < 1 || o.fanout > 16) throw std::invalid_argument("--fanout must be 1 .. 16");
  if (o.scenario.empty()) o.scenario = bench::scenario_name(o.mode, o.payload, o.fanout);
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    if (int rc = parse(argc, argv, o); rc >= 0) return rc;
  } catch (const std::exception& e) {
    std::cerr << "redis_bench: " << e.what() << "\n" << kUsage;
    return 2;
  }
  const std::string system = "redis-streams";
  bench::Report report;
  bool failed = false;
  try {
    if (o.mode == "events") {
      std::cerr << "redis_bench: " << o.count << " entries of " << o.payload << " B, 1 producer -> " << o.fanout
                << " consumer group(s)\n";
      auto t = events(o);
      failed = t.lost > 0 || t.duplicated > 0;
      std::printf("%-44s %14s %8s %10s\n", ("scenario: " + o.scenario).c_str(), "entries/s", "lost", "duplicated");
      std::printf("%-44s %14.0f %8ld %10ld\n", system.c_str(), t.rate, t.lost, t.duplicated);
      report.add(o.scenario, system, "throughput", t.rate, "events/s");
      report.add(o.scenario, system, "lost", static_cast<double>(t.lost), "events");
      report.add(o.scenario, system, "duplicated", static_cast<double>(t.duplicated), "events");
      if (failed)
        std::cerr << "redis_bench: " << t.lost << " deliveries lost, " << t.duplicated << " duplicated\n";
    } else {
      std::cerr << "redis_bench: " << o.count << " command round trips, " << o.payload << " B payloads\n";
      auto r = round_trips(o);
      failed = r.lost > 0;
      std::printf("%-44s %10s %10s %10s %8s\n", ("scenario: " + o.scenario).c_str(), "p50 ms", "p99 ms", "max ms",
                  "lost");
      std::printf("%-44s %10.3f %10.3f %10.3f %8ld\n", system.c_str(), bench::percentile(r.ms, 0.5),
                  bench::percentile(r.ms, 0.99), bench::percentile(r.ms, 1.0), r.lost);
      report.add_latency(o.scenario, system, r.ms, r.lost);
      if (!o.samples.empty()) bench::write_samples(o.samples, r.ms);
    }
    if (!o.json.empty()) report.write_json(o.json);
  } catch (const std::exception& e) {
    std::cerr << "redis_bench: " << e.what() << '\n';
    return 1;
  }
  return failed ? 1 : 0;
}
