# Shared by the shell tests: source it, then count failures with `check` and poll for a
# condition with a deadline with `wait_for` (never a fixed sleep).
failures=0

check() {  # description, command...: run the command; ok or FAIL, counted (and returned)
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; failures=$((failures + 1)); return 1; fi
}

wait_for() {  # seconds, description, command...: poll until the command succeeds
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@"; do
    if ((SECONDS > deadline)); then echo "FAIL: $what (not within the deadline)"; failures=$((failures + 1)); return 1; fi
    sleep 0.1
  done
  echo "ok: $what"
}

# JSON is read with jq, never with grep or sed over its text (a field's order, spacing or
# a nested field of the same name would fool a pattern). Input that is not JSON, or no
# input at all (a command that failed and printed only to stderr), fails every check
# below, so none passes on garbage or on nothing.
json() {  # filter [jq options...]: the filter's raw output for the JSON on stdin; nothing if it is not JSON
  local filter=$1; shift
  jq -r "$@" "$filter" 2>/dev/null
}
load_line() {  # the summary of `troupe shop load --json` on stdin, as its human last line says it
  json '"orders: \(.orders) placed, \(.confirmed) confirmed, \(.cancelled) cancelled, \(.stuck) stuck"'
}
json_is() {  # filter: true when stdin is one JSON value and the filter holds for it
  jq -e -s "length == 1 and (.[0] | $1)" >/dev/null 2>&1
}
json_count() {  # filter [file]: how many JSON values (JSON lines) on stdin or in the file satisfy the filter
  jq -s "map(select($1)) | length" ${2:+"$2"} 2>/dev/null || echo "not JSON"
}
json_any() {  # filter [file]: some JSON value on stdin or in the file satisfies the filter
  jq -e -s "any(.[]; $1)" ${2:+"$2"} >/dev/null 2>&1
}
json_none() {  # filter [file]: the input is JSON, not empty, and no value satisfies the filter
  jq -e -s "length > 0 and (any(.[]; $1) | not)" ${2:+"$2"} >/dev/null 2>&1
}
