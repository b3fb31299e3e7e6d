// Metrics kept by a node and served as $metrics: per message type counters and
// handler latency, batch sizes, commit latency, delivery repair counters, socket events:
// one struct, one place each.
#pragma once

#include <troupe/runtime/builtin.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>

namespace troupe {

// Fixed buckets in microseconds; the last one is +inf.
class Histogram {
 public:
  static constexpr std::array<std::uint64_t, 11> kBounds{10,   50,    100,   250,    500,    1000,
                                                         2500, 10000, 50000, 250000, UINT64_MAX};
  void add(std::uint64_t value);
  // Adds the microseconds from `start` until now (steady clock).
  void add_since(std::chrono::steady_clock::time_point start);
  std::uint64_t count() const { return count_; }
  std::uint64_t sum() const { return sum_; }
  std::uint64_t max() const { return max_; }
  const std::array<std::uint64_t, kBounds.size()>& buckets() const { return buckets_; }
  // The bucket bound below which `q` (0..1) of the values fall (an upper estimate).
  std::uint64_t quantile(double q) const;

 private:
  std::array<std::uint64_t, kBounds.size()> buckets_{};
  std::uint64_t count_ = 0, sum_ = 0, max_ = 0;
};

struct TypeMetrics {
  std::uint64_t received = 0, handled = 0, rejected = 0, published = 0;
  Histogram latency_us;
};

// Everything a node counts, in one place; $metrics is made from it (report()). The
// counters are atomic, so tests and tools in the same process may read them live
// (node.counters()); the per-type counters, histograms and maps are the node thread's
// own: read them through $metrics.
struct Metrics {
  using Counter = std::atomic<std::uint64_t>;
  std::map<std::string, TypeMetrics, std::less<>> types;
  Histogram batch_size;
  Histogram commit_us;  // a batch, from its first message handled to its commit done
  // Where a message's time in this node goes (the saga tail's breakdown, hop by hop):
  // queueing from its receipt to its handler's start (per message), the store's commit
  // alone and the relay of what the batch emitted (per batch); handling is latency_us.
  Histogram queue_us, store_commit_us, relay_us;
  // Pipelined commit: each fsync of the store, made beside the batches.
  Histogram store_sync_us;
  // Work done.
  Counter events_applied{0}, commands_applied{0}, queries_answered{0}, published{0}, batches{0};
  Counter store_syncs{0};  // fsyncs of a pipelined commit (store_sync_us's count)
  // Delivery: refusals, repairs, losses.
  Counter rejected{0}, dead_letters{0}, duplicates{0}, gaps_seen{0}, gaps_repaired{0}, replays_requested{0},
      replays_served{0}, rejected_frames{0}, commands_resent{0}, commands_out_of_order{0}, store_failures{0},
      events_lost{0};
  // What a peer tried to make this node hold or send beyond its limits.
  Counter oversized_refused{0};      // emitted messages over max_message_bytes, not committed
  Counter subscriptions_ignored{0};  // subscriptions that match no topic of this node
  Counter dead_letters_evicted{0};   // oldest letters dropped past max_dead_letters/_bytes
  Counter oversized_received{0};     // messages over the frame or byte limit, kept truncated
  Counter tasks_failed{0};           // timer or posted tasks that threw (rolled back)
  Counter connections_renewed{0};    // upstream sockets opened again (silent publisher, lost replay)
  // The events socket and its readers.
  Counter subscriptions{0};  // live subscriptions on our XPUB
  Counter taps{0};           // taps subscribed to our mirror
  Counter mirrored{0};       // messages mirrored to taps
  std::map<std::string, std::uint64_t> socket_events;  // "accepted", "disconnected", ...
  std::map<std::string, std::uint64_t> auth_refused;   // CURVE: per endpoint, "tap", "builtin", "source"
  std::map<std::string, std::uint64_t> rate_limited;   // "queries", "commands" over an identity's rate
  std::atomic<bool> running{false};  // the node's reactor runs (not a metric; read by tests)
};

// The $metrics reply for `service` (call on the node's thread).
builtin::MetricsReply report(const Metrics& metrics, std::string service);

}  // namespace troupe
