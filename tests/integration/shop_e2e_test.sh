#!/usr/bin/env bash
# The shop end to end: five real processes over ipc (scripts/mesh), real SQLite files.
#   1,000 orders with mixed outcomes all end and `troupe shop verify` holds;
#   cancellations racing the saga converge to a consistent state;
#   a malformed PlaceOrder is dead-lettered and the next order still completes;
#   restarting a service mid-load loses no order; `down` leaves no process behind.
# With topology/shop-edge.toml the same test runs on the one-process edge binary (a
# restart then restarts the whole process). With TROUPE_MESH_EXEC set (scripts/mesh
# --exec: shipping=services/shipping-py/shipping.py) it runs with that executable in the
# mesh, checks that the mesh still speaks the committed contract, and restarts shipping
# mid-load instead of payments.
# Usage: shop_e2e_test.sh SOURCE_ROOT BUILD_ROOT [TOPOLOGY]
set -uo pipefail
src=$1
export TROUPE_BUILD_DIR=$2
topology=${3:-topology/shop.toml}
cd "$src"
state=$(mktemp -d /tmp/troupe-e2e-XXXXXX)
mesh=(scripts/mesh --topology "$topology" --state-dir "$state")
troupe=("$TROUPE_BUILD_DIR/troupe")
args=(--topology "$topology" --state-dir "$state")
echo "shop e2e on $topology"
source tests/support/checks.sh
finish() {
  for f in "$state"/orders.pid "$state"/orders.[0-9]*.pid; do  # if stopped below
    [[ -f $f ]] && kill -CONT "$(cat "$f")" 2>/dev/null
  done
  "${mesh[@]}" down >/dev/null 2>&1
  rm -rf "$state"
}
trap finish EXIT

check "mesh comes up" "${mesh[@]}" up

out=$("${troupe[@]}" shop load "${args[@]}" --orders 1000 --rate 0 --seed 7 --quiet --json --wait 120)
load_line <<<"$out"
check "1,000 orders all end" json_is '.orders == 1000 and .stuck == 0' <<<"$out"
check "both outcomes occur" json_is '.confirmed > 0 and .cancelled > 0' <<<"$out"
check "invariants hold after 1,000 orders" "${troupe[@]}" shop verify "${args[@]}"
# The generic check of a mesh at rest, which knows nothing of orders.
settled=$("${troupe[@]}" settle "${args[@]}" --json)
check "troupe settle: at rest, no finding, every stream at its publisher's head" \
  json_is '.settled and .ok and (.findings | length == 0) and ([.services[].upstreams[]] | length > 0)
           and all(.services[].upstreams[]; .lag == 0 and .position == .head)' <<<"$settled"

# The events orders has published: its head, or the sum of its instances' heads (a
# partitioned orders answers $health per instance).
orders_head() {
  "${troupe[@]}" query "${args[@]}" orders '$health' | json 'if has("head") then .head else [.[].head] | add end'
}
partitioned=
[[ $("${troupe[@]}" check "${args[@]}" --list) == *orders.0* ]] && partitioned=1

if [[ -z $partitioned ]]; then  # (a partitioned mesh's contract: not yet, see docs/operations.md)
# The contract the running services answer ($schema) is the one their executables print.
# (A service run from another executable, scripts/mesh --exec, is asked through that one.)
for s in orders inventory payments shipping notifications; do
  exe=$TROUPE_BUILD_DIR/services/$s
  [[ -f $state/$s.exe ]] && exe=$(cat "$state/$s.exe")
  "$exe" --contract >"$state/$s.contract.json"
