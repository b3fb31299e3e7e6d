#!/usr/bin/env bash
# The shop's AsyncAPI document: the committed one is what the services' builds say
# (stale otherwise); the AsyncAPI project's parser finds no error in it and does find
# the planted ones; troupe compat reads it back, finds a retyped field and a removed
# event, and finds nothing between a document and itself.
# Usage: asyncapi_test.sh SOURCE_ROOT BUILD_ROOT
set -uo pipefail
src=$1
build=$2
cd "$src"
source tests/support/checks.sh
work=$(mktemp -d /tmp/troupe-asyncapi-XXXXXX)
trap 'rm -rf "$work"' EXIT
troupe=("$build/troupe")
validate=(node tools/asyncapi/validate.cjs)

check "docs/shop.asyncapi.yaml is what the services' builds speak" scripts/asyncapi --check --build "$build"

out=$("${validate[@]}" docs/shop.asyncapi.yaml)
echo "$out" | tail -1
check "the parser finds no error in the committed document" grep -q "; 0 error(s)" <<<"$out"
check "it covers the shop's 24 message types" grep -q "24 messages" <<<"$out"

# The parser must catch what a broken writer would produce.
sed 's|#/components/messages/PlaceOrder"|#/components/messages/NoSuchMessage"|' docs/shop.asyncapi.yaml >"$work/bad-ref.yaml"
sed 's|action: "receive"|action: "listen"|' docs/shop.asyncapi.yaml >"$work/bad-action.yaml"
for bad in bad-ref bad-action; do
  # exit 1 is "errors found"; 2 would be "parser not installed", which proves nothing
  check "the parser rejects a planted $bad" bash -c '"$@" >"$0.out" 2>&1; test $? = 1 && grep -q "^error " "$0.out"' \
    "$work/$bad" "${validate[@]}" "$work/$bad.yaml"
done

for s in orders inventory payments shipping notifications; do "$build/services/$s" --contract >"$work/$s.json"; done
"${troupe[@]}" asyncapi --contracts "$work"/{orders,inventory,payments,shipping,notifications}.json --json -o "$work/v1.json"
check "troupe compat: a document is compatible with itself" "${troupe[@]}" compat "$work/v1.json" "$work/v1.json"

# v2 of orders retypes OrderPlaced.quantity: inventory (which reads it) breaks.
/usr/bin/python3 - "$work/v1.json" "$work/retyped.json" "$work/removed.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
m = doc["components"]["messages"]["OrderPlaced"]
m["payload"]["properties"]["quantity"] = {"type": "string"}
m["x-troupe-schemaversion"] = 2
json.dump(doc, open(sys.argv[2], "w"))
doc = json.load(open(sys.argv[1]))
del doc["operations"]["orders-send-OrderCancelled"]
json.dump(doc, open(sys.argv[3], "w"))
PY
out=$("${troupe[@]}" compat "$work/v1.json" "$work/retyped.json"); code=$?
echo "$out"
check "a retyped field: exit 1" test "$code" = 1
check "... naming the event, the field, both versions and who reads it" \
  grep -q "event OrderPlaced of orders: field 'quantity': written as string, read as integer (int64) (written by the new build schemaversion 2, read by the old schemaversion 1)" <<<"$out"
check "... inventory among those it breaks" grep -q "breaks inventory (old build) reads it" <<<"$out"
out=$("${troupe[@]}" compat --json "$work/v1.json" "$work/removed.json"); code=$?
check "a removed event that four services react to: exit 1, one finding for each" \
  /usr/bin/python3 -c '
import json, sys
r = json.loads(sys.argv[1])
whom = sorted(f["whom"] for f in r["breaking"])
want = [s + " reacts to it" for s in ("inventory", "notifications", "payments", "shipping")]
sys.exit(0 if sys.argv[2] == "1" and not r["compatible"] and whom == want else 1)' "$out" "$code"
check "compat with a file that is not JSON says so (exit 2)" bash -c '"$@" docs/shop.asyncapi.yaml "$0"; test $? = 2' "$work/v1.json" "${troupe[@]}" compat

echo "$failures failure(s)"
((failures == 0))
