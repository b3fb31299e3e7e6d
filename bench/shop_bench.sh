#!/usr/bin/env bash
# shop_bench: the shop saga through all five services, durable (synchronous=FULL), one
# process per service over ipc: sustained orders/s (as fast as the load driver can
# send) and p50/p99 end-to-end latency at a fixed 1,000 orders/s.
#   bench/shop_bench.sh BUILD_DIR [ORDERS]
set -euo pipefail
cd "$(dirname "$0")/.."
export TROUPE_BUILD_DIR=${1:-build}
orders=${2:-5000}
state=$(mktemp -d /tmp/troupe-shop-bench-XXXXXX)
mesh=(scripts/mesh --state-dir "$state")
trap '"${mesh[@]}" down >/dev/null 2>&1; rm -rf "$state"' EXIT
"${mesh[@]}" up >/dev/null
troupe=("$TROUPE_BUILD_DIR/troupe" load --state-dir "$state" --quiet --cancel-ratio 0.1)
echo "shop_bench: sustained, $orders orders as fast as they can be sent" >&2
"${troupe[@]}" --orders "$orders" --rate 0 --seed 1 | sed 's/^/  sustained: /'
echo "shop_bench: fixed rate, $orders orders at 1000/s" >&2
"${troupe[@]}" --orders "$orders" --rate 1000 --seed 2 | sed 's/^/  at 1000\/s: /'
