#!/usr/bin/python3
"""The troupe conformance suite: drives ONE peer process through the wire protocol from
outside, with raw ZeroMQ sockets (pyzmq + msgpack only), and checks what
docs/protocol.md and docs/guarantees.md promise. Any troupe peer must pass it.

    conformance.py --troupe PATH_TO_troupe_CLI [--expect-failure TEXT] [--only NAME...]
                   [-v] [--keep] [--list] -- PEER_COMMAND...

The driver writes a topology into a temp dir and starts the peer as
`PEER_COMMAND... --topology FILE --state-dir DIR`; the peer is the service `peer`:

  [services.source]  played by this driver: publishes Ping {n, text}, sends peer Note
  [services.peer]    the peer under test: reacts to source/Ping (appends n to its state,
                     emits Pong {n, text} caused by the Ping), accepts Note {text}
                     (appends text; "refuse" is refused into dead letters, rolled back),
                     answers GetState {} -> State {pings: [uint], notes: [str]}
  [clients.driver]   the driver's one-shot identity (commands, queries, events: "*")
  [clients.kiosk]    may ask peer queries, not read its events (CURVE phase)
  [taps.tap]         watches mirrors (CURVE phase)

Two phases: security = "none" (the delivery rules, built-ins, a restart, a replaced
store), then security = "curve" with keys from `troupe keygen --mesh` (admission, forged
sources, tap mirrors, epochs). Each check prints `ok: §X.Y what` or
`FAIL: §X.Y what: detail`; the last line is `conformance: N passed, N failed`, and the
exit status is 1 if any failed. `--expect-failure TEXT` inverts the verdict: exit 0
only if some FAIL line contains TEXT (to show the suite catches a broken peer).
`--only NAME...` reports only the named checks (`--list` lists them); the checks
before them in their phase still run, silently, since each builds on the last.
`-v` also prints `info:` lines with what the peer did on the wire ($replay asks, refusal
reasons); `--keep` keeps the temp dir (topologies, stores, the peer's logs). The peer is
killed with its process group on exit, whatever happens.
"""
import argparse
import atexit
import datetime
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

HEARTBEAT_MS = 100
HB = HEARTBEAT_MS / 1000.0
# The longest wait for something that must happen (generous: the sanitizers' build is
# slow; a peer that passes never waits this long). What must NOT happen is watched for a
# few heartbeats only (Harness.stays).
WAIT = 5.0
VERBOSE = False
U64_MAX = (1 << 64) - 1
UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
RFC3339_US = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
# The envelope of §2: key -> msgpack type (Python type after decoding), required.
ENVELOPE_KEYS = {
    "specversion": (str, True), "id": (str, True), "source": (str, True), "type": (str, True),
    "time": (str, False), "datacontenttype": (str, False), "kind": (str, True),
    "sequence": (int, False), "epoch": (int, False), "correlationid": (str, False),
    "causationid": (str, False), "traceparent": (str, False), "schemaversion": (int, False),
}


# --- wire helpers -------------------------------------------------------------------

def uuid7():
    ms = int(time.time() * 1000)
    r = os.urandom(10)
    b = ms.to_bytes(6, "big") + bytes([0x70 | (r[0] & 0x0F), r[1], 0x80 | (r[2] & 0x3F)]) + r[3:10]
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def pack(value):
    return msgpack.packb(value, use_bin_type=True)


def unpack(data):
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def envelope(type_, kind, source, sequence=0, epoch=0, correlationid="", causationid="", id_=None):
    """A §2 envelope as troupe writes it: the table's order, zero and empty keys left out."""
    e = {"specversion": "1.0", "id": id_ or uuid7(), "source": source, "type": type_,
         "time": now_rfc3339(), "datacontenttype": "application/msgpack", "kind": kind}
    if sequence:
        e["sequence"] = sequence
    if epoch:
        e["epoch"] = epoch
    if correlationid:
        e["correlationid"] = correlationid
    if causationid:
        e["causationid"] = causationid
    e["schemaversion"] = 1
    return e


def read_key(path):
    """A key file's key: its first line that is not empty and not a # comment (§8)."""
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                return line.encode()
    raise RuntimeError(f"{path} holds no key")


def new_epoch():
    return random.getrandbits(63) | 1


def info(text):
    """What the peer did on the wire, for whoever makes another peer match (-v)."""
    if VERBOSE:
        print(f"info: {text}", flush=True)


class Failed(Exception):
    """A check's claim did not hold; `section` overrides the check's own."""

    def __init__(self, detail, section=None):
        super().__init__(detail)
        self.section = section


def expect(cond, detail, section=None):
    if not cond:
        raise Failed(detail, section)


def upstream(health, publisher):
    for u in health.get("upstreams") or []:
        if isinstance(u, dict) and u.get("publisher") == publisher:
            return u
    raise Failed(f"$health upstreams has no entry for publisher '{publisher}' (got {health.get('upstreams')!r})",
                 "§7.5")


# --- the topology -------------------------------------------------------------------

def topology_text(state_dir, security, heartbeat_ms=HEARTBEAT_MS):
    def endpoints(name):
        return "".join(f'{role} = "ipc://{{state_dir}}/{name}.{role}"\n' for role in ("events", "commands", "queries"))
    keys = 'keys_dir = "{state_dir}/keys"\n' if security == "curve" else ""
    return f"""# Written by tests/conformance/conformance.py for one run.
[mesh]
name = "conformance"
state_dir = "{state_dir}"
heartbeat_ms = {heartbeat_ms}
durability = "durable"
security = "{security}"
{keys}
[services.source]   # played by the driver
{endpoints("source")}publishes = ["Ping"]
sends = {{ peer = ["Note"] }}

[services.peer]     # the peer under test
{endpoints("peer")}publishes = ["Pong"]
accepts = ["Note"]
answers = ["GetState"]
reacts_to = {{ source = ["Ping"] }}

[clients.driver]    # the driver's one-shot identity
commands = ["*"]
queries = ["*"]
events = ["*"]

[clients.kiosk]     # may ask the peer queries, never read its events
queries = ["peer"]

[taps.tap]
"""


# --- the peer process ---------------------------------------------------------------

