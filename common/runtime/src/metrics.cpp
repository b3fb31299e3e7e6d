// Histogram buckets and quantile estimates; the $metrics reply.
#include <troupe/runtime/metrics.hpp>

#include <algorithm>

namespace troupe {

void Histogram::add(std::uint64_t value) {
  for (std::size_t i = 0; i < kBounds.size(); ++i)
    if (value <= kBounds[i]) {
      ++buckets_[i];
      break;
    }
  ++count_;
  sum_ += value;
  max_ = std::max(max_, value);
}

void Histogram::add_since(std::chrono::steady_clock::time_point start) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count();
  add(static_cast<std::uint64_t>(std::max<decltype(us)>(us, 0)));
}

std::uint64_t Histogram::quantile(double q) const {
  if (count_ == 0) return 0;
  auto want = static_cast<std::uint64_t>(q * static_cast<double>(count_) + 0.5);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBounds.size(); ++i) {
    seen += buckets_[i];
    if (seen >= want && seen > 0) return std::min(kBounds[i], max_);
  }
  return max_;
}

namespace {
builtin::HistogramReply report(const Histogram& h) {
  builtin::HistogramReply r{h.count(), h.sum(), h.max(), h.quantile(0.5), h.quantile(0.99), {}};
  for (std::size_t i = 0; i < Histogram::kBounds.size(); ++i)
    r.buckets.push_back({Histogram::kBounds[i] == UINT64_MAX ? std::variant<std::uint64_t, std::string>("+Inf")
                                                             : Histogram::kBounds[i],
                         h.buckets()[i]});
  return r;
}
}  // namespace

builtin::MetricsReply report(const Metrics& m, std::string service) {
  builtin::MetricsReply r;
  r.service = std::move(service);
  for (const auto& [type, t] : m.types)
    r.types[type] = {t.received, t.handled, t.rejected, t.published, report(t.latency_us)};
  r.batch_size = report(m.batch_size);
  r.commit_us = report(m.commit_us);
  r.queue_us = report(m.queue_us);
  r.store_commit_us = report(m.store_commit_us);
  r.relay_us = report(m.relay_us);
  r.store_sync_us = report(m.store_sync_us);
  r.replays_requested = m.replays_requested;
  r.replays_served = m.replays_served;
  r.gaps_seen = m.gaps_seen;
  r.gaps_repaired = m.gaps_repaired;
  r.duplicates = m.duplicates;
  r.dead_letters = m.dead_letters;
  r.rejected_frames = m.rejected_frames;
  r.commands_resent = m.commands_resent;
  r.commands_out_of_order = m.commands_out_of_order;
  r.store_failures = m.store_failures;
  r.events_lost = m.events_lost;
  r.oversized_refused = m.oversized_refused;
  r.oversized_received = m.oversized_received;
  r.connections_renewed = m.connections_renewed;
  r.tasks_failed = m.tasks_failed;
  r.subscriptions_ignored = m.subscriptions_ignored;
  r.dead_letters_evicted = m.dead_letters_evicted;
  r.rate_limited = m.rate_limited;
  r.published = m.published;
  r.subscriptions = m.subscriptions;
  r.taps = m.taps;
  r.mirrored = m.mirrored;
  r.socket_events = m.socket_events;
  r.auth_refused = m.auth_refused;
  return r;
}

}  // namespace troupe
