#!/usr/bin/env bash
# shop_bench: the shop saga through all five services, one process per service over
# ipc (durable, synchronous=FULL, as topology/shop.toml says): sustained orders/s (as
# fast as the load driver can send) and p50/p99 end-to-end latency at a fixed
# 1,000 orders/s. scripts/bench also runs it on a memory-mode copy of the topology.
# Prints one JSON object: {"sustained": LOAD, "cpu": {PROCESS: % of a core over the
# sustained run}, "at_1000": LOAD}, LOAD being what `troupe shop load --json` prints;
# progress goes to stderr.
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
at_1000=$("${troupe[@]}" --orders "$rate_orders" --rate 1000 --seed 2) || rc=1
jq -n --argjson sustained "${sustained:-null}" --argjson cpu "$cpu" --argjson at_1000 "${at_1000:-null}" \
  '{sustained: $sustained, cpu: $cpu, at_1000: $at_1000}'
exit "$rc"
