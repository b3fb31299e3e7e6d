#!/usr/bin/env bash
# Disk faults: the shop's stores live on a small tmpfs which is filled up mid-load.
#   a service whose store cannot write (orders, which takes the load's commands) stops
#   consuming without acknowledging, says so in $health (state "degraded",
#   store_error) and once in its log;
#   queries and $health are still answered while writes fail;
#   once space is freed every service resumes by itself, every order ends and
#   `troupe shop verify` holds: nothing was lost or applied twice.
# Needs root to mount a tmpfs; skips (exit 77) where mounting is refused.
# Usage: disk_full_test.sh SOURCE_ROOT BUILD_ROOT
set -uo pipefail
cd "$1"
export TROUPE_BUILD_DIR=$2
topology=topology/shop.toml
state=$(mktemp -d /tmp/troupe-disk-XXXXXX)
logs=$(mktemp -d /tmp/troupe-disk-logs-XXXXXX)
if ! mount -t tmpfs -o size=64m tmpfs "$state" 2>"$logs/mount.err"; then
  echo "skip: cannot mount a tmpfs here ($(cat "$logs/mount.err")); the disk-full test needs root"
  rm -rf "$state" "$logs"
  exit 77
fi
mesh=(scripts/mesh --topology "$topology" --state-dir "$state")
troupe=("$TROUPE_BUILD_DIR/troupe")
args=(--topology "$topology" --state-dir "$state")
services=$("${troupe[@]}" check "${args[@]}" --list)
# Logs go to the real disk, so the services can still tell what happened.
for s in $services; do ln -s "$logs/$s.log" "$state/$s.log"; done
source tests/support/checks.sh
finish() {
  "${mesh[@]}" down >/dev/null 2>&1
  umount "$state" 2>/dev/null
  rm -rf "$state" "$logs"
}
trap finish EXIT
health() { "${troupe[@]}" query "${args[@]}" --timeout 1000 "$1" '$health' 2>/dev/null; }

check "mesh comes up on a 64 MiB tmpfs" "${mesh[@]}" up
"${troupe[@]}" shop load "${args[@]}" --orders 1500 --rate 150 --seed 21 --wait 120 --quiet --json >"$logs/load.json" 2>"$logs/load.err" &
load=$!
orders_head() { health orders | json '.head'; }
under_way() { local h; h=$(orders_head); [[ -n $h ]] && ((h > 100)); }
wait_for 20 "the load is under way" under_way

# Fill the disk. dd stops at ENOSPC; every store's next write fails.
dd if=/dev/zero of="$state/filler" bs=64k status=none 2>/dev/null
echo "tmpfs full: $(df -h --output=used,size "$state" | tail -1)"
degraded() { health "$1" | json_is '.state == "degraded" and has("store_error")'; }
# orders takes the load's PlaceOrders: it is the first whose writes fail.
wait_for 20 "orders reports the failing store in \$health (degraded, store_error)" degraded orders
echo "orders \$health: $(health orders | json '{store_error}' -c)"
check "a service's own query is answered while its store fails" \
  bash -c 'set -o pipefail; "$@" | jq -e -s "length == 1 and (.[0] | has(\"orders\"))" >/dev/null' _ "${troupe[@]}" query "${args[@]}" orders ListOrders '{"limit":1}'
head1=$(orders_head)
# The fault lasts a few seconds (a schedule, not a wait for a condition).
sleep 3
head2=$(orders_head)
check "orders accepts nothing while writes fail: its head stays put ($head1 → $head2)" test "$head1" == "$head2"
check "the load was still sending (it resends what was not acknowledged)" kill -0 "$load"
# A full disk is not all-or-nothing (a write that fits in pages SQLite already has can
# still commit), so failure and recovery may alternate; each failure is logged once per
# episode — after a recovery — never per message or per failed batch.
errors=$(grep -c 'not acknowledging it' "$logs/orders.log")
resumed=$(grep -c 'store writes work again' "$logs/orders.log")
failed=$("${troupe[@]}" query "${args[@]}" orders '$metrics' | json '.store_failures')
check "the failure is logged once per episode ($errors logged, $resumed recoveries, ${failed:-?} failed batches)" \
  test "$errors" -ge 1 -a "$errors" -le $((resumed + 1)) -a "$errors" -le 10 -a "${failed:-0}" -ge "$errors"

rm -f "$state/filler"
echo "space freed"
ready() { health "$1" | json_is '.state == "ready"'; }
for s in $services; do wait_for 30 "$s resumes by itself once space is free" ready "$s"; done
check "the resumption is logged" grep -q "store writes work again; resuming" "$logs/orders.log"

wait "$load"
load_rc=$?
load_line <"$logs/load.json"
check "the load ends with every order ended (exit $load_rc)" test "$load_rc" -eq 0
check "1,500 orders placed, none stuck" json_is '.orders == 1500 and .stuck == 0' <"$logs/load.json"
check "invariants hold after the disk fault" "${troupe[@]}" shop verify "${args[@]}"

echo "disk-full test: $failures failure(s)"
exit $((failures > 0))
