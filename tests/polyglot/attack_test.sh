#!/usr/bin/env bash
# One admitted low-privilege client (storefront) attacks a running shop under CURVE
# (attack_test.py: poison, mirror bypass, forged sources, huge subscriptions and
# messages, dead-letter flood, query flood, ipc takeover, file modes), on one mesh.
# The topology is the shop as it ships plus what the attacks need: payments may send
# PlaceOrder to orders (so a forged sequenced stream has a receiver), PlaceOrder,
# OrderPlaced and StockReserved fields up to 1 MiB (so the poison reaches payments),
# and at most 1,000 dead letters (storefront ships limited to 20 queries and 100
# commands a second).
# Usage: attack_test.sh SOURCE_ROOT BUILD_ROOT [FRAMES]
set -uo pipefail
cd "$1"
export TROUPE_BUILD_DIR=$2
work=$(mktemp -d /tmp/troupe-attack-XXXXXX)
state=$work/state  # made by the mesh: its mode is the mesh's doing
mesh=(scripts/mesh --topology "$work/shop.toml" --state-dir "$state")
finish() {
  "${mesh[@]}" down >/dev/null 2>&1
  rm -rf "$work"
}
trap finish EXIT
failures=0
sed '/^\[services\.payments\]/a sends = { orders = ["PlaceOrder"] }' topology/shop.toml >"$work/plain.toml"
{
  sed -e '/^\[mesh\]/a max_dead_letters = 1000' "$work/plain.toml"
  for type in PlaceOrder OrderPlaced StockReserved; do
    printf '\n[limits.%s]\nmax_field_bytes = 1048576\n' "$type"
  done
} >"$work/shop.toml"
if ! "${mesh[@]}" up >"$work/up.out" 2>&1; then
  # Say so, and still run every attack on what loads (without the new keys): each
  # shows what it finds.
  echo "FAIL: a mesh with [limits.*], max_dead_letters and per-client rates comes up"
  grep -v '^keygen' "$work/up.out" | tail -2
  failures=1
  "${mesh[@]}" down >/dev/null 2>&1
  grep -Ev '^(queries|commands)_per_second' "$work/plain.toml" >"$work/shop.toml"
  "${mesh[@]}" up >"$work/up.out" 2>&1 || { cat "$work/up.out"; exit 1; }
fi
/usr/bin/python3 tests/polyglot/attack_test.py --build "$2" --topology "$work/shop.toml" --state-dir "$state" \
  --work "$work" --frames "${3:-200}"
status=$?
if ((status != 0)); then
  for log in "$state"/*.log; do echo "--- $log"; tail -n 6 "$log" | cut -c1-300; done
fi
exit $((status != 0 || failures != 0))
