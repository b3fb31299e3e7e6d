#!/usr/bin/python3
"""peer_bench: how fast ONE troupe peer process applies a durable stream, whatever
language it is written in. Plays the publisher `source` with raw ZeroMQ sockets
(Debian's python3-zmq and python3-msgpack only), as tests/conformance/conformance.py does,
and drives the conformance peer (service `peer`: each Ping {n, text} it applies is
recorded in its state and causes a Pong {n, text}, committed together).

  bench/peer_bench.py [--count N] [--mode live|replay] [--payload BYTES] [--system NAME]
                      [--scenario NAME] [--json FILE] [--keep] -- PEER_COMMAND...

The peer is started as `PEER_COMMAND... --topology FILE --state-dir DIR` in a temp dir
(the topology's defaults: durable, SQLite synchronous=FULL; ipc endpoints). scripts/bench
runs `-- build/tests/conformance/conformance_peer` (the C++ node) and `-- /usr/bin/python3
tests/conformance/peer.py` (the Python peer), which keep their state alike;
`-- build/tests/conformance/conformance_peer` works too, but rewrites all its pings per
Ping. One warm-up Ping is applied first, out of the timing, with the driver subscribed
to the peer's Pongs; then N Pings, pre-encoded (§2 envelopes, sequences 2..N+1, one
epoch, a correlation id each):

  live    published on source's XPUB at full speed with no high-water mark (nothing is
          dropped: the publisher queues what the peer has not read yet), as a stream
          the peer follows: it applies what arrives, up to batch_max per commit.
  replay  all N committed at once (a heartbeat says head N+1): the peer catches up
          from $replay pages (§7.3, each as large as it asks, at most 2048).

The time runs from the first event published (live) or the heartbeat (replay) until
the peer's Pong #N+1 arrives on its events socket (its relay after commit), or until
its `$health` says position N+1 if that Pong did not reach the driver (a slow reader
loses events past the peer's high-water mark; then timed to 0.2 s). The figure is N
over that time. Then the exactly-once check: some already-applied Pings are
published again, and one more after them; the peer must end with position N+2 and
head N+2 (one Pong per Ping applied).

Records (--json, as scripts/bench reads them): {scenario, system, metric, value, unit}
for `throughput` (events/s), `lost` and `duplicated` (events).
Exit status: 0 done, 1 the peer lost or duplicated events, failed or did not start,
2 usage.
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import zmq

# The conformance suite's raw-wire helpers (pyzmq and msgpack only): its envelopes, its
# packing, and its topology, which this bench runs with the mesh's default heartbeat.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "tests", "conformance"))
from conformance import envelope, pack, topology_text, unpack, uuid7  # noqa: E402

HEARTBEAT_S = 0.5  # the topology's default heartbeat_ms
U64_MAX = (1 << 64) - 1
START_WAIT = 30.0  # a peer not subscribed and asking by then does not start
STALL_WAIT = 30.0  # no progress at all for this long: the peer is stuck


def log(text):
    print("peer_bench: " + text, file=sys.stderr, flush=True)


class Failed(Exception):
    pass


def ping_text(n, payload):
    """The text that makes Ping {n, text} `payload` bytes of msgpack (as near as it goes)."""
    base = len(pack({"n": n, "text": ""}))
    size = max(payload - base, 1)
    text = "x" * size
    while len(pack({"n": n, "text": text})) > payload and len(text) > 1:
        text = text[:-1]
    return text


class Peer:
    """The process measured, in its own process group (killed whole on exit)."""

    def __init__(self, command, topology, state_dir, log_path):
        self.log_path = log_path
        with open(log_path, "ab") as out:
            self.proc = subprocess.Popen(command + ["--topology", topology, "--state-dir", state_dir],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def exited(self):
        return self.proc.poll()

    def stop(self, timeout=30.0):
        """SIGTERM, then its exit code; killed (None) when it does not stop in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def log_tail(self, lines=15):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace").splitlines()[-lines:]
        except OSError:
            return []


