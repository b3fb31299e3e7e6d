#!/usr/bin/env bash
# From zero to a mesh, outside the source tree: `meson install` into a temporary root,
# then with only that install on PATH and pkg-config: `troupe new mesh`, build it, test
# its pure rules, `./mesh up`, send a command and see the event it caused and what the
# other service made of it; `troupe new service` adds a third, which builds and answers.
# Usage: scaffold_test.sh SOURCE_ROOT BUILD_ROOT
set -uo pipefail
src=$1 build=$2
source "$src/tests/support/checks.sh"
tmp=$(mktemp -d /tmp/troupe-scaffold-XXXXXX)
project=$tmp/work/time  # a C library name: the generated code must not collide with it
finish() {
  [[ -x $project/mesh ]] && (cd "$project" && ./mesh down >/dev/null 2>&1)
  rm -rf "$tmp"
}
trap finish EXIT
meson install -C "$build" --no-rebuild --destdir "$tmp/root" --quiet >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; exit 1; }
pc=$(find "$tmp/root" -name troupe.pc | head -1)
bin=$(dirname "$(find "$tmp/root" -path '*/bin/troupe' | head -1)")
export PATH="$bin:$PATH" PKG_CONFIG_SYSROOT_DIR=$tmp/root PKG_CONFIG_PATH=$(dirname "$pc")
check "the installed troupe is the one on PATH" test "$(command -v troupe)" = "$bin/troupe"

mkdir -p "$tmp/work" && cd "$tmp/work" || exit 1
out=$(troupe new mesh time)
echo "$out"
check "troupe new mesh writes a project" test -f time/meson.build -a -f time/topology.toml -a -x time/mesh \
  -a -f time/services/greeter/messages.hpp -a -f time/services/tally/tally.hpp -a -f time/tests/tally_test.cpp
check "... whose topology troupe check accepts" troupe check --topology time/topology.toml
out=$(troupe new mesh time 2>&1); rc=$?
check "troupe new mesh refuses a directory that is not empty (exit 1)" test "$rc" = 1 -a -n "$(grep -F "not an empty directory" <<<"$out")"
out=$(troupe new mesh bad --name 'Bad Name' 2>&1); rc=$?
check "troupe new mesh refuses a name that is no identifier (exit 2)" test "$rc" = 2 -a ! -e bad
out=$(troupe new mesh "" --name empty 2>&1); rc=$?
check "troupe new mesh refuses an empty directory name, writing nothing here (exit 2)" test "$rc" = 2 -a ! -e meson.build

cd "$project" || exit 1
check "the project builds against the installed library (meson, pkg-config)" \
  bash -c 'meson setup build >setup.log 2>&1 && ninja -C build >build.log 2>&1 || { tail -30 setup.log build.log; exit 1; }'
check "its tests of the pure rules pass" bash -c 'meson test -C build >test.log 2>&1 || { tail -30 test.log; exit 1; }'
check "./mesh up starts both services and waits until the mesh is at rest" ./mesh up
ev=$(troupe send --topology topology.toml --wait --timeout 5000 greeter Greet '{"name":"Ada"}')
echo "$ev"
check "a Greet causes its Greeted event" json_is '.type == "Greeted" and .data.greeting == "hello, Ada"' <<<"$ev"
counted() { troupe query --topology topology.toml tally GetCount '{"name":"Ada"}' | json_is '.count == 1'; }
wait_for 10 "tally counted the greeting (its reaction to greeter's event)" counted
troupe send --topology topology.toml greeter Greet '{"name":""}' >/dev/null
refused() {
  troupe deadletters --topology topology.toml list greeter --json |
    json_is '.count == 1 and (.letters[0].reason | contains("a name is 1 to 100 bytes"))'
}
wait_for 10 "an empty name is refused into greeter's dead letters" refused

out=$(troupe new service audit)
echo "$out"
check "troupe new service adds its files, its topology section and its build entry" \
  bash -c 'test -f services/audit/handlers.cpp -a -f tests/audit_test.cpp && grep -q "^\[services.audit\]" topology.toml &&
           grep -q "^services = \[.*'"'"'audit'"'"'\]" meson.build'
out=$(troupe new service audit 2>&1); rc=$?
check "a second troupe new service of the same name is refused (exit 1)" test "$rc" = 1
out=$(troupe new service class 2>&1); rc=$?
check "a service name that is a C++ keyword is refused (exit 2)" test "$rc" = 2
check "the project with the new service builds and its tests pass" \
  bash -c 'ninja -C build >build.log 2>&1 && meson test -C build >test.log 2>&1 || { tail -30 build.log test.log; exit 1; }'
check "./mesh up starts the new service beside the running ones" ./mesh up
ev=$(troupe send --topology topology.toml --wait --timeout 5000 audit RecordAudit '{"key":"k","value":"v"}')
check "the new service takes its command and publishes its event" json_is '.type == "AuditRecorded" and .data.value == "v"' <<<"$ev"
check "... and answers its query" bash -c 'troupe query --topology topology.toml audit GetAudit "{\"key\":\"k\"}" | jq -e ".value == \"v\"" >/dev/null'
pids=$(cat var/time/*.pid)
check "./mesh down stops the mesh" ./mesh down
alive=0
for p in $pids; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
check "no process is left behind" test "$alive" -eq 0

echo "scaffold: $failures failure(s)"
exit $((failures > 0))
