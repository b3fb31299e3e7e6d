#!/usr/bin/env bash
# The partitioned shop (topology/shop-partitioned.toml: orders ×3 by order_id, inventory
# ×2 by sku) under the tools, one running mesh for all: every instance holds only the
# keys it owns (checked against the routing rule computed in Python), misrouted
# commands and queries are refused naming the owner, each CLI command understands
# instances, one partition down leaves the others serving, and a store written under
# another partition count is refused. Shipping runs as the Python service
# (services/shipping-py), so the second language follows partitioned publishers too.
# Usage: partitions_test.sh SOURCE_ROOT BUILD_ROOT
set -uo pipefail
cd "$1"
export TROUPE_BUILD_DIR=$2
topology=topology/shop-partitioned.toml
state=$(mktemp -d /tmp/troupe-partitions-XXXXXX)
troupe=("$2/troupe")
args=(--topology "$topology" --state-dir "$state")
mesh=(scripts/mesh "${args[@]}" --exec shipping=services/shipping-py/shipping.py)
tap_pid=
finish() {
  [[ -n $tap_pid ]] && kill "$tap_pid" 2>/dev/null
  "${mesh[@]}" down >/dev/null 2>&1
  rm -rf "$state"
}
trap finish EXIT
source tests/support/checks.sh
py=/usr/bin/python3
owner() {  # key, count -> the instance that owns it (docs/protocol.md §7.10, in Python)
  $py -c 'import sys; sys.path.insert(0, "examples/python"); import tap; print(tap.partition_of(sys.argv[1].encode(), int(sys.argv[2])))' "$1" "$2"
}

check "the mesh comes up: one process per instance" "${mesh[@]}" up
check "one key pair per instance, none for the declared service" \
  bash -c 'test -f "$0/keys/orders.2.key" -a -f "$0/keys/inventory.1.key" -a ! -e "$0/keys/orders.key"' "$state"
"${troupe[@]}" tap "${args[@]}" --service orders --json --seconds 60 >"$state/tap.out" 2>/dev/null &
tap_pid=$!
$py examples/python/tap.py "${args[@]}" --json --seconds 60 --limit 400 >"$state/pytap.out" 2>"$state/pytap.err" &
pytap=$!
# Both taps are subscribed once orders' instances count them (with a deadline).
taps_on_every_orders() {
  local k n
  for k in 0 1 2; do
    n=$("${troupe[@]}" query "${args[@]}" "orders.$k" '$metrics' | json '.taps')
    ((${n:-0} >= 2)) || return 1
  done
}
wait_for 15 "both taps are subscribed to every orders instance" taps_on_every_orders

out=$("${troupe[@]}" shop load "${args[@]}" --orders 300 --rate 0 --seed 11 --quiet --json --wait 60)
load_line <<<"$out"
check "300 orders all end" json_is '.orders == 300 and .stuck == 0' <<<"$out"
check "troupe shop verify: invariants hold over the instances" "${troupe[@]}" shop verify "${args[@]}"

# Every instance holds exactly the keys it owns.
for k in 0 1 2; do
  "${troupe[@]}" query "${args[@]}" "orders.$k" ListOrders '{"limit":1000}' >"$state/orders.$k.json"
done
for k in 0 1; do
  "${troupe[@]}" query "${args[@]}" "inventory.$k" GetStock '{"limit":1000}' >"$state/inventory.$k.json"
done
check "each orders instance holds orders, and only those whose order_id it owns" $py -c '
import json, sys
sys.path.insert(0, "examples/python")
from tap import partition_of
total = 0
for k in range(3):
    orders = json.load(open(f"{sys.argv[1]}/orders.{k}.json"))["orders"]
    assert orders, f"orders.{k} holds no order"
    wrong = [o["order_id"] for o in orders if partition_of(o["order_id"].encode(), 3) != k]
    assert not wrong, f"orders.{k} holds {wrong[:3]}"
    total += len(orders)
