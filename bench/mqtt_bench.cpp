// mqtt_bench: events_bench's scenarios over Mosquitto, the broker most brokerless
// systems are compared with: MQTT 3.1.1 through a broker on loopback (scripts/bench
// starts one), libmosquitto clients with their threaded network loop, Nagle off, at
// most 100 QoS 1 messages in flight per client (the broker is configured alike).
//   --mode events   1 publisher -> N subscribers, messages/s each subscriber received
//   --mode command  a command published -> a responder publishes the caused event back
//   --mode query    a request topic -> a reply topic (MQTT 3.1.1 has no other way)
// Every message is counted: what QoS 1 fails to deliver is reported, never hidden.
#include "bench_report.hpp"

#include <mosquitto.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* kUsage = R"(usage: mqtt_bench --port PORT --qos 0|1 [options]
  --host HOST      the broker's address (default 127.0.0.1)
  --mode events|command|query  what to measure (default events)
  --count N        messages to publish, or round trips to time (default 200000 / 5000)
  --payload BYTES  payload size (default 100)
  --fanout N       subscribers, events mode (default 1)
  --samples FILE   round-trip latencies, one per line in ms
  --json FILE      records {scenario, system, metric, value, unit} as a JSON array
  --scenario NAME  scenario name in the records (default from mode, payload, fanout)
exit status: 0 done, 1 the broker is unreachable or QoS 1 lost messages, 2 usage
)";

constexpr int kInflight = 100;     // MQTT in-flight window of QoS 1 publishes per client
constexpr long kLocalQueue = 10000;  // publishes queued in the client before it waits

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  int qos = -1;
  std::string mode = "events";
  int count = 0;
  int payload = 100;
  int fanout = 1;
  std::string samples, json, scenario;
};

std::string error_text(int rc) { return mosquitto_strerror(rc); }

// One connected MQTT client with libmosquitto's network thread. Callbacks run on that
// thread. Throws std::runtime_error when it cannot connect or subscribe.
class MqttClient {
 public:
  std::function<void(const mosquitto_message&)> on_message;

  MqttClient(const std::string& name, const Options& o) {
    std::string id = "troupe-bench-" + std::to_string(::getpid()) + "-" + name;
    m_ = mosquitto_new(id.c_str(), /*clean_session=*/true, this);
    if (!m_) throw std::runtime_error("mosquitto_new failed");
    mosquitto_int_option(m_, MOSQ_OPT_TCP_NODELAY, 1);
    // For MQTT 3.1.1 this is the client's own in-flight limit (what the deprecated
    // mosquitto_max_inflight_messages_set sets).
    mosquitto_int_option(m_, MOSQ_OPT_SEND_MAXIMUM, kInflight);
    mosquitto_connect_callback_set(m_, [](mosquitto*, void* self, int rc) {
      static_cast<MqttClient*>(self)->signal([&](MqttClient& c) { c.connack_ = rc; });
    });
    mosquitto_subscribe_callback_set(m_, [](mosquitto*, void* self, int mid, int, const int*) {
      static_cast<MqttClient*>(self)->signal([&](MqttClient& c) { c.subacks_.push_back(mid); });
    });
    mosquitto_publish_callback_set(m_, [](mosquitto*, void* self, int) {
      auto* c = static_cast<MqttClient*>(self);
      c->completed_.fetch_add(1, std::memory_order_relaxed);
      if (c->waiting_.load(std::memory_order_relaxed)) c->signal([](MqttClient&) {});
    });
    mosquitto_message_callback_set(m_, [](mosquitto*, void* self, const mosquitto_message* msg) {
      auto* c = static_cast<MqttClient*>(self);
      if (c->on_message) c->on_message(*msg);
    });
    if (int rc = mosquitto_connect(m_, o.host.c_str(), o.port, 60); rc != MOSQ_ERR_SUCCESS)
      throw std::runtime_error("cannot connect to " + o.host + ":" + std::to_string(o.port) + ": " + error_text(rc));
    if (int rc = mosquitto_loop_start(m_); rc != MOSQ_ERR_SUCCESS)
      throw std::runtime_error("mosquitto_loop_start: " + error_text(rc));
    std::unique_lock lock(mutex_);
    if (!cv_.wait_for(lock, std::chrono::seconds(10), [&] { return connack_ >= 0; }))
      throw std::runtime_error("no CONNACK from " + o.host + ":" + std::to_string(o.port) + " within 10 s");
    if (connack_ != 0) throw std::runtime_error("connection refused: " + std::string(mosquitto_connack_string(connack_)));
  }
  ~MqttClient() {
    mosquitto_disconnect(m_);
    mosquitto_loop_stop(m_, false);
    mosquitto_destroy(m_);
  }
  MqttClient(const MqttClient&) = delete;
  MqttClient& operator=(const MqttClient&) = delete;

