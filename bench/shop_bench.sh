#!/usr/bin/env bash
# shop_bench: the shop saga through all five services, one process per service over
# ipc (durable, synchronous=FULL, as topology/shop.toml says): sustained orders/s (as
# fast as the load driver can send) and p50/p99 end-to-end latency at a fixed
# 1,000 orders/s. scripts/bench also runs it on a memory-mode copy of the topology.
# Prints one JSON object: {"sustained": LOAD, "cpu": {PROCESS: % of a core over the
# sustained run}, "at_1000": LOAD, "split": {PROCESS: {"queue", "handling", "commit",
# "relay", "batch": {"mean_us", "p99_us"}}}, "hops": HOPS}, LOAD being what `troupe shop
# load --json` prints; "split" is each process's $metrics over the fixed-rate run alone
# (queue_us, the handlers' latency_us, store_commit_us, relay_us, commit_us: a whole
# batch); HOPS is what a second fixed-rate load of half as many orders with --hops says
# (where each hop's time goes: a pass of its own, because following every service makes
# the load driver read five times the events); progress goes to stderr.
# --hosts (needs root): every process on a host of its own, a network namespace on one
# bridge (scripts/lib/hosts.bash), over tcp: TOPOLOGY must bind tcp on 127.0.0.1, like
# topology/shop-tcp.toml; the load driver runs in the root namespace. Exits 77 when
# network namespaces cannot be made here.
#   bench/shop_bench.sh [--hosts] BUILD_DIR [ORDERS [ORDERS_AT_1000/S [TOPOLOGY]]]
set -euo pipefail
cd "$(dirname "$0")/.."
hosts=0
[[ ${1:-} == --hosts ]] && { hosts=1; shift; }
export TROUPE_BUILD_DIR=${1:-build}
orders=${2:-5000}
rate_orders=${3:-$orders}
topology=${4:-topology/shop.toml}
state=$(mktemp -d /tmp/troupe-shop-bench-XXXXXX)
mesh=(scripts/mesh --topology "$topology" --state-dir "$state")
hosts_who=shop_bench
source scripts/lib/hosts.bash
trap '"${mesh[@]}" down >/dev/null 2>&1 || true; hosts_down; rm -rf "$state"' EXIT
if ((hosts)); then
  read -r -a names <<<"$("$TROUPE_BUILD_DIR/troupe" check --topology "$topology" --list | tr '\n' ' ')"
  rc=0
  hosts_up "${names[@]}" || rc=$?
  ((rc == 0)) || exit "$rc"
  hosts_topology "$topology" "$state/hosts.toml"
  topology=$state/hosts.toml
  mesh=(env "TROUPE_MESH_WRAP=$(hosts_wrap)" scripts/mesh --topology "$topology" --state-dir "$state")
  echo "shop_bench: ${#names[@]} hosts in $net.0/24" >&2
fi
"${mesh[@]}" up >/dev/null
troupe=("$TROUPE_BUILD_DIR/troupe" shop load --topology "$topology" --state-dir "$state" --quiet --json --cancel-ratio 0.1)
echo "shop_bench: sustained, $orders orders as fast as they can be sent" >&2
# Each process's CPU over the sustained run (utime + stime from /proc, in clock ticks),
# as a share of one core: where a 2-core machine saturates, and which process first.
ticks() { local p; for f in "$state"/*.pid; do p=$(cat "$f"); echo "$(basename "$f" .pid) $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)"; done; }
before=$(ticks)
t0=$(date +%s.%N)
rc=0
sustained=$("${troupe[@]}" --orders "$orders" --rate 0 --seed 1) || rc=1
t1=$(date +%s.%N)
after=$(ticks)
hz=$(getconf CLK_TCK)
cpu=$(join <(sort <<<"$before") <(sort <<<"$after") |
  awk -v hz="$hz" -v dt="$(echo "$t1 - $t0" | awk '{print $1 - $3}')" '{ printf "%s %.1f\n", $1, 100 * ($3 - $2) / hz / dt }' |
  jq -R -s 'split("\n") | map(select(length > 0) | split(" ") | {(.[0]): (.[1] | tonumber)}) | add // {}')
echo "shop_bench: fixed rate, $rate_orders orders at 1000/s" >&2
metrics() { "$TROUPE_BUILD_DIR/troupe" metrics --topology "$topology" --state-dir "$state" --json 2>/dev/null || echo '{}'; }
m0=$(metrics)
at_1000=$("${troupe[@]}" --orders "$rate_orders" --rate 1000 --seed 2) || rc=1
m1=$(metrics)
# Each histogram over the fixed-rate run alone (after minus before), as a mean and the
# bucket bound under which 99 % fall; handling merges the handlers of every type.
split=$(jq -n --argjson a "$m0" --argjson b "$m1" '
  def diff(x; y): x as $x | y as $y | {count: (($y.count // 0) - ($x.count // 0)), sum: (($y.sum // 0) - ($x.sum // 0)),
    buckets: [range(0; ($y.buckets // []) | length) as $i | [$y.buckets[$i][0], ($y.buckets[$i][1] - (($x.buckets // [])[$i][1] // 0))]]};
  def handlers(m): reduce ((m.types // {}) | to_entries[] | select(.key | startswith("$") | not) | .value.latency_us) as $h
    ({count: 0, sum: 0, buckets: []}; {count: (.count + $h.count), sum: (.sum + $h.sum),
      buckets: (if (.buckets | length) == 0 then $h.buckets
                else [range(0; $h.buckets | length) as $i | [$h.buckets[$i][0], (.buckets[$i][1] + $h.buckets[$i][1])]] end)});
  def summary(h): h as $h | if $h.count > 0 then {mean_us: ($h.sum / $h.count),
    p99_us: first(foreach $h.buckets[] as $x (0; . + $x[1]; if . >= 0.99 * $h.count then $x[0] else empty end))} else null end;
  $b | to_entries | map(.key as $s | {($s): {queue: summary(diff($a[$s].queue_us; .value.queue_us)),
    handling: summary(diff(handlers($a[$s]); handlers(.value))), commit: summary(diff($a[$s].store_commit_us; .value.store_commit_us)),
    relay: summary(diff($a[$s].relay_us; .value.relay_us)), batch: summary(diff($a[$s].commit_us; .value.commit_us))}}) | add // {}') ||
  split='{}'
hop_orders=$((rate_orders / 2 > 200 ? rate_orders / 2 : 200))
echo "shop_bench: where the time goes, $hop_orders orders at 1000/s with --hops" >&2
hops=$("${troupe[@]}" --orders "$hop_orders" --rate 1000 --seed 3 --hops) || rc=1
jq -n --argjson sustained "${sustained:-null}" --argjson cpu "$cpu" --argjson at_1000 "${at_1000:-null}" \
  --argjson split "${split:-{\}}" --argjson hops "${hops:-null}" \
  '{sustained: $sustained, cpu: $cpu, at_1000: $at_1000, split: $split, hops: ($hops.hops // null)}'
exit "$rc"
