#!/usr/bin/env bash
# gateway_bench: commands taken per second and their p99, through the HTTP gateway
# (wrk, CONNECTIONS connections, every request a new PlaceOrder with its own
# Idempotency-Key, answered 202 once orders confirms it) against the same commands
# sent by troupe::Client directly (bench/client_bench, CONNECTIONS threads), on one
# durable shop mesh, alternating, in the same invocation. Prints a `direct:` and a
# `gateway:` line per round. scripts/bench runs it.
#   bench/gateway_bench.sh BUILD_DIR [SECONDS [CONNECTIONS [ROUNDS]]]
set -euo pipefail
cd "$(dirname "$0")/.."
export TROUPE_BUILD_DIR=${1:-build}
seconds=${2:-10}
connections=${3:-8}
rounds=${4:-1}
command -v wrk >/dev/null || { echo "gateway_bench: wrk is not installed (scripts/bootstrap)" >&2; exit 1; }
state=$(mktemp -d /tmp/troupe-gateway-bench-XXXXXX)
mesh=(scripts/mesh --state-dir "$state")
trap '"${mesh[@]}" down >/dev/null 2>&1; rm -rf "$state"' EXIT
"${mesh[@]}" up >/dev/null
"${mesh[@]}" gateway --listen 127.0.0.1:0 --sse-clients 1 >/dev/null
url=$(cat "$state/gateway.url")
run=$RANDOM
for ((r = 1; r <= rounds; r++)); do
  echo "gateway_bench: round $r/$rounds, $seconds s each, $connections at a time" >&2
  "$TROUPE_BUILD_DIR/bench/client_bench" topology/shop.toml "$state" "$seconds" "$connections" "d$run-$r"
  wrk -t 2 -c "$connections" -d "${seconds}s" --timeout 10s -s bench/gateway_wrk.lua "$url" -- "g$run-$r" |
    grep '^gateway:'
done
