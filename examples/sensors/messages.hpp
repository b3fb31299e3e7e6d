// The sensors mesh's messages: a device's readings, their windows, the alerts raised on
// them, and the actuator's commands and acknowledgements.
#pragma once

#include <troupe/domain/message.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sensors {

// One reading of a device (sensor's event; memory mode: a reading lost in a crash is
// not worth a disk write).
struct Reading {
  std::string sensor;
  std::int64_t at_ms = 0;   // the device's clock, ms since the epoch
  std::int64_t milli = 0;   // the value, in thousandths (42.5 °C is 42500)
  TROUPE_MESSAGE(Reading, sensor, at_ms, milli)
};

// A sensor's readings of one second, closed when the next second's first reading came
// (aggregator's event).
struct WindowClosed {
  std::string sensor;
  std::int64_t window = 0;  // at_ms / 1000 of its readings
  std::int64_t count = 0;
  std::int64_t mean_milli = 0;
  std::int64_t max_milli = 0;
  TROUPE_MESSAGE(WindowClosed, sensor, window, count, mean_milli, max_milli)
};

// A window over the threshold (alerts' event, and its stored row).
struct AlertRaised {
  std::string alert_id;  // "SENSOR@WINDOW": one per window
  std::string sensor;
  std::int64_t window = 0;
  std::int64_t max_milli = 0;
  bool acknowledged = false;  // the actuator said it acted
  TROUPE_MESSAGE(AlertRaised, alert_id, sensor, window, max_milli, acknowledged)
};

// alerts -> actuator: act on an alert (a sequenced command: durable, once, in order).
struct Actuate {
  std::string alert_id;
  std::string action;
  TROUPE_MESSAGE(Actuate, alert_id, action)
};

// The actuator acted (its event, and its stored row: `times` counts how often it acted
// on the alert, which is 1 unless a command was applied twice).
struct Actuated {
  std::string alert_id;
  std::string action;
  std::int64_t times = 0;
  TROUPE_MESSAGE(Actuated, alert_id, action, times)
};

// Queries: every alert, every action (pages after a key).
struct AlertList {
  std::vector<AlertRaised> alerts;
  TROUPE_MESSAGE(AlertList, alerts)
};
struct ListAlerts {
  std::optional<std::string> after;
  std::optional<std::int64_t> limit;
  using Reply = AlertList;
  TROUPE_MESSAGE(ListAlerts, after, limit)
};
struct ActionList {
  std::vector<Actuated> actions;
  TROUPE_MESSAGE(ActionList, actions)
};
struct ListActions {
  std::optional<std::string> after;
  std::optional<std::int64_t> limit;
  using Reply = ActionList;
  TROUPE_MESSAGE(ListActions, after, limit)
};

}  // namespace sensors
