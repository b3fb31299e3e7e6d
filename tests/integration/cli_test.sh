#!/usr/bin/env bash
# The troupe command: --help everywhere, `check` on the shipped and on broken
# topologies (file:line), keygen (made, never overwritten, a lost NAME.pub derived
# again) and open secret keys refused, exit codes for unreachable services and bad arguments.
# Usage: cli_test.sh SOURCE_ROOT TROUPE_BINARY
set -uo pipefail
cd "$1"
troupe=$2
tmp=$(mktemp -d /tmp/troupe-cli-XXXXXX)
mesh=()
cleanup() {
  ((${#mesh[@]})) && "${mesh[@]}" down >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT
failures=0
expect() {  # description, expected exit code, expected output substring, command...
  local what=$1 code=$2 text=$3; shift 3
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [[ $rc -eq $code && $out == *"$text"* ]]; then echo "ok: $what"
  else echo "FAIL: $what (exit $rc, expected $code; output: $out)"; failures=$((failures + 1)); fi
}

for sub in check send query status settle deadletters tap trace graph metrics export keygen asyncapi compat; do
  expect "troupe $sub --help" 0 "Usage:" "$troupe" "$sub" --help
done
expect "troupe --help lists the subcommands" 0 "deadletters" "$troupe" --help
expect "no subcommand is a usage error" 2 "" "$troupe"

# Commands of their own: `troupe NAME` runs troupe-NAME (beside troupe, in libexec, on
# PATH), as the shop's `troupe shop` is run from build/troupe-shop.
expect "troupe --help lists the commands found as troupe-NAME" 0 "troupe-shop)" "$troupe" --help
expect "troupe shop --help: the shop's commands" 0 "verify" "$troupe" shop --help
for sub in load verify; do
  expect "troupe shop $sub --help" 0 "Usage:" "$troupe" shop "$sub" --help
done
plugins=$(mktemp -d)
printf '#!/bin/sh\necho "hello from $0: $*"\nexit 7\n' >"$plugins/troupe-hello"
chmod +x "$plugins/troupe-hello"
printf '#!/bin/sh\necho ran\n' >"$plugins/troupe-inert"  # not executable
expect "troupe NAME runs troupe-NAME found on PATH, with its arguments and exit code" 7 "troupe-hello: a --b c" \
  env PATH="$plugins:$PATH" "$troupe" hello a --b c
expect "a troupe-NAME that is not executable is not run" 2 "no executable troupe-inert" \
  env PATH="$plugins:$PATH" "$troupe" inert
expect "an unknown command is a usage error naming troupe-NAME" 2 "no executable troupe-nosuch was found" "$troupe" nosuch
# troupe-../sub/x would name an executable here, were the name not refused as a path.
mkdir -p "$plugins/troupe-../sub" && cp "$plugins/troupe-hello" "$plugins/troupe-../sub/x"
expect "a command name is a word, never a path (troupe ../sub/x)" 2 "is not a troupe command" \
  env PATH="$plugins:$PATH" "$troupe" ../sub/x
printf 'echo no interpreter line\n' >"$plugins/troupe-noshebang" && chmod +x "$plugins/troupe-noshebang"
expect "a troupe-NAME that cannot be run exits 126, naming it" 126 "cannot run $plugins/troupe-noshebang" \
  env PATH="$plugins:$PATH" "$troupe" noshebang
expect "... nor an option-looking word" 2 "" env PATH="$plugins:$PATH" "$troupe" --hello
rm -rf "$plugins"

expect "the shipped topology is valid" 0 "topology/shop.toml: OK (5 services" "$troupe" check
expect "a warning names file and line" 0 "topology/shop.toml:22: warning: service 'inventory' publishes 'StockReleased'" "$troupe" check
for t in topology/*.toml; do
  [[ $t == *seed* ]] && continue
  expect "$t is valid" 0 ": OK (" "$troupe" check --topology "$t"
done

sed 's/orders = \["OrderPlaced", "OrderCancelled"\]/ordrs = ["OrderPlaced", "OrderCancelled"]/' topology/shop.toml >"$tmp/broken.toml"
expect "an unknown publisher is an error with file:line" 1 "$tmp/broken.toml:28: error: service 'inventory' reacts to unknown service 'ordrs'" \
  "$troupe" check --topology "$tmp/broken.toml"
sed 's/heartbeat_ms = 500/heartbeat_ms = "fast"/' topology/shop.toml >"$tmp/typed.toml"
expect "a wrong type is an error with file:line" 1 "$tmp/typed.toml:7: 'heartbeat_ms' must be an integer" \
  "$troupe" check --topology "$tmp/typed.toml"
expect "a missing topology file" 1 "/nonexistent.toml: cannot read the topology file" "$troupe" check --topology /nonexistent.toml
# scripts/mesh reads these four from one call, by line: state dir, host (empty here),
# security, then the services, whatever order the flags are given in.
facts=$(printf 'var/shop\n\ncurve\norders\ninventory\npayments\nshipping\nnotifications')
expect "check --list --print-security --print-host --print-state-dir: a line each, state dir first" 0 "$facts" \
  bash -c '[[ $("$@") == "$0" ]] && echo "$0"' "$facts" "$troupe" check --list --print-security --print-host --print-state-dir

expect "under curve, a missing key is named, with how to make it" 1 "identity 'cli' has no usable CURVE key pair: $tmp/none/keys/cli.key: cannot read the key file" \
  "$troupe" query --state-dir "$tmp/none" --timeout 200 orders '$health'
expect "keygen --mesh makes every identity's key pair" 0 "made 10 key pair(s) in $tmp/none/keys" \
  "$troupe" keygen --mesh --state-dir "$tmp/none"
expect "keygen refuses to overwrite" 1 "$tmp/none/keys/cli.pub: already exists; not overwriting a key" \
  "$troupe" keygen cli --out "$tmp/none/keys"
mv "$tmp/none/keys/orders.pub" "$tmp/orders.pub.kept"
expect "keygen --mesh derives a lost NAME.pub from NAME.key" 0 "$tmp/none/keys/orders.pub was missing: derived it again from orders.key" \
  "$troupe" keygen --mesh --state-dir "$tmp/none"
expect "the derived public key is the pair's" 0 "" test "$(grep -v '^#' "$tmp/none/keys/orders.pub")" = "$(grep -v '^#' "$tmp/orders.pub.kept")"
chmod 644 "$tmp/none/keys/cli.key"
expect "a secret key others may read is refused, with its mode" 1 "$tmp/none/keys/cli.key: readable by others (mode 0644): chmod 600 it" \
  "$troupe" query --state-dir "$tmp/none" --timeout 200 orders '$health'
chmod 600 "$tmp/none/keys/cli.key"
expect "keygen wants NAME or --mesh" 2 "give either NAME or --mesh" "$troupe" keygen
expect "a query to a service that is not running exits 3" 3 "no reply to \$health within 200 ms" \
  "$troupe" query --state-dir "$tmp/none" --timeout 200 orders '$health'
expect "status shows unreachable services and exits 3" 3 "unreachable" "$troupe" status --state-dir "$tmp/none" --timeout 100
expect "status --wait: exit 3, naming on stderr who never answered" 3 "no answer to \$health within 300 ms from orders, payments" \
  "$troupe" status --state-dir "$tmp/none" --timeout 100 --wait 300 orders payments
expect "status SERVICE: an unknown name is a usage error" 2 "no service or instance 'ordrs'" \
  "$troupe" status --state-dir "$tmp/none" ordrs
expect "troupe settle with no mesh running: not at rest (exit 3), naming who did not answer" 3 "orders did not answer" \
  "$troupe" settle --state-dir "$tmp/none" --wait 300 --timeout 100
expect "a payload that is not JSON exits 2" 2 "the payload is not JSON" "$troupe" send --state-dir "$tmp/none" orders PlaceOrder '{oops'
expect "a command the service does not accept exits 2" 2 "does not accept command 'Shout'" "$troupe" send --state-dir "$tmp/none" orders Shout '{}'

# Deployment: systemd units that systemd itself accepts.
"$troupe" export systemd --out "$tmp/units" --bin-dir "$(dirname "$troupe")/services" --workdir "$PWD" >/dev/null
expect "one unit per service and a target" 0 "troupe-shop-orders.service" ls "$tmp/units"
if command -v systemd-analyze >/dev/null; then
  expect "systemd-analyze verify accepts the units" 0 "" \
    bash -c 'cd "$1" && systemd-analyze verify --man=no ./*.service ./*.target 2>&1 | grep -v "Cannot add dependency job\|ignoring\|Failed to connect" ; exit ${PIPESTATUS[0]}' _ "$tmp/units"
else
  echo "skip: systemd-analyze is not installed"
fi
"$troupe" export systemd --topology topology/shop-edge.toml --out "$tmp/edge-units" --bin-dir "$(dirname "$troupe")/services" >/dev/null
expect "the edge topology gets one unit for its host process" 0 "troupe-shop-shop-edge.service" ls "$tmp/edge-units"

# The choreography as a picture.
expect "graph: DOT edges from publisher to subscriber" 0 '"orders" -> "inventory" [label="OrderPlaced\nOrderCancelled"]' "$troupe" graph
expect "graph: Mermaid" 0 'orders -- "OrderPlaced<br/>OrderCancelled" --> inventory' "$troupe" graph --format mermaid
expect "metrics --prometheus marks services that do not answer" 0 'troupe_up{service="orders"} 0' \
  "$troupe" metrics --prometheus --state-dir "$tmp/none" --timeout 100

# scripts/mesh: private state, a service's own error when its key is refused, and every
# service stopped also behind a wrapper that forks (payments' under faketime, a week
# behind, so trace meets clock skew).
build=$(dirname "$troupe")
if [[ -x $build/services/orders ]]; then
  state=$tmp/mesh
  # libfaketime comes in through LD_PRELOAD, which the sanitizer runtimes refuse. (Not
  # `ldd | grep -q`: under pipefail, grep leaving early can SIGPIPE ldd and flip the test.)
  skew=0
  if command -v faketime >/dev/null && [[ $(ldd "$build/services/payments") != *libasan* ]]; then skew=1; fi
  export TROUPE_TEST_SKEW=$skew
  cat >"$tmp/wrap" <<'WRAP'
#!/usr/bin/env bash
# forks (no exec): a TERM to this shell alone would leave the service running
s=$1; shift
if [[ $s == payments && $TROUPE_TEST_SKEW == 1 ]]; then FAKETIME_DONT_FAKE_MONOTONIC=1 faketime -f -7d "$@"
else "$@"; fi
WRAP
  chmod +x "$tmp/wrap"
  mesh=(env TROUPE_BUILD_DIR="$build" TROUPE_MESH_WRAP="$tmp/wrap {service}" scripts/mesh --state-dir "$state")
  expect "mesh up behind a forking wrapper" 0 "mesh: up (5 services" "${mesh[@]}" up
  expect "status --wait SERVICE...: only those, once they answer" 0 '"service": "payments"' \
    "$troupe" status --state-dir "$state" --wait 5000 --json orders payments
  expect "... and no other" 0 "orders payments" bash -c '"$@" | jq -r "[.services[].service] | join(\" \")"' _ \
    "$troupe" status --state-dir "$state" --json orders payments
  expect "the state directory is private (0700)" 0 "700" stat -c %a "$state"
  expect "logs are private (0600)" 0 "600" stat -c %a "$state/orders.log"
  if ((skew)); then
    "$troupe" send --state-dir "$state" --timeout 10000 orders PlaceOrder \
      '{"order_id":"skew-1","customer":"nobody","sku":"KB-101","quantity":1}' --wait >/dev/null 2>&1
    deadline=$((SECONDS + 15))  # until the saga has ended (trace exits 0)
    until "$troupe" trace --state-dir "$state" skew-1 >/dev/null 2>&1 || ((SECONDS > deadline)); do sleep 0.1; done
    expect "trace says clock skew for an effect stamped before its cause" 0 "payments/PaymentDeclined #1  clock skew (stamped" \
      "$troupe" trace --state-dir "$state" skew-1
    expect "trace --json marks it" 0 '"clockskew":true' "$troupe" trace --state-dir "$state" --json skew-1
  else
    echo "skip: no clock skew (faketime is not installed, or the build is sanitized)"
  fi
  # One service down: --wait asks round robin, so the others behind it are still asked
  # and shown as they are, and only it is named.
  "${mesh[@]}" kill payments >/dev/null
  expect "status --wait with payments down: exit 3, naming only payments" 3 "within 1500 ms from payments"$'\n'"end" \
    bash -c '"$@" 2>&1 >/dev/null; rc=$?; echo end; exit $rc' _ "$troupe" status --state-dir "$state" --timeout 200 --wait 1500
  expect "... and every other service reachable" 0 "orders inventory shipping notifications" \
    bash -c '"$@" | jq -r "[.services[] | select(.reachable) | .service] | join(\" \")"' _ \
    "$troupe" status --state-dir "$state" --timeout 200 --wait 1500 --json
  expect "mesh down" 0 "mesh: down" "${mesh[@]}" down
  expect "mesh down stopped the services behind the wrapper" 1 "" pgrep -f -- "--state-dir $state"
  chmod 644 "$state/keys/orders.key"
  up=$("${mesh[@]}" up 2>&1)
  expect "mesh up fails when a service's key is refused" 0 "" test $? -eq 1
  expect "and prints that service's own error" 0 "" \
    bash -c '[[ $1 == *"mesh: orders failed to start: orders: "*"$2/keys/orders.key: readable by others (mode 0644): chmod 600 it"* ]] || { echo "$1"; exit 1; }' _ "$up" "$state"
  "${mesh[@]}" down >/dev/null
  expect "and down stops the others" 1 "" pgrep -f -- "--state-dir $state"
else
  echo "skip: scripts/mesh (no service executables in $build)"
fi

echo "cli: $failures failure(s)"
exit $((failures > 0))
