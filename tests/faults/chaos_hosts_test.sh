#!/usr/bin/env bash
# A short seeded chaos run across hosts (scripts/chaos --hosts): every service in its own
# network namespace over tcp, at least 1 partition, 5 SIGKILLs with restarts and 1
# SIGSTOP stall under a steady order load; nothing lost, duplicated or stuck. shipping
# runs as the Python service (--python): the second language is partitioned, killed and
# stalled like the rest, in the one CI run that already pays for hosts.
# Exits 77 (skipped) where network namespaces cannot be made (no root, no iproute2).
# With a TOPOLOGY (topology/shop-partitioned-tcp.toml), the same with every instance of
# the partitioned services on a host of its own.
# Usage: chaos_hosts_test.sh SOURCE_ROOT BUILD_ROOT [TOPOLOGY]
set -uo pipefail
cd "$1"
export TROUPE_BUILD_DIR=$2
topology=()
[[ -n ${3:-} ]] && topology=(--topology "$3")
out=$(scripts/chaos --hosts --python --duration 30 --seed 11 --rate 150 "${topology[@]}" 2>&1)
rc=$?
if ((rc == 77)); then
  tail -1 <<<"$out"
  exit 77
fi
echo "$out" | grep -v "^chaos: t=\|Killed" | tail -6
echo "$out" | grep "PARTITION\|HEAL"
last=$(tail -1 <<<"$out")
counts='.*\(([0-9]+) kills, ([0-9]+) stalls, ([0-9]+) partitions\).*'
kills=$(sed -nE "s/$counts/\1/p" <<<"$last")
stalls=$(sed -nE "s/$counts/\2/p" <<<"$last")
partitions=$(sed -nE "s/$counts/\3/p" <<<"$last")
echo "kills: ${kills:-?}, stalls: ${stalls:-?}, partitions: ${partitions:-?}"
failures=0
[[ $rc -eq 0 ]] || { echo "FAIL: chaos exited $rc"; failures=$((failures + 1)); }
[[ $last == *"lost=0 duplicated=0 stuck=0"* ]] || { echo "FAIL: $last"; failures=$((failures + 1)); }
[[ ${partitions:-0} -ge 1 ]] || { echo "FAIL: only ${partitions:-0} partitions"; failures=$((failures + 1)); }
[[ ${kills:-0} -ge 5 ]] || { echo "FAIL: only ${kills:-0} kills"; failures=$((failures + 1)); }
[[ ${stalls:-0} -ge 1 ]] || { echo "FAIL: only ${stalls:-0} stalls"; failures=$((failures + 1)); }
echo "chaos hosts test: $failures failure(s)"
exit $((failures > 0))
