#!/usr/bin/env bash
# Clock: the orders service's wall clock jumps two hours back mid-load (libfaketime,
# wall clock only: CLOCK_MONOTONIC is left alone, as on a real NTP step), and orders is
# then SIGKILLed and restarted with its clock still behind. Sequence numbers, not
# timestamps, decide order and dedup, so:
#   events stamped after the jump carry earlier times, and still apply in order;
#   every order of the load ends, none twice; `troupe shop verify` holds.
# Skips (exit 77) where Debian's libfaketime is not installed.
# Usage: clock_jump_test.sh SOURCE_ROOT BUILD_ROOT
set -uo pipefail
cd "$1"
export TROUPE_BUILD_DIR=$2
faketime_lib=$(ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null | head -1)
if [[ -z $faketime_lib ]]; then
  echo "skip: libfaketime is not installed (Debian package faketime; scripts/bootstrap installs it)"
  exit 77
fi
topology=topology/shop.toml
state=$(mktemp -d /tmp/troupe-clock-XXXXXX)
mesh=(scripts/mesh --topology "$topology" --state-dir "$state")
troupe=("$TROUPE_BUILD_DIR/troupe")
args=(--topology "$topology" --state-dir "$state")
source tests/support/checks.sh
finish() {
  "${mesh[@]}" down >/dev/null 2>&1
  rm -rf "$state"
}
trap finish EXIT
orders_head() { "${troupe[@]}" query "${args[@]}" --timeout 1000 orders '$health' 2>/dev/null | json '.head'; }
head_above() { local h; h=$(orders_head); [[ -n $h ]] && ((h > $1)); }
# Start orders (only it: `mesh up` starts what is not running) with the fake wall clock,
# its offset read from a file that this test rewrites to make the clock jump.
clockfile=$state/orders.faketime
echo "+0" >"$clockfile"
start_orders_with_fake_clock() {
  LD_PRELOAD=$faketime_lib FAKETIME_TIMESTAMP_FILE=$clockfile FAKETIME_NO_CACHE=1 \
    FAKETIME_DONT_FAKE_MONOTONIC=1 "${mesh[@]}" up >/dev/null
}
place() {  # order id: place one order, print the time of the OrderPlaced it caused
  "${troupe[@]}" send "${args[@]}" --wait --timeout 5000 orders PlaceOrder \
    "{\"order_id\":\"$1\",\"customer\":\"alice\",\"sku\":\"KB-101\",\"quantity\":1}" |
    json '.time'
}

check "mesh comes up" "${mesh[@]}" up
"${mesh[@]}" kill orders >/dev/null
check "orders restarts under a fake wall clock" start_orders_with_fake_clock
before=$(place clock-before)

"${troupe[@]}" shop load "${args[@]}" --orders 1500 --rate 250 --seed 31 --wait 120 --quiet --json >"$state/load.json" 2>"$state/load.err" &
load=$!
wait_for 20 "the load is under way" head_above 300
echo "-7200" >"$clockfile"
echo "orders' wall clock jumped back 2 h"
after=$(place clock-after)
echo "OrderPlaced before the jump: $before; after: $after"
check "events stamped after the jump carry earlier times" test -n "$after" -a "$after" \< "$before"
mark=$(orders_head)
wait_for 20 "the load goes on after the jump" head_above $((mark + 300))
"${mesh[@]}" kill orders >/dev/null
check "orders restarts after SIGKILL with its clock still 2 h behind" start_orders_with_fake_clock

wait "$load"
load_rc=$?
load_line <"$state/load.json"
check "every order of the load ends (exit $load_rc)" test "$load_rc" -eq 0
check "1,500 orders placed, none stuck" json_is '.orders == 1500 and .stuck == 0' <"$state/load.json"
for id in clock-before clock-after; do
  wait_for 15 "order $id (placed $([[ $id == *before ]] && echo before || echo after) the jump) ends" \
    bash -c 'set -o pipefail; "$@" | jq -e -s "length == 1 and (.[0].status | . == \"confirmed\" or . == \"cancelled\")" >/dev/null' _ \
    "${troupe[@]}" query "${args[@]}" orders GetOrder "{\"order_id\":\"$id\"}"
done
check "invariants hold: nothing applied twice or lost" "${troupe[@]}" shop verify "${args[@]}"

echo "clock-jump test: $failures failure(s)"
exit $((failures > 0))
