#!/usr/bin/python3
"""wallprofile: where a Python program's wall-clock time goes, by sampling, for the
Python peer (docs/performance.md, "The Python peer"). cProfile times every call, which
slows the peer to less than half its speed and inflates pure-Python functions against
the C calls (SQLite, libzmq, msgpack) they make; this samples instead.

  bench/wallprofile.py OUT.json SCRIPT [ARGS...]   run SCRIPT as __main__, sampled
  bench/wallprofile.py --report OUT.json           what a run spent, by area and line

Every millisecond SIGALRM takes a sample: the Python line running and every function on
the stack. A sample is weighted by the time since the previous one, so one that waited
for a long C call (an fsync, a poll) carries that call's time; it lands on the line that
made the call. The samples are written when SCRIPT exits (a SIGTERM that it handles by
returning, as a troupe node does, included). Debian's python3 only.
"""
import atexit
import collections
import json
import os
import re
import runpy
import signal
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Areas of the Python peer's time, matched in order against "file:function:line".
AREAS = [
    ("start-up and stop (imports, opening the store and the sockets)",
     r"importlib|<frozen |typing\.py:|troupe/topology\.py:|troupe/store\.py:(__init__|close):|"
     r"troupe/node\.py:(_open|_close|_server|_client|_bind|_subscribe|_open_dealer|_start_zap):|zmq/sugar/context"),
    ("SQLite: COMMIT, an fsync per unit of work", r"troupe/store\.py:commit:"),
    ("SQLite: the outbox row and meta 'head' per event (append_event)", r"troupe/store\.py:(append_event|_set_meta):"),
    ("SQLite: the handler's state, load and save", r"troupe/store\.py:(save|load|delete|scan):"),
    ("SQLite: a savepoint per message", r"troupe/store\.py:(savepoint|release|undo|begin):"),
    ("SQLite: other", r"troupe/store\.py:"),
    ("zmq: sending (the relay after commit)", r"zmq/sugar/socket\.py:send"),
    ("zmq: receiving", r"zmq/sugar/socket\.py:recv"),
    ("zmq: its flags as enum.IntFlag", r"/enum\.py:"),
    ("zmq: poll (idle: waiting for the next message)", r"zmq/sugar/poll\.py:"),
    ("uuid7: an id per emitted event (os.urandom)", r"troupe/wire\.py:uuid7:"),
    ("time: RFC 3339 per envelope (now_rfc3339)", r"troupe/wire\.py:now_rfc3339:"),
    ("envelopes: building and encoding", r"troupe/wire\.py:(make_envelope|encode_envelope|<genexpr>):"),
    ("envelopes: decoding and checking (§2)", r"troupe/wire\.py:decode_envelope:"),
    ("msgpack: unpack", r"troupe/wire\.py:_unpack:|msgpack/__init__\.py:unpackb"),
    ("msgpack: pack", r"msgpack/__init__\.py:packb|troupe/wire\.py:pack:"),
    ("payload: depth and schema checks", r"troupe/wire\.py:(_depth|decode_payload):|troupe/schema\.py:"),
    ("metrics", r"troupe/metrics\.py:"),
    ("delivery rules (rules.py)", r"troupe/rules\.py:"),
    ("node.py itself (the loop, _apply, _offer, _handle, _emit, ...)", r"troupe/node\.py:"),
]
STARTUP, IDLE = AREAS[0][0], "zmq: poll (idle: waiting for the next message)"


def where(code):
    name = code.co_filename
    if name.startswith(ROOT + os.sep):
        name = os.path.relpath(name, ROOT)
    return f"{name}:{code.co_name}"


def run(out, argv):
    lines, funcs = collections.Counter(), collections.Counter()
    last = [time.perf_counter()]

    def sample(_signum, frame):
        now = time.perf_counter()
        weight, last[0] = now - last[0], now
        if frame is None:
            return
        lines[f"{where(frame.f_code)}:{frame.f_lineno}"] += weight
        seen = set()
        while frame is not None:
            name = where(frame.f_code)
            if name not in seen:  # recursion counts once
                seen.add(name)
                funcs[name] += weight
            frame = frame.f_back

    def dump():
        signal.setitimer(signal.ITIMER_REAL, 0)
        with open(out, "w") as f:
            json.dump({"lines": lines.most_common(), "functions": funcs.most_common()}, f)

    atexit.register(dump)
    signal.signal(signal.SIGALRM, sample)
    signal.siginterrupt(signal.SIGALRM, False)  # restart the system calls it lands in
    sys.argv = argv
    sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
    signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
    runpy.run_path(argv[0], run_name="__main__")


def report(path):
    data = json.load(open(path))
    total = sum(w for _, w in data["lines"])
    funcs = dict(data["functions"])
    loop = funcs.get("python/troupe/node.py:_turn", 0)
    idle = funcs.get("/usr/lib/python3/dist-packages/zmq/sugar/poll.py:poll", 0)
    areas = collections.Counter()
    for line, w in data["lines"]:
        area = next((name for name, rx in AREAS if re.search(rx, line)), "other")
        areas[area] += w
    busy = total - areas[IDLE] - areas[STARTUP]
    print(f"sampled {total:.3f} s: the node's loop {loop:.3f} s, of it idle in poll {idle:.3f} s; "
          f"busy (all but idle and start-up) {busy:.3f} s")
    print("\nby area, share of the busy time:")
    for name, w in areas.most_common():
        share = f"{100 * w / busy:5.1f} %" if name not in (IDLE, STARTUP) else "   —   "
        print(f"  {share}  {w:7.3f} s  {name}")
    print("\nfunctions, cumulative (with what they call):")
    for name, w in data["functions"][:30]:
        print(f"  {w:7.3f} s  {name}")
    print("\nlines, self:")
    for name, w in data["lines"][:20]:
        print(f"  {w:7.3f} s  {name}")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--report":
        report(sys.argv[2])
        return 0
    if len(sys.argv) < 3 or sys.argv[1].startswith("-"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    run(sys.argv[1], sys.argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