class Driver:
    """source's sockets (its XPUB and its queries ROUTER, answering $replay), the
    driver's DEALER for $health and its SUB on the peer's Pongs, in one poll loop."""

    def __init__(self, state_dir, events, epoch):
        self.events = events  # index = sequence: [envelope bytes, payload bytes]; [0] unused
        self.head = 0         # what source has committed: heartbeats and $replay answers say it
        self.incarnation, self.boot, self.epoch = uuid7(), uuid7(), epoch
        self.subs = set()
        self.asks = 0
        self.replies = {}
        self.pongs = 0
        self.last_pong = None  # (envelope bytes, when it arrived): Pongs come in sequence
        self.peer = None
        self.ctx = zmq.Context()
        ep = lambda name, role: f"ipc://{state_dir}/{name}.{role}"  # noqa: E731
        self.pub = self._socket(zmq.XPUB, bind=ep("source", "events"))
        self.pub.setsockopt(zmq.XPUB_VERBOSE, 1)
        self.router = self._socket(zmq.ROUTER, bind=ep("source", "queries"))
        self.dealer = self._socket(zmq.DEALER, connect=ep("peer", "queries"))
        self.sub = self._socket(zmq.SUB, connect=ep("peer", "events"))
        # Pong first: `$health` counts subscribers by `$heartbeat ` (the C++ node) or by
        # topic (the Python peer), so once it counts one, both are applied.
        self.sub.setsockopt(zmq.SUBSCRIBE, b"Pong ")
        self.sub.setsockopt(zmq.SUBSCRIBE, b"$heartbeat ")
        self.poller = zmq.Poller()
        for s in (self.pub, self.router, self.dealer, self.sub):
            self.poller.register(s, zmq.POLLIN)

    def _socket(self, kind, bind=None, connect=None):
        s = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, 0)  # the publisher queues what the peer has not read: nothing dropped
        s.setsockopt(zmq.RCVHWM, 0)  # every Pong reaches the count
        s.setsockopt(zmq.RECONNECT_IVL, 10)
        if bind:
            s.bind(bind)
        if connect:
            s.connect(connect)
        return s

    def close(self):
        for s in (self.pub, self.router, self.dealer, self.sub):
            s.close(0)
        self.ctx.term()

    # the loop
    def pump(self, timeout):
        for s, _ in self.poller.poll(max(int(timeout * 1000), 0)):
            while True:
                try:
                    frames = s.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if s is self.sub:
                    if frames[0] == b"Pong ":
                        self.pongs += 1
                        self.last_pong = (frames[1], time.monotonic())
                elif s is self.pub:
                    self.subs.add(frames[0])
                elif s is self.router:
                    self._query(frames)
                else:
                    env = unpack(frames[0])
                    self.replies[env.get("causationid", "")] = (env, unpack(frames[1]) if len(frames) > 1 else None)

    def wait_for(self, cond, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            value = cond()
            if value:
                return value
            if self.peer.exited() is not None:
                raise Failed(f"the peer exited (code {self.peer.exited()}) while waiting for {what}")
            if time.monotonic() >= deadline:
                raise Failed(f"no {what} within {timeout:g} s")
            self.pump(min(deadline - time.monotonic(), 0.02))

    # source
    def _query(self, frames):
        routing, env, payload = frames[:-2], unpack(frames[-2]), frames[-1]
        if env.get("type") != "$replay":
            self._answer(routing, env, "$error", {"error": "source (peer_bench) answers only $replay"})
            return
        self.asks += 1
        req = unpack(payload) if payload else {}
        first = max(int(req.get("from", 1)), 1)
        last = min(int(req.get("to", U64_MAX)), self.head)
        most = max(1, min(int(req.get("max", 512)), 2048))
        seqs = range(first, min(last, first + most - 1) + 1)
        extra = []
        for s in seqs:
            extra += self.events[s]
        before = first - 1
        header = {"head": self.head, "oldest": 1, "count": len(seqs), "incarnation": self.incarnation,
                  "boot": self.boot, "durable": True, "epoch": self.epoch,
                  "epoch_of_from": self.epoch if 0 < before <= self.head else 0}
        self._answer(routing, env, "$replay", header, extra)

    def _answer(self, routing, cause, type_, payload, extra=()):
        env = envelope(type_, "reply", "source", causationid=cause.get("id", ""))
        self.router.send_multipart(list(routing) + [pack(env), pack(payload)] + list(extra))

    def heartbeat(self):
        word = {"service": "source", "incarnation": self.incarnation, "boot": self.boot, "head": self.head,
                "oldest": 1, "durable": True, "acks": {}, "epoch": self.epoch}
        self.pub.send_multipart([b"$heartbeat ", pack(envelope("$heartbeat", "event", "source")), pack(word)])

    def publish(self, seq):
        self.pub.send_multipart([b"Ping "] + self.events[seq])

    # the peer
    def query(self, type_, timeout=10.0):
        env = envelope(type_, "query", "source")
        self.dealer.send_multipart([pack(env), pack({})])
        _, payload = self.wait_for(lambda: self.replies.pop(env["id"], None), timeout, f"answer to {type_}")
        return payload

    def upstream(self):
        health = self.query("$health")
        for u in health.get("upstreams") or []:
            if u.get("publisher") == "source":
                return health, u
        raise Failed(f"$health names no upstream 'source': {health!r}")


def run(args, workdir):
    count, mode = args.count, args.mode
    state_dir = os.path.join(workdir, "state")
    os.makedirs(state_dir, mode=0o700)
    topology = os.path.join(workdir, "peer-bench.toml")
    with open(topology, "w") as f:
        f.write(topology_text(state_dir, "none", heartbeat_ms=500))

    # Every event encoded before the clock starts: 1 the warm-up, 2..N+1 measured, N+2 the
    # marker behind the duplicates. The driver's own cost per event is a send, no more.
    events = [None]
    epoch = random.getrandbits(63) | 1
    text = ping_text(count + 2, args.payload)
    for seq in range(1, count + 3):
        env = envelope("Ping", "event", "source", seq, epoch, correlationid=f"ping-{seq}")
        events.append([pack(env), pack({"n": seq, "text": text})])
    d = Driver(state_dir, events, epoch)
    peer = Peer(args.peer, topology, state_dir, os.path.join(workdir, "peer.log"))
    d.peer = peer
    heartbeat_at = 0.0

    def beat():
        nonlocal heartbeat_at
        now = time.monotonic()
        if now >= heartbeat_at:
            d.heartbeat()
            heartbeat_at = now + HEARTBEAT_S

    try:
        # Started: subscribed to Ping and $heartbeat, asked $replay (answered: head 0),
        # and our SUB's subscription to its Pongs taken.
        def started():
            beat()
            return {b"\x01Ping ", b"\x01$heartbeat "} <= d.subs and d.asks > 0
        d.wait_for(started, START_WAIT, "subscriptions and $replay from the peer")
        d.wait_for(lambda: d.query("$health").get("subscriptions", 0) >= 1, START_WAIT,
                   "subscription to its Pongs")
        # The warm-up: one Ping applied (its first commit, its first Pong) out of the timing.
        d.head = 1
        d.publish(1)
        d.heartbeat()
        d.wait_for(lambda: (beat(), d.upstream()[1].get("position", 0) >= 1 and d.pongs >= 1)[1], START_WAIT,
                   "warm-up Ping applied")

        last = count + 1
        before = d.query("$metrics")
        t0 = time.monotonic()
        d.head = last
        if mode == "live":
            for seq in range(2, last + 1):
                d.publish(seq)
        d.heartbeat()
        heartbeat_at = time.monotonic() + HEARTBEAT_S
        # Until Pong #N+1 arrives (its envelope read once per turn of the loop, not per
        # Pong); $health now and then, for the position (and in case the driver missed
        # that Pong), and to see a peer that stopped moving.
        health_at, moved_at, position, t1, seen = 0.0, t0, 1, None, None
        while t1 is None:
            d.pump(0.02)
            beat()
            now = time.monotonic()
            if d.last_pong is not seen:
                seen = d.last_pong
                if unpack(seen[0]).get("sequence", 0) >= last:
                    t1 = seen[1]
                    break
            if now >= health_at:
                health, up = d.upstream()
                health_at = time.monotonic() + 0.2
                if up.get("position", 0) > position:
                    position, moved_at = up["position"], now
                if position >= last and health.get("head", 0) >= last:
                    t1 = now  # the driver missed Pong #N+1: timed to within this poll's 0.2 s
                    log(f"Pong #{last} did not reach the driver; timed by $health")
                elif up.get("head_regressed") or up.get("behind_retention"):
                    raise Failed(f"the peer stopped following source: {up!r}")
                elif now - moved_at > STALL_WAIT:
                    raise Failed(f"the peer is stuck at position {position} of {last} for {STALL_WAIT:g} s")
            if peer.exited() is not None:
                raise Failed(f"the peer exited (code {peer.exited()}) at position {position} of {last}")
        seconds = t1 - t0
        rate = count / seconds
        after = d.query("$metrics")
        commits = after["batch_size"]["count"] - before["batch_size"]["count"]
        commit_us = after["commit_us"]["sum"] - before["commit_us"]["sum"]

        # Exactly once: Pings it applied, again (live, as a repeated publish would come),
        # then one more; the peer must apply the last and none of the others.
        again = sorted(random.sample(range(2, last + 1), min(100, count)))
        for seq in again:
            d.publish(seq)
        d.head = count + 2
        d.publish(count + 2)
        d.heartbeat()
        d.wait_for(lambda: (beat(), d.upstream()[1].get("position", 0) >= count + 2)[1], STALL_WAIT,
                   "the marker after the repeated Pings applied")
        # A Pong commits with the position that applied its Ping: once the marker is
        # applied, head counts every Ping applied, repeats included.
        health, up = d.upstream()
        want = count + 2
        position, head = up.get("position", 0), health.get("head", 0)
        lost = max(want - min(position, head), 0)
        duplicated = max(head - want, 0)
        pongs_seen = d.pongs
        code = peer.stop()
        if code != 0:
            raise Failed(f"the peer did not stop cleanly on SIGTERM (exit {code})")
        return dict(seconds=seconds, rate=rate, lost=lost, duplicated=duplicated, position=position, head=head,
                    pongs=pongs_seen, repeated=len(again), commits=commits, commit_s=commit_us / 1e6)
    except Failed:
        for line in peer.log_tail():
            print("    " + line, file=sys.stderr)
        raise
    finally:
        peer.kill()
        d.close()


def main():
    argv = sys.argv[1:]
    peer = []
    if "--" in argv:
        at = argv.index("--")
        argv, peer = argv[:at], argv[at + 1:]
    ap = argparse.ArgumentParser(prog="bench/peer_bench.py", description=__doc__.split("\n\n")[0],
                                 usage="%(prog)s [options] -- PEER_COMMAND...",
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[2:]))
    ap.add_argument("--count", type=int, default=20000, help="Pings timed (default 20000)")
    ap.add_argument("--mode", choices=("live", "replay"), default="live", help="how they reach the peer")
    ap.add_argument("--payload", type=int, default=100, metavar="BYTES", help="Ping payload size (default 100)")
    ap.add_argument("--system", default="peer", help="the system name in the records (default peer)")
    ap.add_argument("--scenario", help="the scenario name in the records (default peer-apply-durable[-replay])")
    ap.add_argument("--json", metavar="FILE", help="write the records here as a JSON array")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (topology, store, the peer's log)")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return 0 if e.code == 0 else 2
    if not peer:
        ap.print_usage(sys.stderr)
        log("give the peer's command after --")
        return 2
    if args.count < 1:
        log("--count must be at least 1")
        return 2
    args.peer = peer
    scenario = args.scenario or "peer-apply-durable" + ("-replay" if args.mode == "replay" else "")
    workdir = tempfile.mkdtemp(prefix="troupe-peer-bench-")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # the finally clauses kill the peer
    records, status = [], 0
    try:
        r = run(args, workdir)
        records = [dict(scenario=scenario, system=args.system, metric="throughput", value=round(r["rate"], 1),
                        unit="events/s"),
                   dict(scenario=scenario, system=args.system, metric="lost", value=r["lost"], unit="events"),
                   dict(scenario=scenario, system=args.system, metric="duplicated", value=r["duplicated"],
                        unit="events")]
        print(f"{args.system}: {args.count} Pings applied in {r['seconds']:.3f} s: {r['rate']:,.0f} events/s "
              f"({args.mode}, durable); then {r['repeated']} repeated and one more: position {r['position']}, "
              f"head {r['head']} (want {args.count + 2}): lost {r['lost']}, duplicated {r['duplicated']}; "
              f"{r['pongs']} Pongs seen; {r['commits']} units of work while timed, "
              f"{r['commit_s']:.3f} s in them")
        if r["lost"] or r["duplicated"]:
            log(f"{args.system} broke the promise: lost {r['lost']}, duplicated {r['duplicated']}")
            status = 1
    except Failed as e:
        log(f"{args.system}: {e}")
        status = 1
    finally:
        if args.keep:
            log("kept " + workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
            f.write("\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
