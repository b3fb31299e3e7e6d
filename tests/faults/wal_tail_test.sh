#!/usr/bin/env bash
# A lost WAL tail is loud, never silent: under a steady order load orders is SIGKILLed,
# its -wal and -shm files are deleted (the committed events since the last checkpoint
# are gone, and it will number new events with sequences its subscribers already
# applied), and it is started again. Passes only if a subscriber logs `LOSS:` about
# orders and reports it in $health (head_regressed, or the service degraded); fails
# loudly if everything says ready with lag 0 while orders are stuck or `troupe shop verify`
# finds violations.
# Usage: wal_tail_test.sh SOURCE_ROOT BUILD_ROOT
set -uo pipefail
cd "$1"
export TROUPE_BUILD_DIR=$2
state=$(mktemp -d /tmp/troupe-wal-tail-XXXXXX)
mesh=(scripts/mesh --state-dir "$state")
troupe=("$TROUPE_BUILD_DIR/troupe")
args=(--state-dir "$state")
source tests/support/checks.sh
finish() {
  [[ -n ${load_pid:-} ]] && kill "$load_pid" 2>/dev/null
  "${mesh[@]}" down >/dev/null 2>&1
  rm -rf "$state"
}
trap finish EXIT
orders_head() {
  "${troupe[@]}" query "${args[@]}" --timeout 500 orders '$health' 2>/dev/null |
    /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["head"])' 2>/dev/null
}
head_at_least() { local h; h=$(orders_head); [[ -n $h ]] && ((h >= $1)); }

check "mesh comes up" "${mesh[@]}" up
"${troupe[@]}" shop load "${args[@]}" --orders 3600 --rate 300 --seed 14 --quiet --json --wait 10 >"$state/load.json" 2>"$state/load.err" &
load_pid=$!
max_seq() {  # directory: orders' last committed event in a copy of its files there
  /usr/bin/python3 -c 'import sqlite3, sys
print(sqlite3.connect(sys.argv[1] + "/orders.db").execute("SELECT coalesce(max(seq), 0) FROM troupe_outbox").fetchone()[0])' "$1"
}
# What orders' subscribers have applied of its stream (the highest position): a loss
# is only visible to them when one has applied an event the cut takes away.
applied_of_orders() {
  local s top=0 p
  for s in inventory payments shipping notifications; do
    p=$("${troupe[@]}" query "${args[@]}" --timeout 500 "$s" '$health' 2>/dev/null |
        json '[.upstreams[] | select(.publisher == "orders") | .position] | max // 0')
    [[ -n $p ]] && ((p > top)) && top=$p
  done
  echo "$top"
}
# A kill just after a checkpoint loses nothing, and a cut of events no subscriber had
# applied yet diverges from nothing they know; then orders starts whole and the drill
# is tried again, a few hundred events later.
lost=0
for attempt in 1 2 3 4; do
  wait_for 20 "orders has committed $((attempt * 600)) events under load" head_at_least $((attempt * 600))
  "${mesh[@]}" kill orders >/dev/null
  rm -rf "$state/whole" "$state/cut"
  mkdir "$state/whole" "$state/cut"
  cp "$state/orders.db" "$state/orders.db-wal" "$state/whole/"
  cp "$state/orders.db" "$state/cut/"
  before=$(max_seq "$state/whole")
  after=$(max_seq "$state/cut")
  applied=$(applied_of_orders)
  echo "orders' head: #$before committed, #$after without the WAL tail; its subscribers applied up to #$applied"
  if ((after < before && applied > after)); then lost=1; break; fi
  "${mesh[@]}" up >/dev/null
done
check "the drill lost committed events a subscriber had applied (else it tests nothing)" test "$lost" -eq 1
rm -f "$state/orders.db-wal" "$state/orders.db-shm"
check "orders starts again without its WAL tail" "${mesh[@]}" up
wait "$load_pid"
load_pid=""
load_line <"$state/load.json"

loss_logged() { grep -l "LOSS: orders" "$state"/{inventory,payments,shipping,notifications}.log >/dev/null 2>&1; }
reported() {  # a subscriber of orders says so in $health
  local s
  for s in inventory payments shipping notifications; do
    "${troupe[@]}" query "${args[@]}" "$s" '$health' 2>/dev/null | /usr/bin/python3 -c '
import json, sys
h = json.load(sys.stdin)
up = [u for u in h.get("upstreams", []) if u["publisher"] == "orders"]
sys.exit(0 if up and (up[0].get("head_regressed") or h.get("state") == "degraded") else 1)' && return 0
  done
  return 1
}
wait_for 10 "a service logs LOSS: about orders" loss_logged && grep -h "LOSS:" "$state"/*.log | head -3 | cut -c1-240
wait_for 10 "a subscriber of orders reports it in \$health (head_regressed or degraded)" reported

all_quiet() {  # every service ready, lag 0
  local s
  for s in orders inventory payments shipping notifications; do
    "${troupe[@]}" query "${args[@]}" "$s" '$health' 2>/dev/null | /usr/bin/python3 -c '
import json, sys
h = json.load(sys.stdin)
sys.exit(0 if h["state"] == "ready" and all(u["lag"] == 0 for u in h["upstreams"]) else 1)' || return 1
  done
}
verify_out=$("${troupe[@]}" shop verify "${args[@]}" --settle 3000 2>&1)
verify_rc=$?
echo "$verify_out" | tail -2 | cut -c1-240
stuck=$(json '.stuck' <"$state/load.json")
silent=0
if ! loss_logged && all_quiet && { ((verify_rc != 0)) || [[ $stuck != 0 ]]; }; then silent=1; fi
check "the loss is not silent: not all ready with lag 0 and no LOSS: while verify exits $verify_rc and ${stuck:-?} are stuck" test "$silent" -eq 0

echo "wal tail test: $failures failure(s)"
exit $((failures > 0))
