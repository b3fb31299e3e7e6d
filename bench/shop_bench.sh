#!/usr/bin/env bash
# shop_bench: the shop saga through all five services, one process per service over
# ipc (durable, synchronous=FULL, as topology/shop.toml says): sustained orders/s (as
# fast as the load driver can send) and p50/p99 end-to-end latency at a fixed
# 1,000 orders/s. scripts/bench also runs it on a memory-mode copy of the topology.
#   bench/shop_bench.sh BUILD_DIR [ORDERS [ORDERS_AT_1000/S [TOPOLOGY]]]
set -euo pipefail
cd "$(dirname "$0")/.."
export TROUPE_BUILD_DIR=${1:-build}
orders=${2:-5000}
rate_orders=${3:-$orders}
topology=${4:-topology/shop.toml}
state=$(mktemp -d /tmp/troupe-shop-bench-XXXXXX)
mesh=(scripts/mesh --topology "$topology" --state-dir "$state")
trap '"${mesh[@]}" down >/dev/null 2>&1; rm -rf "$state"' EXIT
"${mesh[@]}" up >/dev/null
troupe=("$TROUPE_BUILD_DIR/troupe" load --topology "$topology" --state-dir "$state" --quiet --cancel-ratio 0.1)
echo "shop_bench: sustained, $orders orders as fast as they can be sent" >&2
"${troupe[@]}" --orders "$orders" --rate 0 --seed 1 | sed 's/^/  sustained: /'
echo "shop_bench: fixed rate, $rate_orders orders at 1000/s" >&2
"${troupe[@]}" --orders "$rate_orders" --rate 1000 --seed 2 | sed 's/^/  at 1000\/s: /'
