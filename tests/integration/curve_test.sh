#!/usr/bin/env bash
# CURVE with per-endpoint allow-lists, on the shop as real processes (topology/shop.toml
# ships with security = "curve"; scripts/mesh up makes the keys on first start).
#   every allowed path works: the operator (cli) sends, queries and watches; a tap taps;
#   the storefront client reaches orders;
#   a key not in the topology (rogue) gets no query reply, no command accepted and no
#   event; a client with no key at all neither; storefront cannot query payments, nor
#   watch what it is not allowed to: each attempt is counted in $metrics, logged once
#   with address and key, and shown to taps; no secret key is ever logged;
#   a client that may send and ask but not watch (kiosk) cannot read the outbox either
#   ($replay, $trace) nor the dead letters: `send --wait` says so; one that may watch
#   and ask but not send (auditor) reads the dead letters and may not retry one.
# Usage: curve_test.sh SOURCE_ROOT BUILD_ROOT
set -uo pipefail
cd "$1"
export TROUPE_BUILD_DIR=$2
state=$(mktemp -d /tmp/troupe-curve-XXXXXX)
topology=$state/shop.toml  # the shop as it ships, plus a client that may not watch and one that may not send
cat topology/shop.toml - >"$topology" <<'EOF'

[clients.kiosk]
commands = ["orders"]
queries = ["orders"]

[clients.auditor]
queries = ["orders"]
events = ["orders"]
EOF
mesh=(scripts/mesh --topology "$topology" --state-dir "$state")
troupe=("$TROUPE_BUILD_DIR/troupe")
args=(--topology "$topology" --state-dir "$state")
keys=$state/keys
source tests/support/checks.sh
finish() {
  [[ -n ${tap_pid:-} ]] && kill "$tap_pid" 2>/dev/null
  "${mesh[@]}" down >/dev/null 2>&1
  rm -rf "$state"
}
trap finish EXIT
metric() {  # service group key: prints $metrics[group][key] (0 when absent)
  "${troupe[@]}" query "${args[@]}" "$1" '$metrics' | /usr/bin/python3 -c \
    "import json,sys; print(json.load(sys.stdin).get('$2', {}).get('$3', 0))"
}
metric_at_least() { (($(metric "$1" "$2" "$3") >= $4)); }  # service group key minimum
refused() { metric_at_least "$1" auth_refused "$2" "$3"; }  # service endpoint minimum
# service minimum: handshakes that failed before ZAP (no key, wrong mechanism)
failed_handshakes() { metric_at_least "$1" socket_events handshake_failed "$2"; }
place() {  # identity order-id
  "${troupe[@]}" send "${args[@]}" --identity "$1" orders PlaceOrder \
    "{\"order_id\":\"$2\",\"customer\":\"alice\",\"sku\":\"KB-101\",\"quantity\":1}"
}
status_of() { "${troupe[@]}" query "${args[@]}" orders GetOrder "{\"order_id\":\"$1\"}" 2>&1; }

check "mesh comes up with curve on (keys made on first start)" "${mesh[@]}" up
identities=$(grep -c '^\[\(services\|clients\|taps\)\.' "$topology")  # 12: 5 services, 5 clients, 2 taps
check "scripts/mesh made a key pair for every identity" test "$(ls "$keys"/*.key | wc -l)" -eq "$identities"
check "secret keys are private (0600)" test "$(stat -c %a "$keys/orders.key")" = 600
check "keygen refuses to overwrite a key" bash -c '! "$@" 2>/dev/null' _ "${troupe[@]}" keygen orders --out "$keys"
check "keygen --mesh leaves existing keys alone" bash -c '"$@" | grep -q "have keys"' _ "${troupe[@]}" keygen "${args[@]}" --mesh

# Allowed paths.
ev=$("${troupe[@]}" send "${args[@]}" --wait --timeout 5000 orders PlaceOrder \
  '{"order_id":"c-1","customer":"alice","sku":"KB-101","quantity":1}')
check "the operator's command is accepted and its event seen" json_is '.type == "OrderPlaced"' <<<"$ev"
wait_for 10 "the saga runs across every service under curve" bash -c '"$@" | grep -Eq "confirmed|cancelled"' _ \
  "${troupe[@]}" query "${args[@]}" orders GetOrder '{"order_id":"c-1"}'
check "the storefront may place orders" place storefront c-2
wait_for 10 "... and query orders" bash -c '"$@" 2>/dev/null | grep -q c-2' _ \
  "${troupe[@]}" query "${args[@]}" --identity storefront orders GetOrder '{"order_id":"c-2"}'
# kiosk may send to and ask orders, not watch it: its command is taken, but reading the
# outbox ($replay, $trace) is reading events, and is refused like the subscription.
builtin_before=$(metric orders auth_refused builtin)
out=$("${troupe[@]}" send "${args[@]}" --identity kiosk --wait --timeout 5000 orders PlaceOrder \
  '{"order_id":"c-k","customer":"alice","sku":"KB-101","quantity":1}' 2>&1)
rc=$?
check "send --wait by a client that may not watch says why, exit 1 ($rc: $out)" \
  bash -c '[[ $0 == 1 && $1 == *"was taken, but its event cannot be read"*"may not read the events of orders"* ]]' "$rc" "$out"
wait_for 10 "... and its order exists" bash -c '"$@" 2>/dev/null | grep -q c-k' _ \
  "${troupe[@]}" query "${args[@]}" --identity kiosk orders GetOrder '{"order_id":"c-k"}'
after_send=$(metric orders auth_refused builtin)
check "... its \$replay requests were refused and counted ($builtin_before -> $after_send)" \
  test "$after_send" -ge $((builtin_before + 1))
