#!/usr/bin/env bash
# Embedding: `meson install` into a temporary root, then the out-of-tree example in
# examples/embed builds against the installed headers, library and troupe.pc through
# pkg-config, and runs.
# Usage: embed_test.sh SOURCE_ROOT BUILD_ROOT SANITIZE
set -uo pipefail
src=$1 build=$2 sanitize=$3
tmp=$(mktemp -d /tmp/troupe-embed-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
meson install -C "$build" --no-rebuild --destdir "$tmp/root" --quiet >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; exit 1; }
pc=$(find "$tmp/root" -name troupe.pc | head -1)
[[ -n $pc ]] || { echo "FAIL: no troupe.pc installed"; exit 1; }
echo "installed: $(find "$tmp/root" -name 'libtroupe.a' | head -1), $pc, $(find "$tmp/root" -path '*include/troupe/runtime/node.hpp')"
# The toolkit's command is on the PATH; the example shop is not (it lives in libexec).
bin=$(find "$tmp/root" -type d -name bin | head -1)
[[ -x $bin/troupe ]] || { echo "FAIL: no troupe command in $bin"; exit 1; }
for s in orders inventory payments shipping notifications shop-edge; do
  [[ ! -e $bin/$s ]] || { echo "FAIL: the shop's $s is installed on the PATH ($bin)"; exit 1; }
  [[ -n $(find "$tmp/root" -path "*libexec/troupe/shop/$s") ]] || { echo "FAIL: no libexec/troupe/shop/$s"; exit 1; }
done
[[ ! -e $bin/troupe-shop ]] || { echo "FAIL: troupe-shop is installed on the PATH ($bin)"; exit 1; }
[[ -n $(find "$tmp/root" -path "*libexec/troupe/troupe-shop") ]] || { echo "FAIL: no libexec/troupe/troupe-shop"; exit 1; }
# The installed troupe finds the shop's commands in its libexec, wherever the install is.
help=$("$bin/troupe" --help) || { echo "FAIL: troupe --help"; exit 1; }
[[ $help == *"($tmp/root/"*"/libexec/troupe/troupe-shop)"* ]] || { echo "FAIL: the installed troupe --help lists no troupe-shop: $help"; exit 1; }
"$bin/troupe" shop verify --help >/dev/null || { echo "FAIL: the installed troupe does not run troupe shop verify"; exit 1; }
echo "installed: troupe shop runs $(find "$tmp/root" -path '*libexec/troupe/troupe-shop')"
extra=()
[[ $sanitize != none ]] && extra=(-Db_sanitize="$sanitize" -Db_lundef=false -Dcpp_args=-Wno-maybe-uninitialized)
export PKG_CONFIG_SYSROOT_DIR=$tmp/root PKG_CONFIG_PATH=$(dirname "$pc")
meson setup "$tmp/example" "$src/examples/embed" --wrap-mode=nofallback "${extra[@]}" >"$tmp/setup.log" 2>&1 || { cat "$tmp/setup.log"; exit 1; }
ninja -C "$tmp/example" >"$tmp/build.log" 2>&1 || { tail -30 "$tmp/build.log"; exit 1; }
out=$("$tmp/example/greeter")
echo "$out"
[[ $out == "Greeted: hello, edge" ]] || { echo "FAIL: unexpected output"; exit 1; }
echo "embed: ok"
