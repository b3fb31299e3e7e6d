#!/usr/bin/env bash
# Garbage on every endpoint of a running shop while orders flow (garbage_test.py): no
# service dies, every rejection is counted and kept, the load completes and `troupe shop
# verify` holds. Seeded: TROUPE_GARBAGE_SEED (default 1) reproduces a run.
# Usage: garbage_test.sh SOURCE_ROOT BUILD_ROOT [TOPOLOGY]
set -uo pipefail
cd "$1"
export TROUPE_BUILD_DIR=$2
topology=${3:-topology/shop.toml}
state=$(mktemp -d /tmp/troupe-garbage-XXXXXX)
mesh=(scripts/mesh --topology "$topology" --state-dir "$state")
trap '"${mesh[@]}" down >/dev/null 2>&1; rm -rf "$state"' EXIT
"${mesh[@]}" up >/dev/null || exit 1
/usr/bin/python3 tests/polyglot/garbage_test.py --build "$2" --topology "$topology" --state-dir "$state" \
  --seed "${TROUPE_GARBAGE_SEED:-1}"
status=$?
if ((status != 0)); then
  for log in "$state"/*.log; do echo "--- $log"; tail -n 8 "$log"; done
fi
exit $status
