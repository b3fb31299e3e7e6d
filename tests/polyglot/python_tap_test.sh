#!/usr/bin/env bash
# The Python tap (examples/python/tap.py, written from docs/protocol.md alone) decodes
# live events of a running shop: every order we place shows up with the right fields.
# Usage: python_tap_test.sh SOURCE_ROOT BUILD_ROOT
set -uo pipefail
cd "$1"
export TROUPE_BUILD_DIR=$2
state=$(mktemp -d /tmp/troupe-pytap-XXXXXX)
mesh=(scripts/mesh --state-dir "$state")
trap '"${mesh[@]}" down >/dev/null 2>&1; rm -rf "$state"' EXIT
"${mesh[@]}" up >/dev/null || exit 1
/usr/bin/python3 examples/python/tap.py --state-dir "$state" --json --seconds 20 --limit 12 >"$state/tap.out" &
tap=$!
# Place orders until the tap has seen events (its subscription takes a moment to attach).
for i in $(seq 1 40); do
  "$TROUPE_BUILD_DIR/troupe" send --state-dir "$state" orders PlaceOrder \
    "{\"order_id\":\"py-$i\",\"customer\":\"alice\",\"sku\":\"KB-101\",\"quantity\":2}" >/dev/null
  kill -0 "$tap" 2>/dev/null || break  # the tap has seen its 12 events
  sleep 0.1
done
wait "$tap"
source tests/support/checks.sh  # json_any; its check is replaced by one that evals a string
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; failures=$((failures + 1)); fi; }
head -3 "$state/tap.out"
check "the Python tap decoded events" "[[ \$(wc -l <'$state/tap.out') -ge 5 ]]"
check "OrderPlaced decoded with its payload" "json_any '.type == \"OrderPlaced\" and (.data.order_id | test(\"^py-[0-9]+\$\")) and (.data | del(.order_id)) == {customer: \"alice\", sku: \"KB-101\", quantity: 2, amount: 9800}' '$state/tap.out'"
check "events of other services decoded" "json_any '.source == \"payments\"' '$state/tap.out'"
check "sequences are integers" "json_any '.sequence | type == \"number\" and . == floor' '$state/tap.out'"
check "the routing vectors of docs/protocol.md §7.10 hold in Python" "/usr/bin/python3 examples/python/tap.py --check-routing docs/protocol.md"
echo "python tap: $failures failure(s)"
exit $((failures > 0))
