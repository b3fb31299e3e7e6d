// The four services of the sensors mesh, each installed on its node.
#pragma once

#include <troupe/runtime/handlers.hpp>

#include <chrono>

namespace sensors {

// sensor: publishes Reading. Its readings come from the device driver (main.cpp) by
// node.post; it handles no message.
void install_sensor(troupe::Handlers& node);
// aggregator: reacts to Reading, keeps one open window per sensor, publishes WindowClosed.
void install_aggregator(troupe::Handlers& node);
// alerts: reacts to WindowClosed (raises AlertRaised once per window over the threshold
// and sends Actuate to the actuator) and to Actuated (marks the alert acknowledged).
void install_alerts(troupe::Handlers& node);
// actuator: accepts Actuate, publishes Actuated, counts how often it acted per alert.
// Acting takes `acting` (a real device's relay or valve is not instant), during which
// the command is taken but not yet done: a crash then must not lose or double it.
void install_actuator(troupe::Handlers& node, std::chrono::milliseconds acting = std::chrono::milliseconds(0));

}  // namespace sensors
