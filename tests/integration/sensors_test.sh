#!/usr/bin/env bash
# The sensors example (examples/sensors): four services in one process, a simulated
# device feeding readings (memory mode) into windows and alerts (durable mode) that
# command an actuator, which takes 1.5 s to act. The process is SIGKILLed right after an
# alert is raised, while its command is not yet done, and started again: no alert or
# actuator command is lost or doubled (examples/sensors/verify),
# and the alerts raised before the kill are still there. A planted doubled command is
# caught by the same check.
# Usage: sensors_test.sh SOURCE_ROOT BUILD_ROOT
set -uo pipefail
cd "$1"
export TROUPE_BUILD_DIR=$2
source tests/support/checks.sh
state=$(mktemp -d /tmp/troupe-sensors-XXXXXX)
args=(--topology topology/sensors.toml --state-dir "$state")
mesh=(scripts/mesh "${args[@]}")
troupe=("$TROUPE_BUILD_DIR/troupe")
export TROUPE="$TROUPE_BUILD_DIR/troupe"
finish() { "${mesh[@]}" down >/dev/null 2>&1; rm -rf "$state"; }
trap finish EXIT

alerts() { "${troupe[@]}" query "${args[@]}" alerts ListAlerts '{}' | json '.alerts | length'; }
acknowledged() { "${troupe[@]}" query "${args[@]}" alerts ListAlerts '{}' | json '[.alerts[] | select(.acknowledged)] | length'; }
at_least() { local n; n=$("$1") && [[ -n $n ]] && ((n >= $2)); }

# The actuator takes 1.5 s to act: a kill right after an alert finds its command taken
# by the actuator but not yet done (or not yet sent), never already acknowledged.
export SENSORS_ACTUATOR_MS=1500
check "the sensors host comes up (four services in one process)" "${mesh[@]}" up
wait_for 40 "the device's spikes raise alerts, which the actuator acknowledges" at_least acknowledged 2
before=$(alerts)
wait_for 30 "a new alert is raised" at_least alerts $((before + 1))
listed=$("${troupe[@]}" query "${args[@]}" alerts ListAlerts '{}')
check "the host is SIGKILLed right after it" "${mesh[@]}" kill alerts
raised=$(json '[.alerts[].alert_id]' -c <<<"$listed")
check "... while an alert's command was not yet done (the kill is mid-command)" \
  json_is 'any(.alerts[]; .acknowledged | not)' <<<"$listed"
check "... and it comes up again (the device now stops after 10 s)" env SENSORS_DEVICE_SECONDS=10 "${mesh[@]}" up
survived() {
  "${troupe[@]}" query "${args[@]}" alerts ListAlerts '{}' |
    jq -e --argjson raised "$raised" '[.alerts[].alert_id] as $now | all($raised[]; . as $id | $now | index($id) != null)' >/dev/null
}
check "every alert raised before the kill is still there, by id" survived
wait_for 40 "alerts raised after the restart too" at_least alerts $(($(jq length <<<"$raised") + 1))
check "the mesh comes to rest once the device stops (troupe settle)" "${troupe[@]}" settle "${args[@]}" --wait 40000
out=$(examples/sensors/verify "${args[@]}" --json)
echo "$out"
check "no alert or actuator command lost or doubled" json_is '.lost == 0 and .doubled == 0 and .alerts > 0 and .acknowledged == .alerts' <<<"$out"
# The check is shown to catch what it guards: one alert's command applied a second time.
first=$("${troupe[@]}" query "${args[@]}" actuator ListActions '{"limit":1}' | json '.actions[0].alert_id')
"${troupe[@]}" send "${args[@]}" --wait actuator Actuate "{\"alert_id\":\"$first\",\"action\":\"again\"}" >/dev/null
out=$(examples/sensors/verify "${args[@]}" --json); rc=$?
check "a command applied twice is reported as doubled (exit 1)" json_is "$rc == 1 and .doubled == 1" <<<"$out"
check "the mesh goes down" "${mesh[@]}" down
echo "sensors: $failures failure(s)"
exit $((failures > 0))
