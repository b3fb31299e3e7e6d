#!/usr/bin/env bash
# A short seeded chaos run (scripts/chaos): at least 6 SIGKILLs with restarts and 2
# SIGSTOP stalls under a steady order load; nothing lost, duplicated or stuck.
# With a TOPOLOGY (the partitioned shop), the same on it: single partitions are killed.
# Usage: chaos_test.sh SOURCE_ROOT BUILD_ROOT [TOPOLOGY]
set -uo pipefail
cd "$1"
export TROUPE_BUILD_DIR=$2
topology=()
[[ -n ${3:-} ]] && topology=(--topology "$3")
out=$(scripts/chaos --duration 30 --seed 11 --rate 150 "${topology[@]}" 2>&1)
rc=$?
echo "$out" | grep -v "^chaos: t=" | tail -6
echo "$out" | grep -c "SIGKILL" | sed 's/^/kills: /'
echo "$out" | grep -c "SIGSTOP" | sed 's/^/stalls: /'
last=$(tail -1 <<<"$out")
kills=$(sed -nE 's/.*\(([0-9]+) kills, ([0-9]+) stalls\).*/\1/p' <<<"$last")
stalls=$(sed -nE 's/.*\(([0-9]+) kills, ([0-9]+) stalls\).*/\2/p' <<<"$last")
failures=0
[[ $rc -eq 0 ]] || { echo "FAIL: chaos exited $rc"; failures=$((failures + 1)); }
[[ $last == *"lost=0 duplicated=0 stuck=0"* ]] || { echo "FAIL: $last"; failures=$((failures + 1)); }
[[ ${kills:-0} -ge 6 ]] || { echo "FAIL: only ${kills:-0} kills"; failures=$((failures + 1)); }
[[ ${stalls:-0} -ge 2 ]] || { echo "FAIL: only ${stalls:-0} stalls"; failures=$((failures + 1)); }
if [[ -n ${3:-} ]] && ! grep -qE "SIGKILL [a-z]+\.[0-9]+, restart" <<<"$out"; then
  echo "FAIL: no single partition was killed"; failures=$((failures + 1))
fi
echo "chaos test: $failures failure(s)"
exit $((failures > 0))
