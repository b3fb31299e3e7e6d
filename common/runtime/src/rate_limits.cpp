// RateLimits: see rate_limits.hpp.
#include "rate_limits.hpp"

#include <algorithm>

namespace troupe::detail {

RateLimits::RateLimits(const Topology& topology) {
  for (const auto& c : topology.clients) {
    if (c.queries_per_second > 0) queries_[c.name] = {double(c.queries_per_second), double(c.queries_per_second), {}};
    if (c.commands_per_second > 0)
      commands_[c.name] = {double(c.commands_per_second), double(c.commands_per_second), {}};
  }
}

bool RateLimits::admit(std::string_view identity, Kind kind, Clock::time_point now) {
  auto& buckets = kind == Kind::query ? queries_ : commands_;
  auto it = buckets.find(identity);
  if (it == buckets.end()) return true;
  Bucket& b = it->second;
  if (b.last != Clock::time_point{}) {
    double elapsed = std::chrono::duration<double>(now - b.last).count();
    b.tokens = std::min(b.rate, b.tokens + std::max(0.0, elapsed) * b.rate);
  }
  b.last = now;
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

double RateLimits::rate(std::string_view identity, Kind kind) const {
  const auto& buckets = kind == Kind::query ? queries_ : commands_;
  auto it = buckets.find(identity);
  return it == buckets.end() ? 0 : it->second.rate;
}

}  // namespace troupe::detail
