#!/usr/bin/env bash
# A rolling upgrade under load: while `troupe shop load` drives the shop, each service in
# turn is replaced by its version-2 build (tests/upgrade: one more optional field in a
# message, a higher schemaversion), through scripts/upgrade, which checks each build's
# contract against the running mesh first. Version 1 reads version 2 and back.
# Halfway, a mistaken build of inventory (the new field read with the wrong type) is
# caught by that check; deployed anyway (--force), it refuses the new OrderPlaced
# events into dead letters whose reason names the field and both schema versions, and
# loses nothing else: once the good build replaces it, `troupe deadletters retry --all`
# brings the shop back to `troupe shop verify` OK, with no dead letter left.
# Usage: rolling_upgrade_test.sh SOURCE_ROOT BUILD_ROOT
set -uo pipefail
src=$1
export TROUPE_BUILD_DIR=$2
cd "$src"
source tests/support/checks.sh
state=$(mktemp -d /tmp/troupe-upgrade-XXXXXX)
topology=topology/shop.toml
mesh=(scripts/mesh --topology "$topology" --state-dir "$state")
args=(--topology "$topology" --state-dir "$state")
troupe=("$TROUPE_BUILD_DIR/troupe")
v2=$TROUPE_BUILD_DIR/tests/upgrade
load_pid=""
finish() {
  [[ -n $load_pid ]] && kill "$load_pid" 2>/dev/null
  "${mesh[@]}" down >/dev/null 2>&1
  rm -rf "$state"
}
trap finish EXIT

orders_count() {  # every order orders knows, page by page
  /usr/bin/python3 - "${troupe[@]}" "${args[@]}" <<'PY'
import json, subprocess, sys
cmd, after, n = sys.argv[1:], "", 0
while True:
    out = subprocess.run(cmd[:1] + ["query"] + cmd[1:] + ["orders", "ListOrders", json.dumps({"after": after})],
                         capture_output=True, text=True, check=True).stdout
    page = json.loads(out)["orders"]
    if not page:
        break
    n += len(page)
    after = page[-1]["order_id"]
print(n)
PY
}

check "the shop comes up at version 1" "${mesh[@]}" up
"${troupe[@]}" asyncapi "${args[@]}" --mesh --json -o "$state/v1.asyncapi.json"

# 30 s of orders: the upgrades take about 20 s here, and each must run while orders flow.
"${troupe[@]}" shop load "${args[@]}" --orders 4500 --rate 150 --seed 21 --quiet --json --wait 120 >"$state/load.json" 2>"$state/load.err" &
load_pid=$!
deadline=$((SECONDS + 20))
until (( $(orders_count) >= 50 )) || ((SECONDS > deadline)); do sleep 0.2; done
before=$(orders_count)
check "the load is under way ($before orders)" test "$before" -ge 50

check "orders -> version 2" scripts/upgrade "${args[@]}" orders "$v2/orders-v2"

# The mistaken build: caught before deployment...
out=$(scripts/upgrade "${args[@]}" --check inventory "$v2/inventory-v2-retyped" 2>&1); code=$?
echo "$out" | grep -E "BREAKING|breaks" | head -4
check "troupe compat catches the retyped field before deployment (exit 1)" test "$code" = 1
check "... naming the event, the field and who breaks" \
  grep -q "BREAKING event OrderPlaced of orders: field 'channel': written as string, read as integer (int64)" <<<"$out"
# ... and deployed anyway: the new OrderPlaced events go to dead letters, saying why.
check "deployed anyway with --force" scripts/upgrade "${args[@]}" --force inventory "$v2/inventory-v2-retyped"
reason="field 'channel': expected integer, got string (sent as schemaversion 2 by orders; inventory 0.1.0 reads schemaversion 2)"
wait_for 20 "it refuses the new OrderPlaced into dead letters naming the field and both versions" \
  bash -c '"$@" | grep -qF "$0"' "$reason" "${troupe[@]}" deadletters "${args[@]}" list inventory
check "the good build of inventory passes the check and replaces it" scripts/upgrade "${args[@]}" inventory "$v2/inventory-v2"
out=$("${troupe[@]}" deadletters "${args[@]}" retry inventory --all)
echo "$out"
check "troupe deadletters retry --all: every refused OrderPlaced is handled now" grep -q " 0 refused again" <<<"$out"

for s in payments shipping notifications; do
  at=$(orders_count)
  check "$s -> version 2" scripts/upgrade "${args[@]}" "$s" "$v2/$s-v2"
  # Under load, not after it: orders were placed while this one was replaced.
  check "... while orders flowed ($at -> $(orders_count) placed)" test "$(orders_count)" -gt "$at"
done
after=$(orders_count)
echo "orders placed while the services were upgraded: $((after - before))"
check "at least 1,000 orders placed during the upgrades" test $((after - before)) -ge 1000

wait "$load_pid"; code=$?
load_pid=""
load_line <"$state/load.json"
check "every order ended (troupe shop load exit 0)" test "$code" = 0
check "the shop's invariants hold" "${troupe[@]}" shop verify "${args[@]}"
# A one-shot client's commands are not ordered across a service's replacement: a
# CancelOrder the load sends right after its PlaceOrder can reach the new orders first
# and be refused ("no order"), its PlaceOrder resent after it (every order ended, so
# it was). Those letters are that race, counted; any other letter fails the test.
raced='[.letters[] | select(.type == "CancelOrder" and (.reason | startswith("CancelOrder: no order ")))] | length'
for s in orders inventory payments shipping notifications; do
  letters=$("${troupe[@]}" deadletters "${args[@]}" list "$s" --json 2>&1)
  check "no dead letter left in $s ($(json "$raced" <<<"$letters") cancellation(s) that raced their order across a replacement)" \
    json_is ".count == ($raced)" <<<"$letters" || json '.letters[:5][] | "\(.type): \(.reason)"' <<<"$letters"
done
"${troupe[@]}" asyncapi "${args[@]}" --mesh --json -o "$state/v2.asyncapi.json"
check "version 2 everywhere is compatible with version 1 both ways (troupe compat --mode full)" \
  "${troupe[@]}" compat "$state/v1.asyncapi.json" "$state/v2.asyncapi.json"
check "... and the mesh now speaks schemaversion 2 of OrderPlaced" \
  jq -e -s 'length == 1 and ([.[0].components.messages[] | select(.title == "OrderPlaced") | .["x-troupe-schemaversion"]] | length > 0 and all(. == 2))' \
  "$state/v2.asyncapi.json"

echo "$failures failure(s)"
((failures == 0))
