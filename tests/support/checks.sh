# Shared by the shell tests: source it, then count failures with `check` and poll for a
# condition with a deadline with `wait_for` (never a fixed sleep).
failures=0

check() {  # description, command...: run the command; ok or FAIL, counted
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; failures=$((failures + 1)); fi
}

wait_for() {  # seconds, description, command...: poll until the command succeeds
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@"; do
    if ((SECONDS > deadline)); then echo "FAIL: $what (not within the deadline)"; failures=$((failures + 1)); return 1; fi
    sleep 0.1
  done
  echo "ok: $what"
}