done
"${troupe[@]}" asyncapi "${args[@]}" --contracts "$state"/*.contract.json --json -o "$state/built.asyncapi.json"
check "troupe asyncapi --mesh writes what the builds' contracts say" \
  bash -c '"$@" --mesh --json -o "$0/mesh.asyncapi.json" && cmp "$0/mesh.asyncapi.json" "$0/built.asyncapi.json"' \
  "$state" "${troupe[@]}" asyncapi "${args[@]}"
check "troupe compat --mesh: the running mesh is compatible with its own contract" \
  "${troupe[@]}" compat "${args[@]}" "$state/built.asyncapi.json" --mesh
fi
restart=payments
[[ -n $partitioned ]] && restart=orders.1  # one partition, the others serve on
if [[ -n ${TROUPE_MESH_EXEC:-} ]]; then
  # A service from another executable (another language) is a drop-in replacement: the
  # mesh with it speaks the contract of the C++ builds, both ways (compat --mode full).
  mkdir -p "$state/cpp"
  for s in orders inventory payments shipping notifications; do
    "$TROUPE_BUILD_DIR/services/$s" --contract >"$state/cpp/$s.contract.json"
  done
  "${troupe[@]}" asyncapi "${args[@]}" --contracts "$state"/cpp/*.contract.json --json -o "$state/cpp.asyncapi.json"
  check "with ${TROUPE_MESH_EXEC%%=*} from ${TROUPE_MESH_EXEC#*=}, the mesh speaks the C++ builds' contract" \
    "${troupe[@]}" compat "${args[@]}" "$state/cpp.asyncapi.json" --mesh
  restart=${TROUPE_MESH_EXEC%%=*}
fi

# Every order is cancelled 0–60 ms after it is placed: some cancellations reach payments
# before the capture (nothing to refund), some after (refunded). The window is wide enough
# for both on a slow build (ASan), where a saga reaches payments only after ~10–20 ms.
refunded() {
  "${troupe[@]}" query "${args[@]}" payments GetBalance '{}' |
    /usr/bin/python3 -c 'import json, sys; print(sum(a["refunded"] for a in json.load(sys.stdin)["accounts"]))'
}
before=$(refunded)
out=$("${troupe[@]}" shop load "${args[@]}" --orders 300 --rate 300 --seed 8 --cancel-ratio 1 --cancel-delay 60 --quiet --json)
load_line <<<"$out"
check "orders with racing cancellations all end" json_is '.orders == 300 and .stuck == 0' <<<"$out"
after=$(refunded)
echo "payments refunded during the racing cancellations: $((after - before))"
check "some cancellations raced a captured payment (compensation ran)" test "$after" -gt "$before"
check "invariants hold after racing cancellations" "${troupe[@]}" shop verify "${args[@]}"

# Where a saga's time goes: the hops of the path most orders take, timed on one clock.
out=$("${troupe[@]}" shop load "${args[@]}" --orders 200 --rate 500 --seed 9 --quiet --json --hops)
# (The first event seen is usually OrderPlaced; over inproc a later one can reach the
# load driver first: the hops are in the order the driver saw them.)
check "load --hops: the tail's path from PlaceOrder to an outcome, each hop timed for the tail and the median" \
  json_is '(.hops.hops | length) >= 2 and (.hops.hops[0].hop | startswith("PlaceOrder sent -> "))
           and (.hops.hops[-1].hop | test(" -> Order(Confirmed|Cancelled)$"))
           and all(.hops.hops[]; .median_ms >= 0 and .tail_ms >= 0) and .hops.tail_orders >= 1' <<<"$out"
check "load --hops: the tail's hops add up to at least the p99 latency (one clock)" \
  json_is '([.hops.hops[].tail_ms] | add) >= .latency_ms.p99 * 0.999' <<<"$out"
if grep -q '^security = "curve"' "$topology"; then
  # An identity let in to orders' events alone cannot follow every service: said at once.
  rc=0; err=$("${troupe[@]}" shop load "${args[@]}" --identity storefront --hops --orders 1 --quiet 2>&1 >/dev/null) || rc=$?
  check "load --hops as storefront (orders' events only): exit 2 naming what it may not watch" \
    test "$rc" = 2 -a -n "$(grep "identity 'storefront' may not watch inventory" <<<"$err")"
fi

"${troupe[@]}" send "${args[@]}" orders PlaceOrder '{"order_id":"bad-1","customer":"alice","sku":"KB-101","quantity":"three"}' >/dev/null
ev=$("${troupe[@]}" send "${args[@]}" --wait --timeout 5000 orders PlaceOrder '{"order_id":"good-1","customer":"alice","sku":"KB-101","quantity":1}')
check "the order after a malformed one completes" json_is '.type == "OrderPlaced"' <<<"$ev"
letters=$("${troupe[@]}" deadletters "${args[@]}" list orders)
echo "$letters"
check "the malformed PlaceOrder is a dead letter with its reason" grep -q "field 'quantity': expected integer, got string" <<<"$letters"
settled=$("${troupe[@]}" settle "${args[@]}" --json); rc=$?
check "troupe settle: at rest with the dead letter as its finding (exit 1)" \
  json_is "$rc == 1 and .settled and (.ok | not)
    and any(.findings[]; .kind == \"dead_letters\" and (.service | startswith(\"orders\")))" <<<"$settled"
check "troupe settle --allow-dead-letters: at rest (exit 0)" "${troupe[@]}" settle "${args[@]}" --allow-dead-letters

# Traces: a cancelled order shows its compensation; a stuck one names who it waits on.
"${troupe[@]}" send "${args[@]}" --wait orders PlaceOrder '{"order_id":"trace-1","customer":"erin","sku":"MN-303","quantity":1}' >/dev/null
deadline=$((SECONDS + 10))
until "${troupe[@]}" query "${args[@]}" orders GetOrder '{"order_id":"trace-1"}' | grep -q cancelled || ((SECONDS > deadline)); do sleep 0.05; done
tr=$("${troupe[@]}" trace "${args[@]}" trace-1)
echo "$tr"
check "the trace of a cancelled order marks the compensation" grep -Eq "inventory(\.[0-9]+)?/StockReleased.*\[compensation\]" <<<"$tr"
check "the trace of a cancelled order ends in its outcome" grep -q "outcome: " <<<"$tr"
json=$("${troupe[@]}" trace "${args[@]}" --json trace-1)
check "trace --json is one CloudEvent per event, each with its own data" /usr/bin/python3 -c '
import json, sys
events = [json.loads(line) for line in sys.argv[1].splitlines()]
assert len(events) == 5 and all(e["data"].get("order_id") == "trace-1" for e in events), events' "$json"
if [[ $topology != *edge* ]]; then
  "${mesh[@]}" kill payments >/dev/null
  "${troupe[@]}" send "${args[@]}" orders PlaceOrder '{"order_id":"trace-2","customer":"alice","sku":"KB-101","quantity":1}' >/dev/null
  deadline=$((SECONDS + 10))
  until "${troupe[@]}" trace "${args[@]}" --timeout 300 trace-2 2>/dev/null | grep -q StockReserved || ((SECONDS > deadline)); do sleep 0.05; done
  tr=$("${troupe[@]}" trace "${args[@]}" --timeout 300 trace-2 2>&1)
  echo "$tr"
  check "the trace of a stuck order names the service it waits on" grep -q "waiting .* s: payments has not reacted to StockReserved #" <<<"$tr"
  settled=$("${troupe[@]}" settle "${args[@]}" --wait 1500 --timeout 300 --json); rc=$?
  check "with payments down, troupe settle says the mesh is not at rest (exit 3), naming payments" \
    json_is "$rc == 3 and (.settled | not) and (.why | contains(\"payments\"))" <<<"$settled"
  "${mesh[@]}" up >/dev/null
  deadline=$((SECONDS + 15))
  until "${troupe[@]}" query "${args[@]}" orders GetOrder '{"order_id":"trace-2"}' | grep -q confirmed || ((SECONDS > deadline)); do sleep 0.05; done
  check "once payments is back the order completes" bash -c '"$@" | grep -Eq "outcome: orders(\.[0-9]+)?/OrderConfirmed"' _ "${troupe[@]}" trace "${args[@]}" trace-2

  # A load whose orders service stalls ends by its --wait and reports the stuck orders
  # (exit 1); it does not spend a 1 s query on each unfinished order. In the plain build
  # only: SIGCONT after seconds of SIGSTOP under load trips libzmq 4.3.4's own
  # '!_io_error' assertion in orders now and then, far more often under the sanitizers'
  # slowness (1 run in 7); what this step checks is troupe shop load, not memory safety.
fi
if [[ $topology != *edge* ]] && [[ $(ldd "$TROUPE_BUILD_DIR/troupe") != *libasan* ]]; then
  start_head=$(orders_head)
  under_way() { local h; h=$(orders_head); [[ -n $h ]] && ((h > start_head + 20)); }
  "${troupe[@]}" shop load "${args[@]}" --orders 300 --rate 100 --seed 10 --quiet --json --wait 3 >"$state/stall-load.json" 2>"$state/stall-load.err" &
  load=$!
  wait_for 10 "the load gets under way" under_way
  for f in "$state"/orders.pid "$state"/orders.[0-9]*.pid; do [[ -f $f ]] && kill -STOP "$(cat "$f")"; done
  stalled_at=$SECONDS
  wait "$load"
  load_rc=$?
  took=$((SECONDS - stalled_at))
  for f in "$state"/orders.pid "$state"/orders.[0-9]*.pid; do [[ -f $f ]] && kill -CONT "$(cat "$f")"; done
  load_line <"$state/stall-load.json"
  check "a load whose orders stalls ends by --wait (exit $load_rc, ${took} s after the stall)" \
    test "$load_rc" -eq 1 -a "$took" -le 20
  check "... and reports its stuck orders" json_is '.orders == 300 and .stuck > 0' <"$state/stall-load.json"
fi

"${troupe[@]}" shop load "${args[@]}" --orders 600 --rate 300 --seed 9 --quiet --json >"$state/restart-load.json" &
load=$!
# Restart once the load is under way (orders' head has moved on), with a deadline.
start_head=$(orders_head)
deadline=$((SECONDS + 30))
until (( $(orders_head) > start_head + 100 )); do
  if ! kill -0 "$load" 2>/dev/null || ((SECONDS > deadline)); then echo "FAIL: the load did not get under way"; break; fi
  sleep 0.05
done
check "$restart restarts mid-load" "${mesh[@]}" restart "$restart"
wait "$load"
load_line <"$state/restart-load.json"
check "restarting a service mid-load loses no order" json_is '.orders == 600 and .stuck == 0' <"$state/restart-load.json"
check "invariants hold after the restart" "${troupe[@]}" shop verify "${args[@]}"

pids=$(cat "$state"/*.pid)
check "mesh goes down" "${mesh[@]}" down
alive=0
for p in $pids; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
check "no process is left behind" test "$alive" -eq 0

echo "shop e2e: $failures failure(s)"
exit $((failures > 0))
