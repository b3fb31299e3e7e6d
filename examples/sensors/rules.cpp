#include "rules.hpp"

#include <algorithm>

namespace sensors {

std::int64_t simulated_milli(const std::string& sensor, std::int64_t at_ms) {
  const std::int64_t second = at_ms / 1000, within = at_ms % 1000;
  const std::int64_t every = sensor == "boiler" ? 5 : 7;
  return (second % every == 0 ? 60'000 : 20'000) + within * 3;
}

std::pair<Window, std::optional<WindowClosed>> add(const std::optional<Window>& open, const Reading& r) {
  const std::int64_t second = r.at_ms / 1000;
  if (open && second <= open->window) {
    Window w = *open;
    ++w.count;
    w.sum += r.milli;
    w.max = std::max(w.max, r.milli);
    return {w, std::nullopt};
  }
  std::optional<WindowClosed> closed;
  if (open && open->count > 0)
    closed = WindowClosed{r.sensor, open->window, open->count, open->sum / open->count, open->max};
  return {Window{second, 1, r.milli, r.milli}, closed};
}

std::optional<AlertRaised> alert_for(const WindowClosed& w) {
  if (w.max_milli <= kThresholdMilli) return std::nullopt;
  return AlertRaised{w.sensor + "@" + std::to_string(w.window), w.sensor, w.window, w.max_milli, false};
}

}  // namespace sensors