assert total == 300, total' "$state"
check "each inventory instance holds the stock and reservations of its own SKUs" $py -c '
import json, sys
sys.path.insert(0, "examples/python")
from tap import partition_of
skus = []
for k in range(2):
    r = json.load(open(f"{sys.argv[1]}/inventory.{k}.json"))
    own = [i["sku"] for i in r["items"]]
    assert all(partition_of(s.encode(), 2) == k for s in own), (k, own)
    held = [x for x in r["reservations"] if x["sku"]]
    assert all(partition_of(x["sku"].encode(), 2) == k for x in held), k
    skus += own
assert sorted(skus) == ["CB-404", "GPU-999", "KB-101", "MN-303", "MS-202"], skus' "$state"
merged=$("${troupe[@]}" query "${args[@]}" orders ListOrders '{"limit":1000}')
check "troupe query of a list asks every instance and merges" \
  $py -c 'import json, sys; assert len(json.loads(sys.argv[1])["orders"]) == 300' "$merged"

# Misrouted: a command or a keyed query sent to an instance that does not own its key.
id=misrouted-1
k=$(owner "$id" 3)
wrong=$(((k + 1) % 3))
"${troupe[@]}" send "${args[@]}" "orders.$wrong" PlaceOrder "{\"order_id\":\"$id\",\"customer\":\"alice\",\"sku\":\"KB-101\",\"quantity\":1}" >/dev/null 2>&1
letters=$("${troupe[@]}" deadletters "${args[@]}" list orders)
echo "$letters"
check "a misrouted command is a dead letter naming its owner" \
  grep -q "PlaceOrder with key '$id' belongs to orders.$k, not to orders.$wrong" <<<"$letters"
check "deadletters list orders goes through every instance" \
  bash -c '[[ $(grep -c "^orders\.[0-2]: [0-9]* dead letter" <<<"$1") -eq 3 ]]' _ "$letters"
# Hostile but admitted: a key that is no string or integer reads as the empty key, so
# its owner takes it and its handler refuses it as a dead letter naming the field; a
# key of 1,000 bytes is routed and answered like any other; one of 60 KiB (a payload
# string may hold 64 KiB) reaches its owner, whose OrderPlaced would carry it as its
# correlation id, over an envelope's 1,024 bytes per string: a dead letter there, and
# the mesh goes on (the orders below end); one of 96 KiB is refused by the sender; a
# second process of an instance is refused while the first serves on.
e=$(owner "" 3)
"${troupe[@]}" send "${args[@]}" "orders.$e" PlaceOrder '{"order_id":[1,2],"customer":"alice","sku":"KB-101","quantity":1}' >/dev/null 2>&1
wait_for 10 "a key that is no string is a dead letter on the owner of the empty key, naming the field" \
  bash -c '"$@" | grep -q "order_id"' _ "${troupe[@]}" deadletters "${args[@]}" list "orders.$e"
place_keyed() { "${troupe[@]}" send "${args[@]}" orders PlaceOrder "{\"order_id\":\"$1\",\"customer\":\"alice\",\"sku\":\"KB-101\",\"quantity\":1}" 2>&1; }
long=$(head -c 1000 /dev/zero | tr '\0' k)
kl=$(owner "$long" 3)
place_keyed "$long" >/dev/null
long_done() {
  "${troupe[@]}" query "${args[@]}" "orders.$kl" GetOrder "{\"order_id\":\"$long\"}" 2>/dev/null |
    json_is '.status == "confirmed" or .status == "cancelled"'
}
wait_for 20 "an order with a 1,000-byte key reaches its owner (orders.$kl) and ends" long_done
big=$(head -c 61440 /dev/zero | tr '\0' k)
kb=$(owner "$big" 3)
place_keyed "$big" >/dev/null
wait_for 10 "one with a 60 KiB key reaches its owner (orders.$kb), which refuses it naming the envelope's limit" \
  bash -c '"$@" | grep -q "correlationid of 61440 bytes is over the limit of 1024"' _ \
  "${troupe[@]}" deadletters "${args[@]}" list "orders.$kb"
over=$(place_keyed "$big${big:0:36864}")
check "a key over the string limit is refused by the sender, naming the limit" \
  grep -q "a string is longer than 65536 bytes" <<<"$over"
