// What the delivery core asks of whoever drives it. The core takes inputs (an event's
// numbers, what a publisher says of itself, the time) and returns verdicts and
// Effects; it never touches a socket, a store or a clock. The reactor (runtime) and
// the simulator (tests/sim) are its two drivers.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace troupe::core {

// Time is a parameter: the reactor passes steady_clock::now(), the simulator its own.
using Time = std::chrono::steady_clock::time_point;
using Duration = std::chrono::steady_clock::duration;

// A line for the log. LOSS: lines are errors.
struct Report {
  enum class Level { debug, info, warn, error } level = Level::info;
  std::string text;
};

// Which promise a call found broken, if any (the LOSS: line says it in words).
enum class Loss {
  none,
  behind_retention,     // the publisher no longer keeps events this node has not applied
  history_lost,         // the publisher's history is not the one our position refers to
  commands_lost_here,   // a receiver applied commands of ours our store no longer has
  commands_lost_there,  // a receiver's acks went backwards: it lost applied commands
  commands_rewritten,   // a sender numbered new commands as ones applied here: it lost them
};

struct Effects {
  std::vector<Report> reports;
  Loss loss = Loss::none;
  bool health_changed = false;   // stopped or stalled changed: derive ready/degraded again
  bool save_identity = false;    // persist the publisher's incarnation and epoch now
  std::uint64_t events_lost = 0; // memory mode: events skipped for good (counted, warned)
  bool gap_opened = false;
  bool gap_repaired = false;

  void report(Report::Level level, std::string text) { reports.push_back({level, std::move(text)}); }
  void clear() { *this = Effects{}; }
};

// The loop wakes at least every half heartbeat; a much longer gap between two turns
// means the process was not running (SIGSTOP, a suspended machine, a debugger).
inline bool suspended(Time last_turn, Time now, Duration heartbeat) {
  return last_turn != Time{} &&
         now - last_turn >= std::max<Duration>(heartbeat * 4, std::chrono::seconds(2));
}

}  // namespace troupe::core
