// The sensors mesh's rules, pure: no sockets, no store, no clock.
#pragma once

#include "messages.hpp"

#include <optional>
#include <utility>

namespace sensors {

// Over this a window's maximum raises an alert (50.000).
inline constexpr std::int64_t kThresholdMilli = 50'000;

// The simulated device: what `sensor` reads at `at_ms`. Mostly 20–23, and every fifth
// second (the boiler) or seventh (the pump) a spike to 60–63.
std::int64_t simulated_milli(const std::string& sensor, std::int64_t at_ms);

// A sensor's open window, as the aggregator keeps it.
struct Window {
  std::int64_t window = 0, count = 0, sum = 0, max = 0;
  TROUPE_MESSAGE(Window, window, count, sum, max)
};

// Adds `r` to the open window; when `r` starts a later second, returns the closed
// window too. A reading from an earlier second than the open one (a device clock that
// stepped back) is counted in the open window, never reopens a closed one.
std::pair<Window, std::optional<WindowClosed>> add(const std::optional<Window>& open, const Reading& r);

// The alert a closed window raises, if any.
std::optional<AlertRaised> alert_for(const WindowClosed& w);

}  // namespace sensors