err=$("$TROUPE_BUILD_DIR/services/orders" "${args[@]}" --partition 1 2>&1); rc=$?
check "a second process of orders.1 is refused (exit $rc): $(tail -1 <<<"$err" | head -c 160)" \
  bash -c '(($1 != 0)) && grep -q "already running" <<<"$2"' _ "$rc" "$err"
check "... and orders.1 serves on" bash -c 'set -o pipefail; "$@" | jq -e -s "length == 1 and .[0].state == \"ready\"" >/dev/null' _ \
  "${troupe[@]}" query "${args[@]}" orders.1 '$health'

one=$(json '.orders[0].order_id' <"$state/orders.0.json")
err=$("${troupe[@]}" query "${args[@]}" orders.1 GetOrder "{\"order_id\":\"$one\"}" 2>&1)
check "a keyed query asked of another instance is told its owner" grep -q "belongs to orders.0, not to orders.1" <<<"$err"
check "troupe query routes a keyed query to its owner" \
  bash -c 'set -o pipefail; "$@" | jq -e -s --arg id "$0" "length == 1 and .[0].order_id == \$id" >/dev/null' "$one" "${troupe[@]}" query "${args[@]}" orders GetOrder "{\"order_id\":\"$one\"}"

# troupe check --contracts: a partitioned service's types must carry its key field.
"$TROUPE_BUILD_DIR/services/inventory" --contract >"$state/inventory.contract.json"
sed '/^keys = /d' "$topology" >"$state/nokeys.toml"
out=$("${troupe[@]}" check --topology "$state/nokeys.toml" --contracts "$state/inventory.contract.json")
check "troupe check --contracts names a keyed type without the key field, with file:line" \
  grep -q "nokeys.toml:[0-9]*: error: service 'inventory' is partitioned by 'sku', but OrderCancelled has no field 'sku'" <<<"$out"
check "... and the shop's partitioned topology passes it" \
  "${troupe[@]}" check --topology "$topology" --contracts "$state/inventory.contract.json"

# The tools.
status=$("${troupe[@]}" status "${args[@]}")
check "troupe status: a row per instance, all ready" \
  bash -c '[[ $(grep -cE "^(orders\.[0-2]|inventory\.[01]) +ready" <<<"$1") -eq 5 ]]' _ "$status"
graph=$("${troupe[@]}" graph "${args[@]}")
check "troupe graph draws a partitioned service once, with its count" \
  bash -c 'grep -q "\"orders\" \[label=\"orders\\\\n×3 partitions by order_id" <<<"$1" && ! grep -q "orders\.1" <<<"$1"' _ "$graph"
check "troupe metrics: one section per instance" \
  bash -c '"$@" | grep -q "service=\"orders.2\""' _ "${troupe[@]}" metrics "${args[@]}" --prometheus
"${troupe[@]}" send "${args[@]}" --wait --timeout 5000 orders PlaceOrder '{"order_id":"part-trace","customer":"alice","sku":"KB-101","quantity":1}' >/dev/null
o=$(owner part-trace 3)
i=$(owner KB-101 2)
wait_for 10 "the traced order ends" bash -c '"$@" | grep -q "outcome:"' _ "${troupe[@]}" trace "${args[@]}" part-trace
tr=$("${troupe[@]}" trace "${args[@]}" part-trace)
echo "$tr"
check "troupe trace names the instances the saga went through" \
  bash -c 'grep -q "orders.$0/OrderPlaced" <<<"$2" && grep -q "inventory.$1/StockReserved" <<<"$2"' "$o" "$i" "$tr"
every_orders_instance_tapped() { [[ $(json '.source' <"$state/tap.out" | grep '^orders\.[0-2]$' | sort -u | wc -l) -eq 3 ]]; }
wait_for 10 "troupe tap --service orders shows every orders instance" every_orders_instance_tapped
check "... and no event of another service" $py -c '
import json, re, sys
events = [r for r in map(json.loads, open(sys.argv[1])) if r.get("tapkind", "event") == "event"]
assert events and all(re.fullmatch(r"orders\.[0-2]", r["source"]) for r in events), {r["source"] for r in events}' "$state/tap.out"
wait_for 10 "the Python tap decodes events of the instances" json_any '.source == "inventory.1"' "$state/pytap.out"
"${troupe[@]}" export systemd "${args[@]}" --out "$state/units" --bin-dir /opt/troupe/bin >/dev/null
check "troupe export systemd: a unit per instance, running its service with --partition" \
  grep -q "ExecStart=/opt/troupe/bin/orders --topology .* --partition 2" "$state/units/troupe-shop-orders.2.service"