out=$("${troupe[@]}" query "${args[@]}" --identity kiosk orders '$trace' '{"correlationid":"c-k","max":10}' 2>&1)
check "kiosk's \$trace of orders is refused ($out)" grep -q "may not read the events of orders" <<<"$out"
out=$("${troupe[@]}" deadletters "${args[@]}" --identity kiosk list orders 2>&1)
check "... and so is its \$deadletters list: what others sent ($out)" grep -q "may not read the events of orders" <<<"$out"
wait_for 10 "... each counted on orders (auth_refused.builtin)" refused orders builtin $((after_send + 2))
# auditor may watch and ask orders, not send to it: it reads the dead letters, and may
# not retry one (a retry applies a message again).
check "auditor may list orders' dead letters" "${troupe[@]}" deadletters "${args[@]}" --identity auditor list orders
out=$("${troupe[@]}" deadletters "${args[@]}" --identity auditor retry orders 1 2>&1)
check "... and may not retry one ($out)" grep -q "may not send commands to orders" <<<"$out"
"${troupe[@]}" tap "${args[@]}" --json --kind refused >"$state/tap.out" 2>"$state/tap.err" &
tap_pid=$!
taps_attached() {
  local s
  for s in orders inventory payments shipping notifications; do
    "${troupe[@]}" query "${args[@]}" "$s" '$metrics' | json_is '.taps >= 1' || return 1
  done
}
wait_for 10 "an allowed tap is attached to every service" taps_attached

# A key that is not in the topology.
"${troupe[@]}" keygen rogue --out "$keys" >/dev/null
check "rogue gets no query reply" bash -c '! "$@" >/dev/null 2>&1' _ \
  "${troupe[@]}" query "${args[@]}" --identity rogue --timeout 1500 orders '$health'
wait_for 10 "rogue's query attempts are counted on orders/queries" refused orders queries 1
place rogue r-1 >/dev/null 2>&1
wait_for 10 "rogue's command attempts are counted on orders/commands" refused orders commands 1
out=$(status_of r-1)
check "rogue's order does not exist (orders: $(head -c 160 <<<"$out"))" bash -c '! jq -e -s "length == 1 and .[0].order_id == \"r-1\"" <<<"$1" >/dev/null 2>&1' _ "$out"
"${troupe[@]}" tap "${args[@]}" --identity rogue --json --seconds 4 >"$state/rogue-tap.out" 2>&1 &
rogue_tap=$!
wait_for 10 "a rogue tap's subscription attempts are counted on payments/events" refused payments events 1
place cli c-3 >/dev/null
wait "$rogue_tap"
check "a rogue tap receives nothing while orders flow" test ! -s "$state/rogue-tap.out"

# A client allowed somewhere, not everywhere.
check "the storefront may not query payments" bash -c '! "$@" >/dev/null 2>&1' _ \
  "${troupe[@]}" query "${args[@]}" --identity storefront --timeout 1500 payments GetBalance '{}'
wait_for 10 "... and that attempt is counted on payments/queries" refused payments queries 1
"${troupe[@]}" tap "${args[@]}" --identity storefront --json --seconds 4 >"$state/sf-tap.out" 2>"$state/sf-tap.err" &
sf_tap=$!
wait_for 10 "an unauthorised tap (storefront) is refused by shipping" refused shipping events 1
place cli c-4 >/dev/null
wait "$sf_tap"
check "... sees orders' events, which it may" json_any '.source == "orders"' "$state/sf-tap.out"
check "... and none of payments'" json_none '.source == "payments"' "$state/sf-tap.out"
check "... and no mirrors of what orders handles: its \$tap request is not a tap's" \
  json_none '.tapkind == "command"' "$state/sf-tap.out"
wait_for 10 "... and that request is counted on orders (auth_refused.tap)" refused orders tap 1

# No key at all: plain ZeroMQ against the CURVE endpoints.
/usr/bin/python3 - "$state" <<'EOF'
import sys, zmq
state = sys.argv[1]
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB); sub.setsockopt(zmq.SUBSCRIBE, b""); sub.connect(f"ipc://{state}/orders.events")
req = ctx.socket(zmq.DEALER); req.connect(f"ipc://{state}/orders.queries")
push = ctx.socket(zmq.PUSH); push.setsockopt(zmq.SNDTIMEO, 500); push.connect(f"ipc://{state}/orders.commands")
for s in (req, push):
    try:
        s.send_multipart([b"not-an-envelope", b"\x80"], flags=zmq.NOBLOCK)
    except zmq.Again:
        pass  # no peer ever completed a handshake: nothing to queue to
got = sub.poll(1500) or req.poll(500)
print("plain client received something" if got else "plain client received nothing")
sys.exit(1 if got else 0)
EOF
check "a client with no key receives nothing from events or queries" test $? -eq 0
wait_for 10 "its handshakes are counted (socket_events.handshake_failed)" failed_handshakes orders 1

# Refusals are logged once per key with the peer's address, and shown to taps.
rogue_pub=$(grep -v '^#' "$keys/rogue.pub")
n=$(grep "refused a CURVE handshake on queries from .*: public key " "$state/orders.log" | grep -cF -- "$rogue_pub")
check "orders logs rogue's query refusal once (got $n), with address and key" test "$n" -eq 1
wait_for 10 "the allowed tap shows the refusals" json_any '.tapkind == "refused"' "$state/tap.out"
leaked=0
for k in "$keys"/*.key; do
  secret=$(grep -v '^#' "$k")
  grep -rqF -- "$secret" "$state"/*.log "$state"/*.out && leaked=$((leaked + 1))
done
check "no secret key appears in any log or output" test "$leaked" -eq 0

echo "curve test: $failures failure(s)"
exit $((failures > 0))
