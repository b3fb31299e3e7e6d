// What the gateway watches of the mesh, beside the requests it forwards:
// - the Hub holds one tap subscription on every service (events, and the mirrors of
//   the commands and dead letters they handle) and fans it out to the SSE clients,
//   each through a bounded queue; it also counts messages per edge of the choreography
//   and keeps the recent sagas' events;
// - the View asks every service's $health once a second and makes the mesh's picture:
//   states, lag, dead letters, rates per edge, and the sagas stuck on a service.
#pragma once

#include <troupe/domain/topology.hpp>
#include <troupe/tools/saga.hpp>
#include <troupe/tools/tap.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace zmq {
class context_t;
}

namespace troupe {
class Client;
}

namespace troupe::gateway {

// One thing the tap saw (tools/lib's reading of it).
using Record = tools::TapRecord;

// A record as the hub hands it to every stream: its JSON text written once.
struct Delivered {
  Record record;
  std::string text;
};

// The tap's filters (`troupe tap`): every one given must match.
struct Filter {
  std::vector<std::string> services;  // from or to any of these
  std::string type = "*";             // glob
  std::string kind, correlation;
  bool matches(const Record& r) const;
};

// One SSE client's queue. The hub never waits for a client: past `capacity` records
// or `max_bytes` of their text it drops what comes and counts it, and the client is
// told how many it missed. `dropped_total` (the gateway's metric, if given) counts each
// drop as it happens: a stream whose writer is blocked on a client that does not read
// tells the client only once the writer moves again, and the metric must not wait.
class Subscriber {
 public:
  Subscriber(Filter filter, std::size_t capacity, std::size_t max_bytes,
             std::atomic<std::uint64_t>* dropped_total = nullptr)
      : filter_(std::move(filter)), capacity_(capacity), max_bytes_(max_bytes), dropped_total_(dropped_total) {}
  const Filter& filter() const { return filter_; }
  void push(std::shared_ptr<const Delivered> r);
  // Waits up to `timeout` for records; returns them and how many were dropped since
  // the last call.
  std::vector<std::shared_ptr<const Delivered>> take(std::chrono::milliseconds timeout, std::uint64_t& dropped);
  void wake();

 private:
  Filter filter_;
  std::size_t capacity_, max_bytes_, bytes_ = 0;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<const Delivered>> queue_;
  std::uint64_t dropped_ = 0;
  bool woken_ = false;
  std::atomic<std::uint64_t>* dropped_total_;
};

struct HubStats {
  std::uint64_t received = 0, dropped = 0, sagas_forgotten = 0, tap_missed = 0;
  std::size_t subscribers = 0, sagas = 0;
  std::string error;  // why the tap cannot watch the mesh (a key file missing, say); "" while it watches
};

class Hub {
 public:
  struct Options {
    std::string identity = "tap";  // a [taps.*] identity under CURVE
    std::size_t max_sagas = 4000;         // the oldest are forgotten first
    std::size_t max_saga_events = 32;     // per saga: enough to say where it waits
    std::size_t max_correlation = 128;    // longer correlation ids are not followed
  };
  Hub(const Topology& topology, Options options, zmq::context_t& context);
  ~Hub();
  void start();
  void stop();

  std::shared_ptr<Subscriber> subscribe(Filter filter, std::size_t capacity, std::size_t max_bytes,
                                        std::atomic<std::uint64_t>* dropped_total = nullptr);
  void unsubscribe(const std::shared_ptr<Subscriber>& s);

  // Messages seen per edge (from, to) since start: events from a publisher to each
  // service that reacts to their type, commands from their sender ("outside" for a
  // client) to their receiver.
  std::map<std::pair<std::string, std::string>, std::uint64_t> edge_counts() const;
  // The events of the sagas seen since start, by correlation id; `keep(id, events)`
  // says which to keep tracking (a finished saga is forgotten).
  void for_each_saga(const std::function<bool(const std::string&, const std::vector<tools::SagaEvent>&)>& keep);
  HubStats stats() const;

 private:
  void run();
  void deliver(Record r);

  const Topology& topology_;
  Options options_;
  zmq::context_t& context_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mutex_;
  std::vector<std::shared_ptr<Subscriber>> subscribers_;
  std::map<std::pair<std::string, std::string>, std::uint64_t> edges_;
  // (publisher, event type) -> the services reacting to it, from the topology once.
  std::map<std::pair<std::string, std::string>, std::vector<std::string>> reactors_;
  std::map<std::string, std::vector<tools::SagaEvent>> sagas_;
  std::deque<std::string> saga_order_;  // first seen, oldest first (may name forgotten ones)
  HubStats stats_;
  tools::MirrorGaps gaps_;
};

// The mesh's picture, remade every `period` from $health and the hub.
class View {
 public:
  struct Options {
    std::string identity = "cli";
    std::chrono::milliseconds period{1000};
    std::chrono::milliseconds stuck_after{3000};
    std::chrono::milliseconds forget_after{10000};  // a saga waiting nowhere this long is done
  };
  View(const Topology& topology, Options options, Hub& hub, zmq::context_t& context);
  ~View();
  void start();
  void stop();
  // The latest picture (JSON, docs/operations.md "The HTTP gateway") and its number;
  // `version` 0 until the first round is done.
  nlohmann::json picture(std::uint64_t* version = nullptr) const;
  // True once every service answered $health in the latest round.
  bool ready() const;
  // True when the latest picture is under 3 s old.
  bool fresh() const;
  // Waits until a picture newer than `version` or `timeout`.
  std::uint64_t wait_newer(std::uint64_t version, std::chrono::milliseconds timeout) const;

 private:
  void run();
  nlohmann::json round(Client& client);

  const Topology& topology_;
  Options options_;
  Hub& hub_;
  zmq::context_t& context_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
  nlohmann::json picture_;
  std::uint64_t version_ = 0;
  bool ready_ = false;
  std::chrono::steady_clock::time_point made_{};
  // For rates: the last round's counts and heads, and when.
  nlohmann::json edges_;  // the choreography's edges, from the topology once (rates added per round)
  std::map<std::pair<std::string, std::string>, std::uint64_t> last_edges_;
  std::map<std::string, std::uint64_t> last_heads_;
  tools::Positions last_positions_;  // a service that stops answering keeps what it had applied
  std::chrono::steady_clock::time_point last_round_{};
};

}  // namespace troupe::gateway