# Not yet for partitioned meshes, and said so: their contract, and upgrading an instance.
check "troupe asyncapi refuses a partitioned mesh, saying why" \
  bash -c '"$@" 2>&1 | grep -q "orders is partitioned (×3): contracts of partitioned meshes are not written"' \
  _ "${troupe[@]}" asyncapi "${args[@]}" --mesh
check "... and exits 2" bash -c '"$@" >/dev/null 2>&1; [[ $? -eq 2 ]]' _ "${troupe[@]}" asyncapi "${args[@]}" --mesh
check "scripts/upgrade refuses an instance of a partitioned service" \
  bash -c '"$@" 2>&1 | grep -q "orders is partitioned: its instances cannot be upgraded"' \
  _ scripts/upgrade "${args[@]}" orders.1 "$TROUPE_BUILD_DIR/services/orders"

# The HTTP gateway routes a command to its owner and asks a list of every instance.
check "the gateway starts on the partitioned mesh" "${mesh[@]}" gateway --listen 127.0.0.1:0
url=$(cat "$state/gateway.url" 2>/dev/null)
check "the gateway: a command reaches its owner, ?wait answers the event it caused, a list is merged" $py -c '
import json, sys, urllib.request
sys.path.insert(0, "examples/python")
from tap import partition_of
url = sys.argv[1]
def call(path, body=None):
    req = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST" if body else "GET")
    with urllib.request.urlopen(req, timeout=15) as r:
        return r.status, json.load(r)
status, ev = call("v1/commands/orders/PlaceOrder?wait=5s",
                  {"order_id": "via-http", "customer": "bob", "sku": "KB-101", "quantity": 1})
assert status == 200 and ev["type"] == "OrderPlaced", (status, ev)
assert ev["source"] == "orders.%d" % partition_of(b"via-http", 3), ev["source"]
status, got = call("v1/queries/orders/GetOrder?order_id=via-http")
assert status == 200 and got["order_id"] == "via-http", got
status, listed = call("v1/queries/orders/ListOrders?limit=1000")
assert status == 200 and len(listed["orders"]) > 300, len(listed["orders"])
status, health = call("v1/queries/orders/$health")
assert sorted(health) == ["orders.0", "orders.1", "orders.2"], sorted(health)
status, ready = call("readyz")
assert status == 200, ready' "$url"

# One partition down: the others serve on; back up, its orders complete.
"${mesh[@]}" kill orders.2 >/dev/null
for n in 1 2 3 4 5 6 7 8 9 10 11 12; do  # an order id each partition owns, 0 and 1
  [[ $(owner "alive-$n" 3) != 2 ]] && { alive=alive-$n; break; }
done
check "with orders.2 down, an order another instance owns completes" \
  "${troupe[@]}" send "${args[@]}" --wait --timeout 5000 orders PlaceOrder "{\"order_id\":\"$alive\",\"customer\":\"alice\",\"sku\":\"KB-101\",\"quantity\":1}"
check "scripts/mesh restart orders.2 brings it back" "${mesh[@]}" restart orders.2
check "troupe shop verify after the restart" "${troupe[@]}" shop verify "${args[@]}"

# Changing the partition count is refused, never a silent re-hash.
kill "$tap_pid" 2>/dev/null; tap_pid=
kill "$pytap" 2>/dev/null
"${mesh[@]}" down >/dev/null
sed 's/^partitions = 3$/partitions = 2/' "$topology" >"$state/two.toml"
out=$("${troupe[@]}" check --topology "$state/two.toml" --state-dir "$state")
check "troupe check refuses the stores of 3 partitions under 2" \
  grep -q "orders.0.db was written by 3 partition(s) and the topology now says 2" <<<"$out"
