// RateLimits: per-identity token buckets for the queries and commands a client of the
// mesh may send (the topology's queries_per_second / commands_per_second). Time is a
// parameter; a bucket holds at most one second's worth.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <string_view>

#include <troupe/domain/topology.hpp>

namespace troupe::detail {

class RateLimits {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Kind { query, command };

  explicit RateLimits(const Topology& topology);

  // True if `identity` may send one more message of `kind` at `now` (and takes a token);
  // identities without a limit (services, unlimited clients, inproc peers) always may.
  bool admit(std::string_view identity, Kind kind, Clock::time_point now);
  // The limit `identity` has for `kind` (0 = none).
  double rate(std::string_view identity, Kind kind) const;

 private:
  struct Bucket {
    double rate = 0;
    double tokens = 0;
    Clock::time_point last{};
  };
  std::map<std::string, Bucket, std::less<>> queries_, commands_;
};

}  // namespace troupe::detail
