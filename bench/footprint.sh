#!/usr/bin/env bash
# footprint: stripped binary sizes, idle RSS per service process and of shop-edge, and
# the time from exec to every service answering $health.
#   bench/footprint.sh BUILD_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
export TROUPE_BUILD_DIR=$build
tmp=$(mktemp -d /tmp/troupe-footprint-XXXXXX)
trap 'scripts/mesh --state-dir "$tmp/mesh" down >/dev/null 2>&1; scripts/mesh --topology topology/shop-edge.toml --state-dir "$tmp/edge" down >/dev/null 2>&1; rm -rf "$tmp"' EXIT
for b in orders shop-edge; do
  strip -o "$tmp/$b" "$build/services/$b"
  printf "%-34s %8.2f MB\n" "stripped size: $b" "$(echo "$(stat -c %s "$tmp/$b") / 1048576" | bc -l)"
done
strip -o "$tmp/troupe" "$build/troupe"
printf "%-34s %8.2f MB\n" "stripped size: troupe (CLI)" "$(echo "$(stat -c %s "$tmp/troupe") / 1048576" | bc -l)"

ready() {  # topology state -> ms from exec of `mesh up` to every service healthy
  local t0 t1
  t0=$(date +%s%N)
  scripts/mesh --topology "$1" --state-dir "$2" up >/dev/null
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000000))
}
rss() { awk '/VmRSS/ {print $2 / 1024}' "/proc/$1/status"; }

ms=$(ready topology/shop.toml "$tmp/mesh")
printf "%-34s %8d ms (includes the script's own polling)\n" "ready: 5 processes" "$ms"
for s in orders inventory payments shipping notifications; do
  printf "%-34s %8.1f MB\n" "idle RSS: $s" "$(rss "$(cat "$tmp/mesh/$s.pid")")"
done
ms=$(ready topology/shop-edge.toml "$tmp/edge")
printf "%-34s %8d ms\n" "ready: shop-edge (1 process)" "$ms"
printf "%-34s %8.1f MB\n" "idle RSS: shop-edge (5 services)" "$(rss "$(cat "$tmp/edge/shop-edge.pid")")"