class Peer:
    """The process under test, in its own process group (killed whole on exit)."""

    def __init__(self, command, log_path):
        self.command = command
        self.log_path = log_path
        self.proc = None
        self.stopping = False

    def start(self, topology, state_dir):
        with open(self.log_path, "ab") as log:
            log.write(f"--- conformance: starting {' '.join(self.command)}\n".encode())
            self.proc = subprocess.Popen(self.command + ["--topology", topology, "--state-dir", state_dir],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.stopping = False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def died(self):
        """The exit code when the peer ended without being asked to, else None."""
        if self.proc is None or self.stopping:
            return None
        return self.proc.poll()

    def terminate(self):
        self.stopping = True
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def kill(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""


# --- the driver's side of the mesh --------------------------------------------------

class Source:
    """The store of service `source`, which the driver plays: its events, identity and epoch."""

    def __init__(self):
        self.replace()

    def replace(self):
        """A new store: new incarnation and epoch, no events (a replaced store, §7.2)."""
        self.incarnation = uuid7()
        self.boot = uuid7()
        self.epoch = new_epoch()
        self.events = {}  # sequence -> (envelope dict, envelope bytes, payload bytes, epoch)

    @property
    def head(self):
        return max(self.events, default=0)

    def append(self, payload, correlationid="", sequence=None):
        seq = sequence or self.head + 1
        env = envelope("Ping", "event", "source", seq, self.epoch, correlationid)
        self.events[seq] = (env, pack(env), pack(payload), self.epoch)
        return seq

    def epoch_of(self, seq):
        ev = self.events.get(seq)
        return ev[3] if ev else 0

    def heartbeat(self):
        return {"service": "source", "incarnation": self.incarnation, "boot": self.boot, "head": self.head,
                "oldest": 1 if self.events else self.head + 1, "durable": True, "acks": {}, "epoch": self.epoch}


class Reply:
    def __init__(self, frames):
        self.frames = frames
        self.env = unpack(frames[0])
        self.payload = unpack(frames[1]) if len(frames) > 1 else None
        self.extra = frames[2:]

    @property
    def type(self):
        return self.env.get("type")


class Harness:
    """Every socket the driver holds, one poll loop over them all (pump), and the
    records of what came: the peer's heartbeats and Pongs, its subscriptions and
    $replay asks at `source`, and replies to our queries."""

    def __init__(self, state_dir, keys=None):
        self.ctx = zmq.Context()
        self.state_dir = state_dir
        self.keys = keys  # name -> (public, secret) under CURVE, else None
        self.source = Source()
        self.sockets = {}
        self.handlers = {}
        self.subs = []        # (time, bytes) subscriptions read on source's XPUB
        self.asks = []        # (time, routing, envelope, request) $replay asks at source
        self.bad_asks = []    # what else reached source's queries endpoint
        self.heartbeats = []  # (time, envelope, payload) of the peer
        self.pongs = []       # (time, [topic, envelope, payload]) of the peer, live
        self.replies = {}     # causationid -> Reply
        self.auto_replay = True
        self.auto_heartbeat = False
        self.next_heartbeat = 0.0
        self.peer = None
        ep = lambda name, role: f"ipc://{state_dir}/{name}.{role}"  # noqa: E731
        # source's side: an XPUB (so the peer's subscriptions show) and its queries ROUTER.
        self.src_pub = self.socket(zmq.XPUB, server="source", bind=ep("source", "events"))
        self.src_pub.setsockopt(zmq.XPUB_VERBOSE, 1)
        self.src_router = self.socket(zmq.ROUTER, server="source", bind=ep("source", "queries"))
        # Towards the peer: as `source` (sequenced commands), as `driver` (one-shot
        # commands, queries, its events).
        self.src_push = self.socket(zmq.PUSH, identity="source", connect=ep("peer", "commands"))
        self.cli_push = self.socket(zmq.PUSH, identity="driver", connect=ep("peer", "commands"))
        self.dealer = self.socket(zmq.DEALER, identity="driver", connect=ep("peer", "queries"))
        self.peer_sub = self.socket(zmq.SUB, identity="driver", subscribe=[b"$heartbeat ", b"Pong "],
                                    connect=ep("peer", "events"))
        self.on(self.src_pub, self._subscription)
        self.on(self.src_router, self._source_query)
        self.on(self.dealer, self._reply)
        self.on(self.peer_sub, self._peer_event)

    # sockets

    def socket(self, kind, server=None, identity=None, bind=None, connect=None, subscribe=()):
        s = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        if self.keys and server:
            s.curve_secretkey = self.keys[server][1]
            s.curve_publickey = self.keys[server][0]
            s.curve_server = True
        elif self.keys and identity:
            public, secret = self.keys[identity] if isinstance(identity, str) else identity
            s.curve_secretkey = secret
            s.curve_publickey = public
            s.curve_serverkey = self.keys["peer"][0]
        for topic in subscribe:
            s.setsockopt(zmq.SUBSCRIBE, topic)
        if bind:
            s.bind(bind)
        if connect:
            s.connect(connect)
        self.sockets[s] = True
        return s

    def endpoint(self, role):
        return f"ipc://{self.state_dir}/peer.{role}"

    def on(self, sock, handler):
        self.handlers[sock] = handler

    def close(self):
        for s in list(self.sockets):
            s.close(linger=0)
        self.sockets.clear()
        self.handlers.clear()
        self.ctx.term()

    # the loop

    def pump(self, timeout):
        now = time.monotonic()
        if self.auto_heartbeat and now >= self.next_heartbeat:
            self.send_heartbeat()
            self.next_heartbeat = now + HB
        wait = timeout
        if self.auto_heartbeat:
            wait = max(0.0, min(wait, self.next_heartbeat - now))
        poller = zmq.Poller()
        for s in self.handlers:
            poller.register(s, zmq.POLLIN)
        for s, _ in poller.poll(int(wait * 1000)):
            handler = self.handlers.get(s)
            while handler:
                try:
                    frames = s.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                handler(frames)

    def wait_for(self, cond, timeout):
        """Polls `cond` (pumping the sockets) until it is truthy or `timeout` passes;
        returns its last value. Fails at once when the peer dies."""
        deadline = time.monotonic() + timeout
        while True:
            value = cond()
            if value:
                return value
            if self.peer is not None and self.peer.died() is not None:
                raise Failed(f"the peer exited (code {self.peer.died()}); see its log below")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return value
            self.pump(min(remaining, 0.02))

    def stays(self, cond, window):
        """Pumps for `window` seconds (a stretch of heartbeats) and says whether `cond`
        held all along: for what must NOT happen."""
        deadline = time.monotonic() + window
        while time.monotonic() < deadline:
            if not cond():
                return False
            self.pump(min(deadline - time.monotonic(), 0.02))
        return cond()

    # what arrives

    def _subscription(self, frames):
        self.subs.append((time.monotonic(), frames[0]))

    def _peer_event(self, frames):
        if len(frames) != 3:
            return
        t = time.monotonic()
        if frames[0] == b"$heartbeat ":
            try:
                self.heartbeats.append((t, unpack(frames[1]), unpack(frames[2])))
            except Exception:  # noqa: BLE001 - the heartbeat check reports unreadable ones
                self.heartbeats.append((t, {}, {"unreadable": frames[2]}))
        elif frames[0] == b"Pong ":
            self.pongs.append((t, frames))

    def _reply(self, frames):
        try:
            r = Reply(frames)
        except Exception:  # noqa: BLE001
            return
        self.replies[r.env.get("causationid", "")] = r

    def _source_query(self, frames):
        if len(frames) < 3:
            return
        routing, env_bytes, payload = frames[:-2], frames[-2], frames[-1]
        try:
            env, req = unpack(env_bytes), unpack(payload)
        except Exception:  # noqa: BLE001 - what the peer asks must be msgpack; the checks see no ask
            self.bad_asks.append(frames)
            return
        if not isinstance(env, dict) or env.get("type") != "$replay" or not isinstance(req, dict) or not all(
                isinstance(req.get(k, 1), int) and not isinstance(req.get(k, 1), bool) for k in ("from", "to", "max")):
            self.bad_asks.append(frames)
            self.answer(routing, env if isinstance(env, dict) else {}, "$error",
                        {"error": f"source (the driver) answers only $replay {{from, to, max: uint}}, not {req!r}"})
            return
        self.asks.append((time.monotonic(), routing, env, req))
        if self.auto_replay:
            self.answer_replay(routing, env, req)

    # what the driver sends as `source`

    def answer(self, routing, cause, type_, payload, extra=()):
        env = envelope(type_, "reply", "source", causationid=cause.get("id", ""))
        self.src_router.send_multipart(list(routing) + [pack(env), pack(payload)] + list(extra))

    def answer_replay(self, routing, env, req):
        src = self.source
        first = req.get("from", 1)
        last = min(req.get("to", U64_MAX), src.head)
        most = max(1, min(req.get("max", 512), 2048))
        seqs = [s for s in sorted(src.events) if first <= s <= last][:most]
        extra = []
        for s in seqs:
            extra += [src.events[s][1], src.events[s][2]]
        before = first - 1
        header = {"head": src.head, "oldest": 1 if src.events else src.head + 1, "count": len(seqs),
                  "incarnation": src.incarnation, "boot": src.boot, "durable": True, "epoch": src.epoch,
                  "epoch_of_from": src.epoch_of(before) if 0 < before <= src.head else 0}
        self.answer(routing, env, "$replay", header, extra)

    def answer_pending(self, since=0):
        """Answers every ask since mark `since` (stale ones are the peer's to ignore)."""
        for _, routing, env, req in self.asks[since:]:
            self.answer_replay(routing, env, req)

    def send_heartbeat(self):
        env = envelope("$heartbeat", "event", "source")
        self.src_pub.send_multipart([b"$heartbeat ", pack(env), pack(self.source.heartbeat())])

    def publish(self, seq):
        env, env_bytes, payload, _ = self.source.events[seq]
        self.src_pub.send_multipart([b"Ping ", env_bytes, payload])

    def ping(self, n, text=None, live=True, payload=None):
        seq = self.source.append(payload if payload is not None else {"n": n, "text": text or f"ping {n}"},
                                 correlationid=f"corr-{n}")
        if live:
            self.publish(seq)
        return seq

    def command(self, text, sequence=0, source=None, sock=None, id_=None, epoch=None):
        """Sends Note {text}: sequenced as `source`, else one-shot as `driver` (unless
        told otherwise); returns (envelope dict, frames) for resending."""
        source = source or ("source" if sequence else "driver")
        if sequence and epoch is None:
            epoch = self.source.epoch
        env = envelope("Note", "command", source, sequence, epoch or 0, id_=id_)
        frames = [pack(env), pack({"text": text})]
        (sock or (self.src_push if sequence else self.cli_push)).send_multipart(frames)
        return env, frames

    # queries to the peer

    def query(self, type_, payload=None, timeout=WAIT, sock=None, raw_payload=None):
        sock = sock or self.dealer
        env = envelope(type_, "query", "driver")
        sock.send_multipart([pack(env), raw_payload if raw_payload is not None else pack(payload or {})])
        r = self.wait_for(lambda: self.replies.get(env["id"]), timeout)
        if not r:
            raise Failed(f"no reply to {type_} within {timeout:g} s")
        del self.replies[env["id"]]
        return r

    def ask(self, type_, payload=None, section="§7.5"):
        """A query whose answer must be its own type; returns the payload."""
        r = self.query(type_, payload)
        expect(r.type == type_, f"{type_} answered type {r.type!r} ({r.payload!r})", section)
        return r.payload

    def state(self):
        return self.ask("GetState", section="§7.5")

    def health(self):
        return self.ask("$health")

    def metrics(self):
        return self.ask("$metrics")

    def dead_letters(self):
        return self.ask("$deadletters", {"op": "list", "max": 1000})

    def seen(self, ids):
        return self.ask("$seen", {"ids": ids}, section="§7.4")

    def pings(self):
        return self.state().get("pings")

    def notes(self):
        return self.state().get("notes")

    def last_heartbeat(self):
        return self.heartbeats[-1][2] if self.heartbeats else None


# --- the checks ---------------------------------------------------------------------

CHECKS = []  # (phase, name, section, what, function)


def check(phase, name, section, what):
    def register(f):
        CHECKS.append((phase, name, section, what, f))
        return f
    return register


class Run:
    """What a phase's checks share: the harness, the peer, and what earlier checks saw."""

    def __init__(self, args, workdir, phase):
        self.args = args
        self.workdir = workdir
        self.peer = Peer(args.peer, os.path.join(workdir, f"peer-{phase}.log"))
        self.h = None
        self.topology = None
        self.state_dir = None
        self.expected_pings = []   # what GetState must list, in order
        self.ping_pongs = {}       # Ping sequence -> expected Pong sequence
        self.oneshot_id = None

    def start_peer(self):
        self.peer.start(self.topology, self.state_dir)
        self.h.peer = self.peer

    def stop_peer(self, timeout=10.0):
        self.peer.terminate()
        self.h.wait_for(lambda: not self.peer.alive(), timeout)
        if self.peer.alive():
            self.peer.kill()
            return None
        return self.peer.proc.returncode

    def wait_subscribed(self, since, timeout=WAIT):
        got = lambda: {s for t, s in self.h.subs if t >= since}  # noqa: E731
        return self.h.wait_for(lambda: {b"\x01Ping ", b"\x01$heartbeat "} <= got(), timeout)

    def apply_pings(self, ns, timeout=WAIT):
        """Waits until GetState lists `ns` after what it listed; fails naming what it saw."""
        self.expected_pings += ns
        want = list(self.expected_pings)
        if not self.h.wait_for(lambda: self.h.pings() == want, timeout):
            raise Failed(f"expected pings {want}, GetState lists {self.h.pings()}")


# ---- phase "none": the delivery rules, built-ins, restart, a replaced store

@check("none", "heartbeat", "§7.2", "the peer publishes $heartbeat about every heartbeat_ms with the fields of §7.2")
def c_heartbeat(run):
    h = run.h
    h.auto_replay = False  # the first $replay is held for the next checks (confirm)
    run.start_peer()
    got = h.wait_for(lambda: len(h.heartbeats) >= 6, 2 * WAIT)
    expect(got, f"{len(h.heartbeats)} heartbeat(s) within {2 * WAIT:g} s of starting the peer, expected 6 or more")
    for _, env, hb in h.heartbeats:
        expect(env.get("type") == "$heartbeat" and env.get("kind") == "event" and env.get("source") == "peer",
               f"heartbeat envelope type/kind/source {env.get('type')!r}/{env.get('kind')!r}/{env.get('source')!r}, "
               "expected '$heartbeat'/'event'/'peer'")
        for field, kind in (("service", str), ("incarnation", str), ("boot", str), ("head", int), ("oldest", int),
                            ("durable", bool), ("acks", dict), ("epoch", int)):
            expect(field in hb, f"heartbeat without '{field}': {hb!r}")
            expect(isinstance(hb[field], kind) and (kind is bool or not isinstance(hb[field], bool)),
                   f"heartbeat '{field}' is {type(hb[field]).__name__} {hb[field]!r}, expected {kind.__name__}")
        expect(hb["service"] == "peer", f"heartbeat service {hb['service']!r}, expected 'peer'")
        expect(UUID7.match(hb["incarnation"]) and UUID7.match(hb["boot"]),
               f"incarnation {hb['incarnation']!r} / boot {hb['boot']!r}: expected UUIDv7 strings")
        expect(hb["durable"] is True, "heartbeat durable is not true in a durable mesh")
        expect(hb["epoch"] > 0, "heartbeat epoch is 0: a durable store draws one each time it is opened (§7.1)")
        expect(all(isinstance(k, str) and isinstance(v, int) for k, v in hb["acks"].items()),
               f"acks is not a map str -> uint: {hb['acks']!r}")
    first = h.heartbeats[0][2]
    expect(first["head"] == 0 and first["oldest"] == 1,
           f"a fresh store's heartbeat says head {first['head']} oldest {first['oldest']}, expected 0 and 1 "
           "(oldest is head + 1 when nothing is retained)")
    expect(len({hb["incarnation"] for _, _, hb in h.heartbeats}) == 1, "the incarnation changed between heartbeats")
    times = [t for t, _, _ in h.heartbeats[1:]]
    gaps = sorted(b - a for a, b in zip(times, times[1:]))
    median = gaps[len(gaps) // 2]
    expect(0.4 * HB <= median <= 2.5 * HB,
           f"heartbeats come every {median * 1000:.0f} ms (median), expected about heartbeat_ms = {HEARTBEAT_MS}")
    info(f"heartbeat: {first!r}")


@check("none", "subscribe", "§7.1", "the peer subscribes to every type its publisher publishes and to $heartbeat")
def c_subscribe(run):
    ok = run.wait_subscribed(0)
    seen = sorted({s for _, s in run.h.subs})
    expect(ok, f"source's events socket saw subscriptions {seen}, expected b'\\x01Ping ' and b'\\x01$heartbeat '")


@check("none", "confirm", "§7.2",
       "nothing from source is applied before a $replay answer confirms it; the first $replay asks from position + 1")
def c_confirm(run):
    h = run.h
    h.auto_replay = False
    ask = h.wait_for(lambda: h.asks, WAIT)
    expect(ask, f"the peer sent source no $replay within {WAIT:g} s of starting (it replays from its position on "
           f"start; other messages to source's queries endpoint: {h.bad_asks[:2]!r})", "§7.1")
    _, _, env, req = h.asks[0]
    info(f"first $replay to source: envelope {env!r}, request {req!r}")
    expect(env.get("kind") == "query" and env.get("source") == "peer",
           f"$replay envelope kind/source {env.get('kind')!r}/{env.get('source')!r}, expected 'query'/'peer'", "§7.3")
    expect(req.get("from", 1) == 1, f"the first $replay asks from {req.get('from')}, expected 1 (position 0 + 1)",
           "§7.3")
    # Ping #1 live, and source's heartbeat saying head 1 (with its epoch): an event of an
    # epoch no $replay answer has checked yet is not applied (§7.1).
    h.ping(1)
    h.send_heartbeat()
    info("source published Ping #1 (its epoch) and a heartbeat saying head 1 and that epoch; $replay held")
    # The peer has it once its $health knows head 1 (or after 5 heartbeats).
    h.wait_for(lambda: upstream(h.health(), "source").get("known_head", 0) >= 1, 5 * HB)
    up = upstream(h.health(), "source")
    pings = h.pings()
    expect(pings == [] and up.get("position") == 0,
           f"applied Ping #1 before any $replay answer confirmed source (pings {pings}, position {up.get('position')})")
    h.auto_replay = True
    h.auto_heartbeat = True
    h.answer_pending()
    run.apply_pings([1])
    run.ping_pongs[1] = 1


@check("none", "order", "§7.1",
       "Pings 1..5 are applied in order once; Pongs come out numbered 1..5, each caused by its Ping")
def c_order(run):
    h = run.h
    for n in range(2, 6):
        seq = h.ping(n)
        run.ping_pongs[seq] = seq
    run.apply_pings([2, 3, 4, 5])
    h.wait_for(lambda: len(h.pongs) >= 5, WAIT)
    expect(len(h.pongs) == 5, f"{len(h.pongs)} Pong(s) seen on the peer's events socket, expected 5")
    for i, (_, frames) in enumerate(h.pongs, start=1):
        env, data = unpack(frames[1]), unpack(frames[2])
        ping_env = h.source.events[i][0]
        expect(frames[0] == b"Pong ", f"Pong topic {frames[0]!r}, expected b'Pong '", "§1")
        expect(env.get("sequence") == i, f"Pong #{i} carries sequence {env.get('sequence')}, expected {i} "
               f"(sequences seen: {[unpack(f[1]).get('sequence') for _, f in h.pongs]})")
        expect(data == {"n": i, "text": f"ping {i}"}, f"Pong #{i} payload {data!r}, expected n {i} and Ping's text",
               "§3")
        expect(env.get("causationid") == ping_env["id"],
               f"Pong #{i} causationid {env.get('causationid')!r}, expected its Ping's id {ping_env['id']!r}", "§2")
        expect(env.get("correlationid") == ping_env["correlationid"],
               f"Pong #{i} correlationid {env.get('correlationid')!r}, expected the Ping's "
               f"{ping_env['correlationid']!r}", "§2")


@check("none", "envelope", "§2", "Pong envelopes carry the keys of §2 with their msgpack types")
def c_envelope(run):
    h = run.h
    expect(h.pongs, "no Pong to look at")
    ids = set()
    epoch = h.last_heartbeat()["epoch"]
    for _, frames in h.pongs:
        env = unpack(frames[1])
        for key, (kind, required) in ENVELOPE_KEYS.items():
            if key not in env:
                expect(not required, f"Pong envelope without required key '{key}': {env!r}")
                continue
            expect(isinstance(env[key], kind) and not isinstance(env[key], bool),
                   f"Pong envelope key '{key}' is {type(env[key]).__name__} {env[key]!r}, expected {kind.__name__}")
        expect(env["specversion"].startswith("1."), f"specversion {env['specversion']!r}, expected 1.x")
        expect(env["source"] == "peer" and env["type"] == "Pong" and env["kind"] == "event",
               f"source/type/kind {env['source']!r}/{env['type']!r}/{env['kind']!r}, expected 'peer'/'Pong'/'event'")
        expect("time" not in env or RFC3339_US.match(env["time"]),
               f"time {env.get('time')!r}: expected RFC 3339 UTC with microseconds")
        expect(env.get("datacontenttype", "application/msgpack") == "application/msgpack",
               f"datacontenttype {env.get('datacontenttype')!r}")
        expect(env.get("epoch") == epoch, f"Pong epoch {env.get('epoch')!r}, expected the heartbeat's epoch {epoch}",
               "§7.1")
        expect(env.get("schemaversion", 1) == 1, f"schemaversion {env.get('schemaversion')!r}, expected 1")
        expect(env["id"] and env["id"] not in ids, f"Pong id {env['id']!r} empty or not unique")
        ids.add(env["id"])


@check("none", "duplicate", "§7.1", "a duplicate event (a sequence applied already) is dropped and counted")
def c_duplicate(run):
    h = run.h
    before = h.metrics().get("duplicates", 0)
    h.publish(3)
    # The promise first (applied once: no second Pong, state unchanged), then its counter.
    expect(h.stays(lambda: len(h.pongs) == 5, 2 * HB), f"the duplicate caused a Pong ({len(h.pongs)} Pongs)")
    pings = h.pings()
    expect(pings == run.expected_pings, f"after a duplicate Ping #3 GetState lists {pings}, expected "
           f"{run.expected_pings}")
    counted = h.wait_for(lambda: h.metrics().get("duplicates", 0) > before, WAIT)
    expect(counted, f"$metrics duplicates stayed {before} after Ping #3 came again", "§7.5")


@check("none", "gap", "§7.3", "a gap (7 before 6) is repaired: $replay from exactly 6, each applied once, in order")
def c_gap(run):
    h = run.h
    h.auto_heartbeat = False  # the event alone must reveal the gap
    m0 = h.metrics()
    mark = len(h.asks)
    h.ping(6, live=False)
    h.ping(7)
    ask = h.wait_for(lambda: len(h.asks) > mark, WAIT)
    h.auto_heartbeat = True
    expect(ask, "no $replay after Ping #7 arrived with #6 missing", "§7.1")
    req = h.asks[mark][3]
    expect(req.get("from", 1) == 6, f"the $replay asks from {req.get('from')}, expected 6")
    run.ping_pongs.update({6: 6, 7: 7})
    run.apply_pings([6, 7])
    h.wait_for(lambda: h.metrics().get("gaps_repaired", 0) > m0.get("gaps_repaired", 0), WAIT)
    m1 = h.metrics()
    expect(m1.get("gaps_seen", 0) > m0.get("gaps_seen", 0) and m1.get("gaps_repaired", 0) > m0.get("gaps_repaired", 0),
           f"$metrics gaps_seen {m0.get('gaps_seen')} -> {m1.get('gaps_seen')}, gaps_repaired "
           f"{m0.get('gaps_repaired')} -> {m1.get('gaps_repaired')}: expected both to grow", "§7.5")


@check("none", "idle", "§7.2",
       "a heartbeat whose head is above the position makes the peer $replay the rest (an idle publisher's last event)")
def c_idle(run):
    h = run.h
    mark = len(h.asks)
    h.ping(8, live=False)  # committed, never published live: only the heartbeats' head says so
    ask = h.wait_for(lambda: len(h.asks) > mark, WAIT)
    expect(ask, "no $replay after heartbeats said head 8 at position 7")
    req = h.asks[mark][3]
    expect(req.get("from", 1) == 8, f"the $replay asks from {req.get('from')}, expected 8", "§7.3")
    run.ping_pongs[8] = 8
    run.apply_pings([8])


@check("none", "wrongtype", "§7.7", "an event whose payload has a wrong field type is dead-lettered; the stream goes on")
def c_wrongtype(run):
    h = run.h
    dl0 = h.dead_letters().get("count", 0)
    bad = h.ping(9, payload={"n": "nine", "text": "wrong type"})
    good = h.ping(10)
    run.ping_pongs[good] = 9
    run.apply_pings([10])
    letters = h.dead_letters()
    expect(letters.get("count", 0) == dl0 + 1, f"dead letters {dl0} -> {letters.get('count')}, expected one more")
    mine = [l for l in letters.get("letters", []) if l.get("type") == "Ping" and l.get("source") == "source"]
    expect(mine, f"no dead letter of type Ping from source: {letters.get('letters')!r}")
    expect(str(mine[0].get("endpoint", "")).startswith("events"),
           f"the letter's endpoint is {mine[0].get('endpoint')!r}, expected events (events:source)")
    up = upstream(h.health(), "source")
    expect(up.get("position") == good, f"position {up.get('position')} after Ping #{bad} was refused and #{good} "
           f"applied, expected {good}", "§7.1")


@check("none", "seqcmd", "§7.4",
       "a sequenced command from source sent twice is applied once; the heartbeat acks say source: 2")
def c_seqcmd(run):
    h = run.h
    _, frames = h.command("s1", sequence=1)
    h.src_push.send_multipart(frames)  # the same command again (a resend)
    h.command("s2", sequence=2)
    got = h.wait_for(lambda: "s2" in h.notes(), WAIT)
    notes = h.notes()
    expect(got, f"Note s2 (sequence 2) not applied within {WAIT:g} s: notes {notes}")
    expect(notes == ["s1", "s2"], f"notes {notes}, expected ['s1', 's2'] (s1 was sent twice)")
    acked = h.wait_for(lambda: (h.last_heartbeat() or {}).get("acks", {}).get("source") == 2, WAIT)
    expect(acked, f"the peer's heartbeat acks {(h.last_heartbeat() or {}).get('acks')}, expected source: 2", "§7.2")


@check("none", "seqorder", "§7.4",
       "a sequenced command ahead of its turn (4 before 3) is not applied first; resent in order, each applies once")
def c_seqorder(run):
    h = run.h
    _, s4 = h.command("s4", sequence=4)
    # Behind it on the same connection: a one-shot command, applied once s4 was dealt with.
    h.command("barrier-1", sock=h.src_push)
    h.wait_for(lambda: "barrier-1" in h.notes(), WAIT)
    notes = h.notes()
    expect("barrier-1" in notes, f"the one-shot command behind s4 was not applied: notes {notes}", "§7.4")
    expect("s4" not in notes, f"s4 (sequence 4) applied before sequence 3: notes {notes}")
    acks = (h.last_heartbeat() or {}).get("acks", {})
    info(f"s4 (sequence 4) before 3: not applied; $metrics commands_out_of_order "
         f"{h.metrics().get('commands_out_of_order')}, duplicates {h.metrics().get('duplicates')}, "
         f"dead letters {h.dead_letters().get('count')}")
    expect(acks.get("source") == 2, f"acks {acks} after s4 came alone, expected source: 2", "§7.2")
    h.command("s3", sequence=3)
    h.src_push.send_multipart(s4)  # the sender resends what is not acknowledged
    got = h.wait_for(lambda: "s4" in h.notes(), WAIT)
    notes = h.notes()
    expect(got, f"s4 not applied after s3 and a resend of s4: notes {notes}")
    seq = [n for n in notes if n.startswith("s")]
    expect(seq == ["s1", "s2", "s3", "s4"], f"sequenced notes {seq}, expected s1..s4 once each, in order")
    acked = h.wait_for(lambda: (h.last_heartbeat() or {}).get("acks", {}).get("source") == 4, WAIT)
    expect(acked, f"the heartbeat acks {(h.last_heartbeat() or {}).get('acks')}, expected source: 4", "§7.2")


@check("none", "unrouted", "§7.4", "a sequenced command from a source that sends the peer nothing is dead-lettered")
def c_unrouted(run):
    h = run.h
    dl0 = h.dead_letters().get("count", 0)
    h.command("unrouted", sequence=1, source="driver", sock=h.cli_push, epoch=0)
    h.command("barrier-2")
    h.wait_for(lambda: "barrier-2" in h.notes(), WAIT)
    notes = h.notes()
    expect("barrier-2" in notes, f"the command behind it was not applied: notes {notes}", "§7.7")
    expect("unrouted" not in notes, f"a sequenced command from 'driver' was applied: notes {notes}")
    letters = h.dead_letters()
    mine = [l for l in letters.get("letters", []) if l.get("source") == "driver" and l.get("type") == "Note"]
    expect(letters.get("count", 0) == dl0 + 1 and mine,
           f"dead letters {dl0} -> {letters.get('count')}, expected one more, a Note from 'driver'")
    acks = (h.last_heartbeat() or {}).get("acks", {})
    expect(acks.get("driver", 0) == 0, f"the heartbeat acks {acks}: a position for 'driver'", "§7.2")


@check("none", "oneshot", "§7.4",
       "a one-shot command sent twice with one id is applied once; $seen says applied, an unknown id unseen")
def c_oneshot(run):
    h = run.h
    env, frames = h.command("o1")
    h.cli_push.send_multipart(frames)
    h.command("barrier-3")
    h.wait_for(lambda: "barrier-3" in h.notes(), WAIT)
    notes = h.notes()
    expect("barrier-3" in notes, f"one-shot commands not applied within {WAIT:g} s: notes {notes}")
    expect(notes.count("o1") == 1, f"o1 (one id, sent twice) appears {notes.count('o1')} times in notes {notes}")
    unknown = uuid7()
    s = h.seen([env["id"], unknown])
    expect(s.get("seen") == [True, False], f"$seen seen {s.get('seen')!r}, expected [true, false]")
    outcomes = s.get("outcomes") or []
    expect(len(outcomes) == 2 and outcomes[0].get("id") == env["id"] and outcomes[0].get("state") == "applied"
           and outcomes[1].get("state") == "unseen",
           f"$seen outcomes {outcomes!r}, expected applied then unseen")
    run.oneshot_id = env["id"]


@check("none", "refused", "§7.4", "a refused one-shot command: $seen says refused with its reason; it is a dead letter")
def c_refused(run):
    h = run.h
    env, _ = h.command("refuse")
    state = lambda: (h.seen([env["id"]]).get("outcomes") or [{}])[0]  # noqa: E731
    h.wait_for(lambda: state().get("state") not in (None, "unseen"), WAIT)
    o = state()
    info(f"$seen of the refused Note: {o!r}")
    expect(o.get("state") == "refused" and "refused" in str(o.get("reason", "")),
           f"$seen outcome {o!r}, expected state refused with a reason containing 'refused'")
    notes = h.notes()
    expect("refuse" not in notes, f"the refused Note's change was kept: notes {notes}", "§7.7")
    letters = h.dead_letters().get("letters", [])
    mine = [l for l in letters if l.get("type") == "Note" and "refused" in str(l.get("reason", ""))
            and l.get("source") == "driver"]
    expect(mine, f"$deadletters lists no Note from driver with a reason containing 'refused': {letters!r}", "§7.7")
    expect(mine[0].get("endpoint") == "commands", f"the letter's endpoint is {mine[0].get('endpoint')!r}, "
           "expected 'commands'", "§7.5")
    expect(mine[0].get("reason") == o.get("reason"),
           f"$seen's reason {o.get('reason')!r} is not the dead letter's {mine[0].get('reason')!r}")


@check("none", "garbage", "§7.7",
       "garbage (bad envelope, payload 0xc1, 3 frames; a query 0xc1) is dead-lettered and the next message served")
def c_garbage(run):
    h = run.h
    dl0 = h.dead_letters().get("count", 0)
    bad_payload = envelope("Note", "command", "driver")
    h.cli_push.send_multipart([b"\xc1", pack({"text": "bad envelope"})])
    h.cli_push.send_multipart([pack(bad_payload), b"\xc1"])
    h.cli_push.send_multipart([pack(envelope("Note", "command", "driver")), pack({"text": "three"}), b"frame"])
    h.command("after-garbage")
    h.wait_for(lambda: "after-garbage" in h.notes(), WAIT)
    notes = h.notes()
    expect("after-garbage" in notes, f"the command after the garbage was not applied: notes {notes}")
    expect("three" not in notes, f"a command of 3 frames was applied: notes {notes}", "§1")
    letters = h.dead_letters()
    for l in letters.get("letters", []):
        if l.get("endpoint") == "commands":
            info(f"dead letter: frames {l.get('frames')} type {l.get('type')!r} reason {l.get('reason')!r}")
    expect(letters.get("count", 0) == dl0 + 3, f"dead letters {dl0} -> {letters.get('count')}, expected 3 more")
    frames = sorted(l.get("frames") for l in letters.get("letters", []) if l.get("endpoint") == "commands")
    expect(3 in frames, f"no letter of 3 frames among the commands' letters (frames: {frames})", "§1")
    o = (h.seen([bad_payload["id"]]).get("outcomes") or [{}])[0]
    expect(o.get("state") == "refused",
           f"$seen of the one-shot command with payload 0xc1 says {o!r}, expected refused (its dead letter's reason)",
           "§7.4")
    r = h.query("GetState", raw_payload=b"\xc1")
    expect(r.type == "$error" and isinstance((r.payload or {}).get("error"), str),
           f"a GetState query with payload 0xc1 answered {r.type!r} {r.payload!r}, expected $error")
    expect(h.state().get("pings") == run.expected_pings, "the peer's state changed")


@check("none", "builtins", "§7.5", "$health, $metrics, $topology answer as §7.5 says; an unknown query gets $error")
def c_builtins(run):
    h = run.h
    hb = h.last_heartbeat()
    health = h.health()
    for field, kind in (("service", str), ("version", str), ("incarnation", str), ("uptime_s", (int, float)),
                        ("state", str), ("durable", bool), ("head", int), ("oldest", int),
                        ("subscriptions", int), ("dead_letters", int), ("upstreams", list)):
        expect(isinstance(health.get(field), kind), f"$health '{field}' is {health.get(field)!r}")
    expect(health["service"] == "peer" and health["state"] == "ready" and health["durable"] is True,
           f"$health service/state/durable {health['service']!r}/{health['state']!r}/{health['durable']!r}, "
           "expected peer/ready/true")
    expect(health["incarnation"] == hb["incarnation"], "$health incarnation differs from the heartbeat's")
    expect(health["head"] == len(run.ping_pongs), f"$health head {health['head']}, expected {len(run.ping_pongs)} "
           "(one Pong per Ping applied)")
    up = upstream(health, "source")
    for field, kind in (("position", int), ("known_head", int), ("lag", int), ("behind_retention", bool),
                        ("head_regressed", bool), ("stalled", bool)):
        expect(isinstance(up.get(field), kind), f"$health upstream '{field}' is {up.get(field)!r}")
    expect(up["position"] == h.source.head and up["lag"] == 0 and not up["head_regressed"]
           and not up["behind_retention"] and not up["stalled"],
           f"$health upstream source {up!r}, expected position {h.source.head}, lag 0, nothing stopped")
    metrics = h.metrics()
    counters = ("replays_requested", "replays_served", "gaps_seen", "gaps_repaired", "duplicates", "dead_letters",
                "rejected_frames", "commands_resent", "commands_out_of_order", "store_failures", "events_lost",
                "published", "subscriptions", "taps", "mirrored")
    missing = [c for c in counters if not isinstance(metrics.get(c), int)]
    expect(not missing, f"$metrics lacks counters {missing}")
    expect(metrics.get("service") == "peer" and isinstance(metrics.get("types"), dict),
           f"$metrics service {metrics.get('service')!r}, types {type(metrics.get('types')).__name__}")
    # Where a message's time goes: receipt to handler, the commit alone, the relay after it.
    split = {h_: (metrics.get(h_) or {}).get("count") for h_ in ("queue_us", "store_commit_us", "relay_us")}
    expect(all(isinstance(c, int) and c > 0 for c in split.values()),
           f"$metrics queue_us/store_commit_us/relay_us counts {split}: expected each counted, Pings were applied")
    ping = metrics["types"].get("Ping") or {}
    expect(isinstance(ping.get("received"), int) and ping.get("handled", 0) >= len(run.expected_pings),
           f"$metrics types.Ping {ping!r}: expected received and handled >= {len(run.expected_pings)}")
    topo = h.ask("$topology")
    expect(topo.get("mesh") == "conformance" and topo.get("service") == "peer",
           f"$topology mesh/service {topo.get('mesh')!r}/{topo.get('service')!r}")
    expect(topo.get("publishes") == ["Pong"] and topo.get("accepts") == ["Note"]
           and topo.get("answers") == ["GetState"] and topo.get("reacts_to") == {"source": ["Ping"]},
           f"$topology publishes/accepts/answers/reacts_to {topo.get('publishes')!r}/{topo.get('accepts')!r}/"
           f"{topo.get('answers')!r}/{topo.get('reacts_to')!r}")
    expect(isinstance(topo.get("endpoints"), dict) and {"events", "commands", "queries"} <= set(topo["endpoints"]),
           f"$topology endpoints {topo.get('endpoints')!r}")
    for t in ("NoSuchQuery", "$nosuch"):
        r = h.query(t)
        expect(r.type == "$error" and isinstance((r.payload or {}).get("error"), str) and r.payload["error"],
               f"query {t} answered {r.type!r} {r.payload!r}, expected $error with an error text")
        expect(r.env.get("kind") == "reply", f"the $error's kind is {r.env.get('kind')!r}, expected reply", "§2")


@check("none", "replay", "§7.3", "$replay of the peer's own stream returns its Pongs, frame for frame, with the header")
def c_replay(run):
    h = run.h
    r = h.query("$replay", {"from": 1})
    expect(r.type == "$replay", f"$replay answered {r.type!r} {r.payload!r}")
    hdr = r.payload
    for field, kind in (("head", int), ("oldest", int), ("count", int), ("incarnation", str), ("boot", str),
                        ("durable", bool), ("epoch", int), ("epoch_of_from", int)):
        expect(isinstance(hdr.get(field), kind), f"$replay header '{field}' is {hdr.get(field)!r}")
    n = len(run.ping_pongs)
    expect(hdr["head"] == n and hdr["count"] == n and hdr["oldest"] == 1,
           f"$replay header head/count/oldest {hdr['head']}/{hdr['count']}/{hdr['oldest']}, expected {n}/{n}/1")
    expect(len(r.extra) == 2 * hdr["count"], f"{len(r.extra)} frames follow the header, expected 2 x count")
    expect(hdr["epoch_of_from"] == 0, f"epoch_of_from {hdr['epoch_of_from']} for from 1, expected 0")
    live = [frames[1:] for _, frames in h.pongs]
    pairs = [r.extra[i:i + 2] for i in range(0, len(r.extra), 2)]
    expect(pairs[:len(live)] == live, "the replayed frames are not exactly the envelope and payload frames the "
           "Pongs were published with")
    seqs = [unpack(p[0]).get("sequence") for p in pairs]
    expect(seqs == list(range(1, n + 1)), f"replayed sequences {seqs}")
    r = h.query("$replay", {"from": 3, "to": 9, "max": 2})
    seqs = [unpack(r.extra[i]).get("sequence") for i in range(0, len(r.extra), 2)]
    expect(r.type == "$replay" and r.payload.get("count") == 2 and seqs == [3, 4],
           f"$replay from 3 max 2 gave count {r.payload.get('count')} sequences {seqs}, expected 2: [3, 4]")
    expect(r.payload.get("epoch_of_from") == hdr["epoch"],
           f"epoch_of_from {r.payload.get('epoch_of_from')} for from 3, expected the epoch of Pong #2 ({hdr['epoch']})")


@check("none", "hostile", "§7.5",
       "built-in requests with numbers past 2^63, infinities and wrong types are answered; the peer keeps serving")
def c_hostile(run):
    h = run.h
    asks = [("$replay", {"from": (1 << 64) - 1}), ("$replay", {"to": (1 << 64) - 1, "max": (1 << 64) - 1}),
            ("$replay", {"max": float("inf")}), ("$replay", {"from": "one"}), ("$trace", {"correlationid": 5}),
            ("$trace", {"correlationid": "x", "max": -1}), ("$deadletters", {"op": "show", "id": (1 << 64) - 1}),
            ("$deadletters", {"op": "list", "max": float("nan")}), ("$deadletters", {"op": 7}),
            ("$seen", {"ids": "x"}), ("$seen", {"ids": [1, 2]}), ("$health", [1, 2])]
    for type_, payload in asks:
        try:
            r = h.query(type_, payload, timeout=2 * WAIT / 3)
        except Failed:
            expect(False, f"{type_} {payload!r} got no answer (peer alive: {h.peer.alive()})")
        expect(r.type in (type_, "$error"), f"{type_} {payload!r} answered {r.type!r}")
    expect(h.peer.alive() and h.health()["state"] == "ready", "the peer stopped serving after hostile built-in requests")


@check("none", "retry", "§7.7",
       "$deadletters retry applies no letter the door refused, and no handler refusal twice: the state is unchanged")
def c_retry(run):
    h = run.h
    before = h.state()
    letters = h.dead_letters()["letters"]
    expect(letters, "no dead letters to retry (the earlier checks leave some)")
    for letter in letters:
        r = h.query("$deadletters", {"op": "retry", "id": letter["id"]})
        expect(r.type == "$error" or r.payload.get("ok") is False,
               f"retry of letter {letter['id']} ({letter['endpoint']}: {letter['reason'][:80]}) answered "
               f"{r.type} {r.payload!r}, expected it refused again")
    after = h.state()
    expect(after == before, f"GetState changed by retries: {before} -> {after}")


@check("none", "second", "§7.1",
       "a second instance on the same state directory exits non-zero; the first keeps serving, its state whole")
def c_second(run):
    h = run.h
    before = h.state()
    second = Peer(run.args.peer, os.path.join(run.workdir, "peer-second.log"))
    second.start(run.topology, run.state_dir)
    try:
        ended = h.wait_for(lambda: second.proc.poll() is not None, WAIT)
        expect(ended and second.proc.returncode != 0,
               f"a second peer on the same store and endpoints {'exited ' + str(second.proc.returncode) if ended else 'is still running'}"
               ", expected it to refuse to start (two writers would fork the service's history)")
    finally:
        if second.proc.poll() is None:
            os.killpg(second.proc.pid, signal.SIGKILL)
            second.proc.wait()
    expect(h.peer.alive() and h.state() == before and h.health()["state"] == "ready",
           "the first peer stopped serving, or its state changed, when a second one started")


@check("none", "restart", "§7.1",
       "SIGTERM then a restart: exit 0, same incarnation, $replay from position + 1, each Ping once, Pongs continue")
def c_restart(run):
    h = run.h
    hb = h.last_heartbeat()
    position = h.source.head
    pong_head = len(run.ping_pongs)
    code = run.stop_peer()
    expect(code == 0, f"the peer exited with {code} on SIGTERM, expected 0 (a clean stop)")
    # While it is down, source commits two more Pings (published to nobody).
    for n in (11, 12):
        seq = h.ping(n)
        run.ping_pongs[seq] = len(run.ping_pongs) + 1
    mark = len(h.asks)
    run.start_peer()
    asked = h.wait_for(lambda: len(h.asks) > mark, WAIT)
    expect(asked, f"the restarted peer sent source no $replay within {WAIT:g} s")
    req = h.asks[mark][3]
    info(f"first $replay after the restart: {req!r} (position {position})")
    expect(req.get("from", 1) == position + 1,
           f"the restarted peer's first $replay asks from {req.get('from', 1)}, expected {position + 1} "
           "(its committed position + 1)", "§7.3")
    run.apply_pings([11, 12], timeout=WAIT)
    since = len(h.heartbeats)  # read after the new start's first events: its own heartbeats
    newer = lambda: [b for _, _, b in h.heartbeats[since:] if b.get("boot") != hb["boot"]]  # noqa: E731
    expect(h.wait_for(newer, WAIT), f"no heartbeat with a new boot from the restarted peer (boot {hb['boot']} "
           f"and {len(h.heartbeats) - since} heartbeat(s) since)", "§7.2")
    new = newer()[-1]
    expect(new["incarnation"] == hb["incarnation"],
           f"incarnation {hb['incarnation']} became {new['incarnation']} across a restart of a durable store", "§7.2")
    expect(new.get("acks", {}).get("source") == 4, f"acks after the restart {new.get('acks')}, expected source: 4",
           "§7.4")
    r = h.query("$replay", {"from": pong_head + 1})
    got = [(unpack(r.extra[i]).get("sequence"), unpack(r.extra[i + 1]).get("n")) for i in range(0, len(r.extra), 2)]
    expect(got == [(pong_head + 1, 11), (pong_head + 2, 12)],
           f"Pongs after the restart (sequence, n) {got}, expected {[(pong_head + 1, 11), (pong_head + 2, 12)]}")
    o = (h.seen([run.oneshot_id]).get("outcomes") or [{}])[0]
    expect(o.get("state") == "applied", f"$seen of o1 after the restart: {o!r}, expected applied (committed state)",
           "§7.4")


@check("none", "incarnation", "§7.2",
       "source's store replaced (new incarnation): the peer stops that stream, LOSS:, head_regressed, applies nothing")
def c_incarnation(run):
    h = run.h
    position = h.source.head
    log_before = len(run.peer.log())
    h.source.replace()  # a new store: its own numbers, from 1 up past the peer's position
    for n in range(1, position + 3):
        h.source.append({"n": 100 + n, "text": "replaced store"})
    stopped = h.wait_for(lambda: upstream(h.health(), "source").get("head_regressed") is True, WAIT)
    up = upstream(h.health(), "source")
    expect(stopped, f"$health upstream source {up!r} after heartbeats of a new incarnation: expected "
           "head_regressed true")
    h.publish(position + 1)  # the next number, live: tempting, and not to be applied
    expect(h.stays(lambda: h.pings() == run.expected_pings, 5 * HB),
           f"applied events of the replaced store: GetState lists {h.pings()}")
    health = h.health()
    expect(health.get("state") == "degraded", f"$health state {health.get('state')!r}, expected degraded",
           "§7.5")
    expect("LOSS:" in run.peer.log()[log_before:], "the peer logged no line with 'LOSS:'")


# ---- phase "curve": admission, forged sources, mirrors, epochs

@check("curve", "curve", "§8", "under CURVE the topology's identities work: queries, heartbeats, events, commands")
def c_curve(run):
    h = run.h
    run.start_peer()
    hb = h.wait_for(lambda: h.heartbeats, 2 * WAIT)
    expect(hb, "no heartbeat reached the driver (identity 'driver', events '*') within {2 * WAIT:g} s")
    health = h.health()
    expect(health.get("service") == "peer", f"$health as 'driver': {health!r}")
    expect(run.wait_subscribed(0), "the peer did not subscribe to source's events over CURVE", "§7.1")
    h.auto_heartbeat = True
    h.ping(1)
    run.apply_pings([1])
    h.command("c1", sequence=1)
    got = h.wait_for(lambda: "c1" in h.notes(), WAIT)
    expect(got, f"a sequenced Note from source was not applied: notes {h.notes()}", "§7.4")
    h.command("c2")
    got = h.wait_for(lambda: "c2" in h.notes(), WAIT)
    expect(got, f"a one-shot Note from driver was not applied: notes {h.notes()}", "§7.4")


@check("curve", "stranger", "§8", "an unknown key gets no answer and no event; auth_refused counts it")
def c_stranger(run):
    h = run.h
    stranger = zmq.curve_keypair()
    before = h.metrics().get("auth_refused", {})
    dealer = h.socket(zmq.DEALER, identity=stranger, connect=h.endpoint("queries"))
    sub = h.socket(zmq.SUB, identity=stranger, subscribe=[b""], connect=h.endpoint("events"))
    got = []
    h.on(dealer, got.append)
    h.on(sub, got.append)
    dealer.send_multipart([pack(envelope("$health", "query", "stranger")), pack({})])

    def refused():
        now = h.metrics().get("auth_refused", {})
        return all(now.get(e, 0) > before.get(e, 0) for e in ("queries", "events"))

    counted = h.wait_for(refused, WAIT)
    expect(counted, f"$metrics auth_refused {h.metrics().get('auth_refused')!r} (was {before!r}): expected queries "
           "and events to grow", "§7.5")
    expect(h.stays(lambda: not got, 3 * HB), f"the unknown key got {len(got)} message(s): {got[:1]!r}")


@check("curve", "forged", "§7.4", "a command naming another identity as its source is refused (auth_refused.source)")
def c_forged(run):
    h = run.h
    before = h.metrics().get("auth_refused", {}).get("source", 0)
    h.command("forged", source="source")  # as 'driver', claiming to be 'source'
    h.command("barrier-4")
    h.wait_for(lambda: "barrier-4" in h.notes(), WAIT)
    notes = h.notes()
    expect("barrier-4" in notes, f"the command behind the forged one was not applied: notes {notes}", "§7.7")
    expect("forged" not in notes, f"the forged command was applied: notes {notes}")
    after = h.metrics().get("auth_refused", {}).get("source", 0)
    expect(after == before + 1, f"auth_refused.source {before} -> {after}, expected one more", "§7.5")
    letters = h.dead_letters().get("letters", [])
    expect(any(l.get("source") == "source" and l.get("type") == "Note" for l in letters),
           f"no dead letter of the forged Note: {letters!r}", "§7.7")


@check("curve", "builtin-auth", "§8", "$replay from an identity not admitted on the events endpoint gets $error")
def c_builtin_auth(run):
    h = run.h
    before = h.metrics().get("auth_refused", {}).get("builtin", 0)
    kiosk = h.socket(zmq.DEALER, identity="kiosk", connect=h.endpoint("queries"))
    h.on(kiosk, h._reply)
    health = h.query("$health", sock=kiosk)
    expect(health.type == "$health", f"kiosk's $health answered {health.type!r}: kiosk may ask queries")
    r = h.query("$replay", {"from": 1}, sock=kiosk)
    expect(r.type == "$error", f"kiosk's $replay answered {r.type!r} with {r.payload.get('count') if r.payload else ''}"
           " events, expected $error")
    after = h.metrics().get("auth_refused", {}).get("builtin", 0)
    expect(after == before + 1, f"auth_refused.builtin {before} -> {after}, expected one more", "§7.5")


@check("curve", "tap", "§7.6",
       "a tap gets 4-frame mirrors of the commands the peer handles; a non-tap asking for them gets none")
def c_tap(run):
    h = run.h
    before = h.metrics()
    tap = h.socket(zmq.SUB, identity="tap", subscribe=[b"$tap "], connect=h.endpoint("events"))
    nosy = h.socket(zmq.SUB, identity="driver", subscribe=[b"$tap "], connect=h.endpoint("events"))
    mirrors, stolen = [], []
    h.on(tap, mirrors.append)
    h.on(nosy, lambda f: stolen.append(f) if f[0].startswith(b"$tap") else None)

    def ready():  # the tap's subscription applied, the other one's refused
        now = h.metrics()
        return (now.get("taps", 0) > before.get("taps", 0)
                and now.get("auth_refused", {}).get("tap", 0) > before.get("auth_refused", {}).get("tap", 0))

    expect(h.wait_for(ready, WAIT), f"$metrics taps {h.metrics().get('taps')} / auth_refused "
           f"{h.metrics().get('auth_refused')!r}: expected the tap counted and the non-tap refused", "§8")
    env, frames = h.command("mirrored")
    h.wait_for(lambda: any(len(m) == 4 and unpack(m[1]).get("type") == "$command" for m in mirrors), WAIT)
    commands = [m for m in mirrors if len(m) == 4 and unpack(m[1]).get("type") == "$command"]
    expect(commands, f"no $command mirror reached the tap ({len(mirrors)} message(s): "
           f"{[len(m) for m in mirrors]} frames)")
    m = commands[-1]
    menv = unpack(m[1])
    expect(m[0] == b"$tap " and menv.get("source") == "peer" and menv.get("kind") == "event"
           and isinstance(menv.get("sequence"), int) and menv["sequence"] > 0,
           f"mirror topic {m[0]!r}, envelope {menv!r}: expected `$tap `, source peer, kind event, a sequence")
    expect(m[2:] == frames, "the mirror's last two frames are not the command as received")
    expect(h.stays(lambda: not stolen, 2 * HB), f"a non-tap identity got {len(stolen)} mirror(s)", "§8")
    tap.close(linger=0)
    nosy.close(linger=0)
    del h.handlers[tap], h.handlers[nosy]


@check("curve", "epoch", "§7.1",
       "an event of a new epoch waits for a $replay answer; epoch_of_from matching its record, it is applied once")
def c_epoch(run):
    h = run.h
    position = h.source.head
    h.auto_replay = False
    h.source.epoch = new_epoch()  # source opened its store again (a restart), history intact
    h.source.boot = uuid7()
    mark = len(h.asks)
    h.ping(2)
    asked = h.wait_for(lambda: len(h.asks) > mark, WAIT)
    expect(asked, "no $replay after an event of a new epoch")
    req = h.asks[mark][3]
    expect(req.get("from", 1) == position + 1,
           f"the $replay asks from {req.get('from')}, expected {position + 1} (position + 1)", "§7.3")
    pings = h.pings()
    expect(pings == run.expected_pings, f"applied an event of an unchecked epoch: GetState lists {pings}")
    h.auto_replay = True
    h.answer_pending(mark)
    run.apply_pings([2])


@check("curve", "epoch-loss", "§7.1",
       "a publisher that lost its tail (epoch_of_from differs): LOSS:, head_regressed, nothing of it applied")
def c_epoch_loss(run):
    h = run.h
    position = h.source.head
    log_before = len(run.peer.log())
    h.auto_replay = True
    # source lost its last commit and opened its store again: #position is written anew
    # under the new epoch, and #position+1 after it.
    h.source.epoch = new_epoch()
    h.source.boot = uuid7()
    h.source.append({"n": 900, "text": "rewritten"}, sequence=position)
    h.ping(901)
    stopped = h.wait_for(lambda: upstream(h.health(), "source").get("head_regressed") is True, WAIT)
    expect(stopped, f"$health upstream source {upstream(h.health(), 'source')!r}: expected head_regressed true")
    expect(h.stays(lambda: h.pings() == run.expected_pings, 3 * HB),
           f"applied the rewritten history: GetState lists {h.pings()}")
    expect("LOSS:" in run.peer.log()[log_before:], "the peer logged no line with 'LOSS:'")


# --- running it ---------------------------------------------------------------------

class Reporter:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.fail_lines = []

    def line(self, ok, section, what, detail=""):
        if ok:
            self.passed += 1
            print(f"ok: {section} {what}", flush=True)
        else:
            self.failed += 1
            text = f"FAIL: {section} {what}: {detail}"
            self.fail_lines.append(text)
            print(text, flush=True)


def keygen(troupe, topology):
    r = subprocess.run([troupe, "keygen", "--topology", topology, "--mesh"], capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"troupe keygen --mesh exited {r.returncode}: {r.stderr.strip() or r.stdout.strip()}")


def run_phase(phase, args, workdir, reporter, selected):
    checks = [c for c in CHECKS if c[0] == phase]
    if selected is not None:
        wanted = [i for i, c in enumerate(checks) if c[1] in selected]
        if not wanted:
            return
        checks = checks[:wanted[-1] + 1]
    run = Run(args, workdir, phase)
    failed_before = reporter.failed
    run.state_dir = os.path.join(workdir, phase)
    os.makedirs(run.state_dir, mode=0o700)
    run.topology = os.path.join(workdir, f"{phase}.toml")
    with open(run.topology, "w") as f:
        f.write(topology_text(run.state_dir, phase))
    keys = None
    if phase == "curve":
        keygen(args.troupe, run.topology)
        kd = os.path.join(run.state_dir, "keys")
        keys = {n: (read_key(f"{kd}/{n}.pub"), read_key(f"{kd}/{n}.key"))
                for n in ("source", "peer", "driver", "kiosk", "tap")}
    run.h = Harness(run.state_dir, keys)
    try:
        ACTIVE.append(run.peer)
        broken = None
        for _, name, section, what, f in checks:
            report = selected is None or name in selected
            if broken:
                if report:
                    reporter.line(False, section, what, f"not run: {broken}")
                continue
            try:
                f(run)
                if report:
                    reporter.line(True, section, what)
            except Failed as e:
                if report:
                    reporter.line(False, e.section or section, what, str(e))
                elif selected is not None:
                    print(f"note: [{name}], run before the selected checks, failed: {e}", flush=True)
            except Exception as e:  # noqa: BLE001 - a crash of the driver is a failed check too
                if report:
                    reporter.line(False, section, what, f"{type(e).__name__}: {e}")
            if not run.peer.alive():  # every check leaves the peer running for the next
                code = run.peer.proc.poll() if run.peer.proc else None
                broken = f"the peer is not running (exit code {code}) after [{name}]"
        if run.peer.alive():
            code = run.stop_peer()
            if code != 0:
                reporter.line(False, "§7.1", f"the peer stops cleanly on SIGTERM ({phase} phase)",
                              f"exit {code}, expected 0")
    finally:
        run.peer.kill()
        run.h.close()
    if reporter.failed > failed_before:
        tail = run.peer.log().splitlines()[-25:]
        print(f"--- the peer's log ({phase} phase), last {len(tail)} lines:", file=sys.stderr)
        for line in tail:
            print(f"    {line}", file=sys.stderr)


ACTIVE = []  # peers to kill on exit, whatever happens


def cleanup():
    for p in ACTIVE:
        p.kill()


def main():
    argv = sys.argv[1:]
    if "--" in argv:
        at = argv.index("--")
        argv, peer = argv[:at], argv[at + 1:]
    else:
        peer = []
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 usage="%(prog)s --troupe CLI [--expect-failure TEXT] [--only NAME...] -- PEER...")
    ap.add_argument("--troupe", help="path to the troupe CLI (for keygen)")
    ap.add_argument("--expect-failure", metavar="TEXT",
                    help="exit 0 only if some check FAILs with TEXT in its line")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="report only these checks")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (topologies, stores, the peer's log)")
    ap.add_argument("--list", action="store_true", help="list the checks and exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="also print what the peer did on the wire (info:)")
    args = ap.parse_args(argv)
    global VERBOSE
    VERBOSE = args.verbose
    if args.list:
        for phase, name, section, what, _ in CHECKS:
            print(f"{name:<14} {phase:<6} {section:<5} {what}")
        return 0
    if not peer or not args.troupe:
        ap.error("give --troupe CLI and a peer command after --")
    names = {c[1] for c in CHECKS}
    if args.only and not set(args.only) <= names:
        ap.error(f"unknown check(s) {sorted(set(args.only) - names)}; --list shows them")
    args.peer = peer
    selected = set(args.only) if args.only else None

    atexit.register(cleanup)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: sys.exit(128 + s))
    workdir = tempfile.mkdtemp(prefix="troupe-conformance-")
    reporter = Reporter()
    started = time.monotonic()
    try:
        for phase in ("none", "curve"):
            try:
                run_phase(phase, args, workdir, reporter, selected)
            except Exception as e:  # noqa: BLE001 - set-up failed: every check of the phase fails
                for ph, name, section, what, _ in CHECKS:
                    if ph == phase and (selected is None or name in selected):
                        reporter.line(False, section, what, f"not run: {phase} phase set-up failed: {e}")
    finally:
        cleanup()
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"conformance: {time.monotonic() - started:.1f} s", file=sys.stderr)
    print(f"conformance: {reporter.passed} passed, {reporter.failed} failed", flush=True)
    if args.expect_failure is not None:
        caught = [l for l in reporter.fail_lines if args.expect_failure in l]
        print(f"conformance: expected a failure with {args.expect_failure!r}: "
              f"{'seen (' + str(len(caught)) + ')' if caught else 'NOT seen'}", flush=True)
        return 0 if caught else 1
    return 1 if reporter.failed else 0


if __name__ == "__main__":
    sys.exit(main())
