// Paged listings for the shop's queries: the page size a client may ask for, and one
// page of a state table read from just after a key (an index seek, so a late page costs
// what an early one does).
#pragma once

#include <troupe/domain/result.hpp>
#include <troupe/runtime/context.hpp>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace shop {

inline constexpr std::int64_t kMaxPage = 500;

// The page size for a query's `limit`: absent is kMaxPage, more is capped to it, and
// 0 or less is refused ("ListOrders: limit must be 1..500, got 0").
inline troupe::Result<std::size_t> page_limit(std::string_view query, std::optional<std::int64_t> limit) {
  if (limit && *limit <= 0)
    return troupe::reject(troupe::Rejection::Code::invalid, std::string(query),
                          "limit must be 1.." + std::to_string(kMaxPage) + ", got " + std::to_string(*limit));
  return static_cast<std::size_t>(std::min(limit.value_or(kMaxPage), kMaxPage));
}

// At most `limit` values of `table` whose keys sort after `after`, in key order.
template <troupe::Message T>
std::vector<T> page(const troupe::StateView& state, std::string_view table, std::string_view after,
                    std::size_t limit) {
  std::vector<T> out;
  state.for_each_after<T>(table, after, [&](std::string_view, const T& value) {
    out.push_back(value);
    return out.size() < limit;
  });
  return out;
}

}  // namespace shop
