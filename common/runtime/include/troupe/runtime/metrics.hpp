// Metrics kept by a node and served as $metrics: per message type counters and
// handler latency, batch sizes, commit latency, delivery repair counters, socket events.
#pragma once

#include <array>
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

struct Metrics {
  std::map<std::string, TypeMetrics, std::less<>> types;
  Histogram batch_size;
  Histogram commit_us;
  // Counters that tests and tools in the process read live are NodeCounters (atomic,
  // node.hpp): replays, gaps, duplicates, dead letters. These are the rest, one place each.
  std::uint64_t rejected_frames = 0, commands_resent = 0, commands_out_of_order = 0, store_failures = 0,
                events_lost = 0;
  // What a peer tried to make this node hold or send beyond its limits.
  std::uint64_t oversized_refused = 0;      // emitted messages over max_message_bytes, not committed
  std::uint64_t subscriptions_ignored = 0;  // subscriptions that match no topic of this node
  std::uint64_t dead_letters_evicted = 0;   // oldest letters dropped past max_dead_letters/_bytes
  std::uint64_t oversized_received = 0;     // messages over the frame or byte limit, kept truncated
  std::uint64_t tasks_failed = 0;           // timer or posted tasks that threw (rolled back)
  std::uint64_t connections_renewed = 0;    // upstream sockets opened again (silent publisher, lost replay)
  std::map<std::string, std::uint64_t> socket_events;  // "accepted", "disconnected", ...
  std::map<std::string, std::uint64_t> auth_refused;   // CURVE: per endpoint, "tap", "builtin", "source"
  std::map<std::string, std::uint64_t> rate_limited;   // "queries", "commands" over an identity's rate
};

}  // namespace troupe
