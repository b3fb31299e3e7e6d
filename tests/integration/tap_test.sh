#!/usr/bin/env bash
# Taps: services mirror commands only while a tap is subscribed (the mirror counter
# stays at zero without one); filters select exactly what they name, live and from a
# recording; a stopped (SIGSTOP) tap does not stop orders from completing.
# Usage: tap_test.sh SOURCE_ROOT BUILD_ROOT
set -uo pipefail
cd "$1"
export TROUPE_BUILD_DIR=$2
troupe=("$2/troupe")
state=$(mktemp -d /tmp/troupe-tap-XXXXXX)
mesh=(scripts/mesh --state-dir "$state")
args=(--state-dir "$state")
tap_pid=""
trap '[[ -n $tap_pid ]] && kill -CONT $tap_pid 2>/dev/null; kill $tap_pid 2>/dev/null; "${mesh[@]}" down >/dev/null 2>&1; rm -rf "$state"' EXIT
source tests/support/checks.sh
metric() { "${troupe[@]}" query "${args[@]}" "$1" '$metrics' | json ".$2"; }
wait_taps() {  # until orders counts at least one tap, with a deadline
  local deadline=$((SECONDS + 10))
  until (( $(metric orders taps) >= 1 )) 2>/dev/null; do ((SECONDS > deadline)) && return 1; sleep 0.05; done
}

"${mesh[@]}" up >/dev/null || exit 1
"${troupe[@]}" shop load "${args[@]}" --orders 50 --quiet >/dev/null
check "without a tap nothing is mirrored" test "$(metric orders mirrored)" -eq 0

"${troupe[@]}" tap "${args[@]}" --record "$state/rec.jsonl" --seconds 30 >/dev/null &
tap_pid=$!
check "the service sees the tap subscribe" wait_taps
"${troupe[@]}" shop load "${args[@]}" --orders 50 --seed 3 --quiet >"$state/load.out"
check "with a tap, commands are mirrored" test "$(metric orders mirrored)" -gt 0
deadline=$((SECONDS + 10))
placed() { json_count '.tapkind == "command" and .type == "PlaceOrder"' "$state/rec.jsonl"; }
until [[ $(placed) =~ ^[0-9]+$ ]] && (($(placed) >= 50)) || ((SECONDS > deadline)); do sleep 0.05; done
kill $tap_pid; wait $tap_pid 2>/dev/null; tap_pid=""
check "the recording holds the 50 PlaceOrder commands" test "$(placed)" = 50

out=$("${troupe[@]}" tap --from "$state/rec.jsonl" --kind command --type 'Place*' --json)
check "--kind and --type select only what they name" test "$(wc -l <<<"$out")" -eq 50
check "...and nothing else" json_none '.tapkind != "command" or .type != "PlaceOrder"' <<<"$out"
one=$(json '.correlationid' <<<"$out" | head -1)
corr=$("${troupe[@]}" tap --from "$state/rec.jsonl" --correlation "$one" --json)
check "--correlation selects one saga, events and commands ($(json_count true <<<"$corr") records)" \
  bash -c '[[ $(jq -s length <<<"$1") -ge 3 ]] && jq -e -s --arg c "$2" "all(.[]; .correlationid == \$c)" <<<"$1" >/dev/null' _ "$corr" "$one"
ev=$("${troupe[@]}" tap --from "$state/rec.jsonl" --kind event --service payments)
check "--service selects a service's messages" bash -c '[[ -n $1 ]] && ! grep -v "payments" <<<"$1" | grep -q .' _ "$ev"

"${troupe[@]}" tap "${args[@]}" >/dev/null &
tap_pid=$!
check "a second tap subscribes" wait_taps
kill -STOP $tap_pid
out=$("${troupe[@]}" shop load "${args[@]}" --orders 2000 --rate 0 --seed 4 --quiet --json)
load_line <<<"$out"
check "a stopped tap does not stop orders from completing" json_is '.orders == 2000 and .stuck == 0' <<<"$out"
kill -CONT $tap_pid

echo "tap: $failures failure(s)"
exit $((failures > 0))
