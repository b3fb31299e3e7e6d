#!/usr/bin/env bash
# footprint: stripped binary sizes, idle RSS, PSS and USS per service process and of
# shop-edge, and the time from exec to every service answering $health. PSS divides
# each shared page among the processes mapping it; USS counts only the process's own
# pages (Private_Clean + Private_Dirty + Private_Hugetlb), what stopping it would give back.
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
pss() { awk '/^Pss:/ {print $2 / 1024}' "/proc/$1/smaps_rollup"; }
uss() { awk '/^Private_(Clean|Dirty|Hugetlb):/ {kb += $2} END {print kb / 1024}' "/proc/$1/smaps_rollup"; }
memory() {  # label pid
  printf "%-34s %8.1f MB\n" "idle RSS: $1" "$(rss "$2")"
  printf "%-34s %8.2f MB\n" "idle PSS: $1" "$(pss "$2")"
  printf "%-34s %8.2f MB\n" "idle USS: $1" "$(uss "$2")"
}

ms=$(ready topology/shop.toml "$tmp/mesh")
printf "%-34s %8d ms (includes the script's own polling)\n" "ready: 5 processes" "$ms"
for s in orders inventory payments shipping notifications; do
  memory "$s" "$(cat "$tmp/mesh/$s.pid")"
done
ms=$(ready topology/shop-edge.toml "$tmp/edge")
printf "%-34s %8d ms\n" "ready: shop-edge (1 process)" "$ms"
memory "shop-edge (5 services)" "$(cat "$tmp/edge/shop-edge.pid")"