check "... exiting 1" bash -c '! "$@" >/dev/null' _ "${troupe[@]}" check --topology "$state/two.toml" --state-dir "$state"
err=$("$TROUPE_BUILD_DIR/services/orders" --topology "$state/two.toml" --state-dir "$state" --partition 0 2>&1)
echo "$err"
check "a store written by 3 partitions is refused under 2" grep -q "written by 3 partition(s) and the topology now says 2" <<<"$err"
sed 's/^key = "order_id".*/key = "customer"/' "$topology" >"$state/rekeyed.toml"
err=$("$TROUPE_BUILD_DIR/services/orders" --topology "$state/rekeyed.toml" --state-dir "$state" --partition 1 2>&1)
echo "$err"
check "a store written under another partition key is refused" \
  grep -q 'written with the partition key "order_id" and the topology now says "customer"' <<<"$err"
out=$("${troupe[@]}" check --topology "$state/rekeyed.toml" --state-dir "$state")
check "... and troupe check says so of every instance's store" \
  bash -c '[[ $(grep -c "orders\.[0-2]\.db was written with the partition key \"order_id\" and the topology now says \"customer\"" <<<"$0") -eq 3 ]]' "$out"
sed '/^partitions = 3$/d; /^key = "order_id"/d' "$topology" >"$state/one.toml"
err=$("$TROUPE_BUILD_DIR/services/orders" --topology "$state/one.toml" --state-dir "$state" 2>&1)
echo "$err"
check "an unpartitioned orders beside the partitioned stores is refused" grep -q "orders.0.db is the store of a partitioned orders" <<<"$err"
err=$("$TROUPE_BUILD_DIR/services/orders" "${args[@]}" 2>&1)
check "a partitioned service started without --partition says how to run it" grep -q "run one process per partition, --partition 0 … 2" <<<"$err"

# A service's own options (getopt_long): --help exits 0 and names them, a bad one exits
# 64 with configure's own words for it, and shop-edge (one process, no partitions) has
# no --partition. Each under a timeout: an argument wrongly accepted would start a node.
orders=$TROUPE_BUILD_DIR/services/orders
check "orders --help exits 0, naming --partition and --contract" \
  bash -c 'out=$(timeout 10 "$0" --help) && grep -q -- "--partition K" <<<"$out" && grep -q -- "--contract" <<<"$out"' "$orders"
while IFS='|' read -r given said; do
  read -ra words <<<"$given"
  err=$(timeout 10 "$orders" "${words[@]}" 2>&1); rc=$?
  check "orders $given exits 64 (got $rc): $said" bash -c '(($1 == 64)) && grep -qxF -- "$2" <<<"$3"' _ "$rc" "orders: $said" "$err"
done <<'ARGS'
--partition 256|--partition: '256' is not a number in 0 … 255
-p -1|--partition: '-1' is not a number in 0 … 255
--partition 1x|--partition: '1x' is not a number in 0 … 255
--bogus|--bogus: not an option here
-x|-x: not an option here
-xh|-x: not an option here
--contract=1|--contract: takes no value
--help=yes|--help: takes no value
extra|extra: unexpected argument
--topology|--topology: needs a value
-t|-t: needs a value
ARGS
# The partition given as -pK and --partition=K, the topology as -tFILE and --topology=FILE,
# each reaching the store check of that instance (a store written under another key).
for form in "-p2 -t$state/rekeyed.toml" "--partition=2 --topology=$state/rekeyed.toml"; do
  read -ra words <<<"$form"
  check "orders $form reaches orders.2's store check" \
    bash -c 'timeout 10 "$0" "$@" 2>&1 | grep -q "service .orders\.2.: its store was written with the partition key"' "$orders" "${words[@]}" --state-dir "$state"
done
err=$(timeout 10 "$TROUPE_BUILD_DIR/services/shop-edge" --partition 1 2>&1); rc=$?
check "shop-edge offers no --partition (exit $rc)" bash -c '(($1 == 64)) && grep -qxF "shop-edge: --partition: not an option here" <<<"$2"' _ "$rc" "$err"

echo "partitions: $failures failure(s)"
exit $((failures > 0))