  // Returns once the broker acknowledged the subscription (SUBACK): from then on it
  // routes every matching publish here.
  void subscribe(const std::string& topic, int qos) {
    int mid = 0;
    if (int rc = mosquitto_subscribe(m_, &mid, topic.c_str(), qos); rc != MOSQ_ERR_SUCCESS)
      throw std::runtime_error("subscribe " + topic + ": " + error_text(rc));
    std::unique_lock lock(mutex_);
    if (!cv_.wait_for(lock, std::chrono::seconds(10),
                      [&] { return std::find(subacks_.begin(), subacks_.end(), mid) != subacks_.end(); }))
      throw std::runtime_error("no SUBACK for " + topic + " within 10 s");
  }

  // Queues one publish; false if the library refused it (counted as lost by callers).
  // Waits while more than kLocalQueue publishes are written-but-unconfirmed, so a fast
  // publisher does not queue the whole run in memory.
  bool publish(const std::string& topic, const void* data, int size, int qos) {
    if (issued_ - completed_.load(std::memory_order_relaxed) >= kLocalQueue) {
      waiting_ = true;
      std::unique_lock lock(mutex_);
      cv_.wait_for(lock, std::chrono::seconds(10),
                   [&] { return issued_ - completed_.load(std::memory_order_relaxed) < kLocalQueue / 2; });
      waiting_ = false;
    }
    int rc = mosquitto_publish(m_, nullptr, topic.c_str(), size, data, qos, false);
    if (rc != MOSQ_ERR_SUCCESS) return false;
    ++issued_;
    return true;
  }

 private:
  template <class F>
  void signal(F&& f) {
    {
      std::lock_guard lock(mutex_);
      f(*this);
    }
    cv_.notify_all();
  }

  mosquitto* m_ = nullptr;
  std::mutex mutex_;
  std::condition_variable cv_;
  int connack_ = -1;
  std::vector<int> subacks_;
  long issued_ = 0;  // publisher thread only
  std::atomic<long> completed_{0};  // QoS 0: written to the socket; QoS 1: PUBACK received
  std::atomic<bool> waiting_{false};
};

struct Throughput {
  double rate = 0;
  long lost = 0;
};

Throughput events(const Options& o) {
  const std::string topic = "bench/events";
  struct Counter {
    std::atomic<long> got{0};
  };
  std::vector<Counter> counts(static_cast<std::size_t>(o.fanout));  // outlives the clients
  std::vector<std::unique_ptr<MqttClient>> subs;
  for (int i = 0; i < o.fanout; ++i) {
    subs.push_back(std::make_unique<MqttClient>("sub" + std::to_string(i), o));
    subs.back()->on_message = [&c = counts[static_cast<std::size_t>(i)]](const mosquitto_message&) {
      c.got.fetch_add(1, std::memory_order_relaxed);
    };
    subs.back()->subscribe(topic, o.qos);
  }
  MqttClient pub("pub", o);
  std::string payload(static_cast<std::size_t>(o.payload), 'p');
  long refused = 0;
  auto total = [&] {
    long sum = 0;
    for (auto& c : counts) sum += c.got.load(std::memory_order_relaxed);
    return sum;
  };
  auto t0 = Clock::now();
  for (int i = 0; i < o.count; ++i)
    if (!pub.publish(topic, payload.data(), o.payload, o.qos)) ++refused;
  const long want = static_cast<long>(o.count) * o.fanout;
  auto [got, end] = bench::wait_counted(total, want);
  Throughput t;
  t.lost = want - got;
  t.rate = static_cast<double>(got) / o.fanout / std::max(1e-9, std::chrono::duration<double>(end - t0).count());
  if (t.lost > 0)
    std::cerr << "mqtt_bench: QoS " << o.qos << " lost " << t.lost << " of " << want << " deliveries ("
              << refused << " publishes refused by the client library)\n";
  return t;
}

struct RoundTrips {
  std::vector<double> ms;
  long lost = 0;
};

