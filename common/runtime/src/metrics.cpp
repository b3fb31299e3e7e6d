// Histogram buckets and quantile estimates.
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

}  // namespace troupe