RoundTrips round_trips(const Options& o) {
  const std::string in = "bench/" + o.mode + "/in", out = "bench/" + o.mode + "/out";
  MqttClient responder("responder", o);
  responder.on_message = [&](const mosquitto_message& m) {
    // The caused event (or the reply) carries the request's payload back, numbered.
    (void)responder.publish(out, m.payload, m.payloadlen, o.qos);
  };
  responder.subscribe(in, o.qos);
  MqttClient asker("asker", o);
  std::mutex mutex;
  std::condition_variable cv;
  std::int64_t seen = 0;
  bool any = false;
  asker.on_message = [&](const mosquitto_message& m) {
    std::int64_t n = 0;
    if (m.payloadlen < static_cast<int>(sizeof n)) return;
    std::memcpy(&n, m.payload, sizeof n);
    {
      std::lock_guard lock(mutex);
      seen = n;
      any = true;
    }
    cv.notify_all();
  };
  asker.subscribe(out, o.qos);
  std::string payload(static_cast<std::size_t>(std::max(o.payload, 8)), 'p');
  auto once = [&](std::int64_t n, milliseconds timeout) -> std::optional<double> {
    std::memcpy(payload.data(), &n, sizeof n);
    auto t0 = Clock::now();
    if (!asker.publish(in, payload.data(), static_cast<int>(payload.size()), o.qos)) return std::nullopt;
    std::unique_lock lock(mutex);
    if (!cv.wait_until(lock, t0 + timeout, [&] { return any && seen == n; })) return std::nullopt;
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  };
  // Warm up: the first round trip proves both subscriptions and connections work.
  auto deadline = Clock::now() + std::chrono::seconds(10);
  std::int64_t n = 0;
  while (!once(--n, milliseconds(200)))
    if (Clock::now() > deadline) throw std::runtime_error("no round trip through the broker within 10 s");
  for (int i = 0; i < 50; ++i) (void)once(--n, milliseconds(1000));
  RoundTrips r;
  for (int i = 0; i < o.count; ++i) {
    if (auto ms = once(i, milliseconds(5000))) r.ms.push_back(*ms);
    else ++r.lost;
  }
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
    else if (a == "--qos") o.qos = std::stoi(need(i));
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
  if (o.qos != 0 && o.qos != 1) throw std::invalid_argument("--qos must be 0 or 1");
  if (o.mode != "events" && o.mode != "command" && o.mode != "query")
    throw std::invalid_argument("--mode must be events, command or query");
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
    std::cerr << "mqtt_bench: " << e.what() << "\n" << kUsage;
    return 2;
  }
  mosquitto_lib_init();
  const std::string system = "mosquitto-qos" + std::to_string(o.qos);
  bench::Report report;
  long lost = 0;
  try {
    if (o.mode == "events") {
      std::cerr << "mqtt_bench: " << o.count << " messages of " << o.payload << " B at QoS " << o.qos
                << ", 1 publisher -> " << o.fanout << " subscriber(s)\n";
      auto t = events(o);
      lost = t.lost;
      std::printf("%-44s %14s %8s\n", ("scenario: " + o.scenario).c_str(), "messages/s", "lost");
      std::printf("%-44s %14.0f %8ld\n", system.c_str(), t.rate, t.lost);
      report.add(o.scenario, system, "throughput", t.rate, "events/s");
      report.add(o.scenario, system, "lost", static_cast<double>(t.lost), "events");
    } else {
      std::cerr << "mqtt_bench: " << o.count << " " << o.mode << " round trips at QoS " << o.qos << ", "
                << o.payload << " B payloads\n";
      auto r = round_trips(o);
      lost = r.lost;
      std::printf("%-44s %10s %10s %10s %8s\n", ("scenario: " + o.scenario).c_str(), "p50 ms", "p99 ms", "max ms",
                  "lost");
      std::printf("%-44s %10.3f %10.3f %10.3f %8ld\n", system.c_str(), bench::percentile(r.ms, 0.5),
                  bench::percentile(r.ms, 0.99), bench::percentile(r.ms, 1.0), r.lost);
      report.add_latency(o.scenario, system, r.ms, r.lost);
      if (!o.samples.empty()) bench::write_samples(o.samples, r.ms);
    }
    if (!o.json.empty()) report.write_json(o.json);
  } catch (const std::exception& e) {
    std::cerr << "mqtt_bench: " << e.what() << '\n';
    mosquitto_lib_cleanup();
    return 1;
  }
  mosquitto_lib_cleanup();
  return lost > 0 && o.qos == 1 ? 1 : 0;
}
