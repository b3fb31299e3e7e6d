"""A troupe peer in Python: one service of a mesh, with the promise of docs/guarantees.md
(own store, outbox, in-order exactly-once apply, gap repair by $replay, acknowledged
commands, heartbeats, CURVE), written from docs/protocol.md.

    node = troupe.Node("topology/shop.toml", "shipping")
    @node.on("PaymentCaptured")
    def schedule(event, ctx):
        ctx.emit("ShipmentScheduled", {"order_id": event["order_id"], "shipment_id": "..."})
    node.run()
"""
import json
import os
import signal
import math
import socket
import sqlite3
import sys
import threading
import time

import zmq
import zmq.utils.z85

from . import rules, wire
from .metrics import Metrics
from .schema import Invalid, Message
from .store import Store
from .topology import Topology

VERSION = "0.1.0-py"
HEARTBEAT_TOPIC = b"$heartbeat "
TAP_TOPIC = b"$tap "
REPLAY_MAX = 512
MAX_INT = (1 << 63) - 1  # what SQLite stores: every number a peer asks with is clamped to it
DRAIN_ROUNDS = 100  # on SIGTERM: what already arrived is applied, at most this many batches
HWM = 100_000  # per socket, as the C++ node's defaults: a subscriber a little behind is not cut off


class Refused(Exception):
    """Raised by a handler: the message is refused (kept as a dead letter, with this reason)."""


class Oversized(Exception):
    pass


def _log(service, level, text):
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime()) + f".{int(time.time() * 1000) % 1000:03d}"
    line = f"[{stamp}] [{service}] [{level}] {text}\n"
    sys.stderr.write(line.encode("utf-8", "backslashreplace").decode("utf-8"))  # never a surrogate
    sys.stderr.flush()


class Context:
    """What a handler of an event or a command may do: read and write its service's
    state and emit events and send commands, all in the unit of work of its message."""

    def __init__(self, node, envelope):
        self._node = node
        self.envelope = envelope
        self.correlationid = envelope.get("correlationid", "")

    def emit(self, message, data, correlationid=None):
        self._node._emit(self.envelope, message, data, correlationid)

    def send(self, target, message, data):
        self._node._send_command(self.envelope, target, message, data)

    def load(self, table, key):
        return self._node.store.load(table, key)

    def save(self, table, key, value):
        self._node.store.save(table, key, value)

    def delete(self, table, key):
        self._node.store.delete(table, key)


class QueryContext:
    """What a query handler may do: read."""

    def __init__(self, node, envelope):
        self._node = node
        self.envelope = envelope

    def load(self, table, key):
        return self._node.store.load(table, key)

    def scan(self, table, after="", limit=500):
        return self._node.store.scan(table, after, limit)


def _name(message):
    return message.name if isinstance(message, Message) else message


class Node:
    def __init__(self, topology, service, state_dir=None):
        self.topo = Topology(topology, service, state_dir)
        self.service = service
        self.messages = {}       # type name -> Message, where declared
        self.event_handlers = {}  # type -> fn(event, ctx)
        self.command_handlers = {}
        self.query_handlers = {}  # type -> (fn(query, qctx), reply Message or name)
        self.declared_publishes = None
        self.declared_sends = {}
        self.metrics = Metrics()
        self.stopping = False
        self.break_rule = os.environ.get("TROUPE_PEER_BREAK", "")  # conformance: a deliberately broken peer

    # --- registration
    def message(self, *messages):
        for m in messages:
            self.messages[m.name] = m

    def publishes(self, *messages):
        self.declared_publishes = self._declare(messages)

    def sends(self, target, *messages):
        self.declared_sends[target] = self._declare(messages)

    def on(self, message):
        return self._register(self.event_handlers, message, lambda fn: fn)

    def on_command(self, message):
        return self._register(self.command_handlers, message, lambda fn: fn)

    def on_query(self, message, reply):
        self._declare([reply])
        return self._register(self.query_handlers, message, lambda fn: (fn, _name(reply)))

    def _declare(self, messages):
        """Keeps the shapes of the declared messages; returns their names."""
        self.message(*[m for m in messages if isinstance(m, Message)])
        return [_name(m) for m in messages]

    def _register(self, table, message, entry):
        def register(fn):
            table[self._declare([message])[0]] = entry(fn)
            return fn
        return register

    # --- the contract ($schema, §7.8)
    def contract(self):
        def entry(name):
            m = self.messages.get(name)
            return {"schemaversion": m.schemaversion if m else 1,
                    "payload": m.json_schema() if m else {"type": "object", "title": name}}
        reads = list(self.event_handlers)  # in the order registered, as the C++ node lists them
        answers = {q: r for q, (_, r) in self.query_handlers.items()}
        publishes = self.declared_publishes if self.declared_publishes is not None else self.topo.publishes
        sends = {t: list(c) for t, c in sorted(self.declared_sends.items())}
        names = set(publishes) | set(self.command_handlers) | set(answers) | set(answers.values()) | set(reads)
        for c in sends.values():
            names |= set(c)
        return {"service": self.service, "build": VERSION, "messages": {n: entry(n) for n in sorted(names)},
                "publishes": list(publishes), "accepts": list(self.command_handlers), "answers": answers,
                "reads": reads, "sends": sends}

    def check_contract(self):
        """A build whose declarations differ from the topology does not start (§7.8)."""
        problems = []
        if self.declared_publishes is not None and sorted(self.declared_publishes) != sorted(self.topo.publishes):
            problems.append(f"declares publishes {sorted(self.declared_publishes)}, the topology says "
                            f"{sorted(self.topo.publishes)}")
        declared_sends = {t: sorted(c) for t, c in self.declared_sends.items()}
        if declared_sends and declared_sends != {t: sorted(c) for t, c in self.topo.sends.items()}:
            problems.append(f"declares sends {declared_sends}, the topology says {self.topo.sends}")
        for pub, types in self.topo.reacts_to.items():
            for t in types:
                if t not in self.event_handlers:
                    problems.append(f"reacts to {pub}/{t} but has no handler for it")
        for t in self.topo.accepts:
            if t not in self.command_handlers:
                problems.append(f"accepts {t} but has no handler for it")
        for t in self.topo.answers:
            if t not in self.query_handlers:
                problems.append(f"answers {t} but has no handler for it")
        return problems

    # --- running
    def log(self, level, text):
        _log(self.service, level, text)

    def run(self):
        """Serves until SIGTERM or SIGINT, then drains and returns 0."""
        problems = self.check_contract()
        if problems:
            raise SystemExit(f"{self.service}: " + "; ".join(problems))
        self._open()
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, lambda *_: setattr(self, "stopping", True))
        self.log("info", f"{self.service} {VERSION} (python) ready: head #{self.store.head}, incarnation "
                         f"{self.store.incarnation}, {'durable' if self.durable else 'memory'}")
        try:
            while not self.stopping:
                self._turn()
            for _ in range(DRAIN_ROUNDS):  # SIGTERM: what already arrived is applied first
                if not self._turn(drain=True):
                    break
        finally:
            self._close()
        return 0

    # --- setting up
    def _open(self):
        t = self.topo
        self.durable = t.durable
        self.heartbeat_s = t.heartbeat_s()
        self.max_bytes = t.settings["max_message_bytes"]
        self.store = Store(t.store_path() if self.durable else ":memory:", t.settings["synchronous"])
        self.boot = wire.uuid7()
        self.started = time.monotonic()
        self.store_error = None
        self.loss = []
        self.ctx = zmq.Context()
        self.keys = t.secret_key() if t.curve else None
        self.admitted = {e: t.admitted(e) for e in ("events", "commands", "queries")}
        self.pending_refusals = []  # (endpoint, address, key) from the ZAP thread
        self.refused_logged = set()
        if t.curve:
            self.public_keys = {}
            for name in t.identities():
                try:
                    self.public_keys[t.public_key(name).decode()] = name
                except Exception:
                    pass  # an identity without a key cannot connect; the ones we connect to are checked below
            self._start_zap()
        self.xpub = self._server(zmq.XPUB, "events")
        self.xpub.setsockopt(zmq.XPUB_VERBOSER, 1)
        self.xpub.setsockopt(zmq.XPUB_MANUAL, 1)
        self.pull = self._server(zmq.PULL, "commands")
        self.router = self._server(zmq.ROUTER, "queries")
        for sock, which in ((self.xpub, "events"), (self.pull, "commands"), (self.router, "queries")):
            self._bind(sock, t.endpoint(self.service, which, for_peer=False))
            for ep in (t.services[self.service].get("expose", {}).get(which),):
                if ep:
                    self._bind(sock, ep.replace("{state_dir}", t.state_dir))
        self.own_topics = [t.encode() + b" " for t in self.topo.publishes] + [HEARTBEAT_TOPIC, TAP_TOPIC]
        self.heartbeat_subscribers = 0  # $health/$metrics `subscriptions`, as the C++ node counts them
        self.tap_subscriptions = 0  # "$tap " subscriptions applied (taps listening)
        self.refused_taps = 0       # "$tap " subscriptions refused to identities that are no tap
        self.mirror_seq = 0
        # Streams: every publisher it reacts to; heartbeats of every service it sends to.
        positions = self.store.positions()
        self.streams = {}
        for pub in t.reacts_to:
            pos, ident = positions.get("ev:" + pub, (0, ""))
            self.streams[pub] = rules.InboundStream(pub, self.heartbeat_s, self.durable, pos, ident)
            fx = rules.Effects()
            self.streams[pub].recall(fx)
            self._effects(fx, pub)
        self.inbox = rules.CommandInbox()
        for key, (pos, ident) in positions.items():
            if key.startswith("cmd:"):
                self.inbox.restore(key[4:], pos, ident)
        self.outboxes = {}
        outbound = self.store.outbound()
        self.command_heads = {}
        for target in t.sends:
            head, acked, inc = outbound.get(target, (0, 0, ""))
            self.command_heads[target] = head
            self.outboxes[target] = rules.CommandOutbox(target, head, acked, inc, self.heartbeat_s)
        self.subs, self.dealers, self.pushes = {}, {}, {}
        for pub in set(t.reacts_to) | set(t.sends):
            self._subscribe(pub)
        for pub in t.reacts_to:
            self._open_dealer(pub)
        for target in t.sends:
            self.pushes[target] = self._client(zmq.PUSH, target, "commands")
        self.next_heartbeat = 0.0
        self.next_trim = time.monotonic() + 10
        self.poller_dirty = True

    def _start_zap(self):
        handler = self.ctx.socket(zmq.REP)
        handler.bind("inproc://zeromq.zap.01")
        self.zap_stop = False
        self.zap_thread = threading.Thread(target=self._zap, args=(handler,), daemon=True)
        self.zap_thread.start()

    def _zap(self, sock):
        """ZAP (RFC 27): admit a client key when the topology allows it on that endpoint."""
        while not self.zap_stop:
            if not sock.poll(200):
                continue
            frames = sock.recv_multipart()
            if len(frames) < 6:
                continue
            version, request_id, domain, address = frames[0], frames[1], frames[2].decode(), frames[3].decode()
            mechanism = frames[5]
            key = zmq.utils.z85.encode(frames[6]).decode() if mechanism == b"CURVE" and len(frames) > 6 else ""
            endpoint = domain.split("/", 1)[-1]
            name = self.public_keys.get(key)
            if name and name in self.admitted.get(endpoint, ()):
                sock.send_multipart([version, request_id, b"200", b"OK", name.encode(), b""])
            else:
                self.pending_refusals.append((endpoint, address, key))
                sock.send_multipart([version, request_id, b"400", b"not admitted", b"", b""])
        sock.close(0)

    def _secure(self, sock):
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_bytes)
        sock.setsockopt(zmq.SNDHWM, HWM)
        sock.setsockopt(zmq.RCVHWM, HWM)
        sock.setsockopt(zmq.LINGER, 1000)
        ivl = max(int(self.heartbeat_s * 1000), 100)
        sock.setsockopt(zmq.HEARTBEAT_IVL, ivl)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, ivl * 3)
        sock.setsockopt(zmq.HEARTBEAT_TTL, ivl * 3)

    def _server(self, kind, which):
        sock = self.ctx.socket(kind)
        self._secure(sock)
        if self.keys:
            sock.curve_server = True
            sock.curve_publickey, sock.curve_secretkey = self.keys
            sock.zap_domain = f"{self.service}/{which}".encode()
        return sock

    def _client(self, kind, service, which):
        sock = self.ctx.socket(kind)
        self._secure(sock)
        if self.keys:
            sock.curve_publickey, sock.curve_secretkey = self.keys
            sock.curve_serverkey = self.topo.public_key(service)
        sock.connect(self.topo.endpoint(service, which))
        return sock

    def _bind(self, sock, endpoint):
        if endpoint.startswith("ipc://"):
            path = endpoint[len("ipc://"):]
            if os.path.exists(path):  # libzmq would unlink a live peer's socket: refuse instead
                probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    probe.connect(path)
                    raise SystemExit(f"{self.service}: {endpoint} is in use by another process "
                                     f"(is {self.service} already running?)")
                except OSError:
                    pass
                finally:
                    probe.close()
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as e:
            raise SystemExit(f"{self.service}: cannot bind {endpoint}: {e}")

    def _subscribe(self, pub):
        old = self.subs.pop(pub, None)
        if old is not None:
            old.close(0)
            self.metrics.inc("connections_renewed")
        sub = self._client(zmq.SUB, pub, "events")
        sub.setsockopt(zmq.SUBSCRIBE, HEARTBEAT_TOPIC)
        if pub in self.topo.reacts_to:
            # Every type the publisher publishes: one stream, one sequence (§7.1).
            for t in self.topo.services[pub].get("publishes", []):
                sub.setsockopt(zmq.SUBSCRIBE, t.encode() + b" ")
        self.subs[pub] = sub
        if pub in self.streams:
            self.streams[pub].subscribed_at = time.monotonic()
        self.poller_dirty = True

    def _open_dealer(self, pub):
        old = self.dealers.pop(pub, None)
        if old is not None:
            old.close(0)
        self.dealers[pub] = self._client(zmq.DEALER, pub, "queries")
        self.poller_dirty = True

    def _close(self):
        self.log("info", f"{self.service}: stopping (head #{self.store.head})")
        try:
            self._heartbeat()
        except zmq.ZMQError:
            pass
        pushes = list(self.pushes.values())
        for sock in [self.xpub, self.pull, self.router, *self.subs.values(), *self.dealers.values()]:
            sock.close(0)
        for sock in pushes:
            sock.close(1000)  # commands not yet out are in the outbox: resent at the next start
        if self.keys:
            self.zap_stop = True
            self.zap_thread.join()
        self.ctx.term()
        self.store.close()

    # --- the loop
    def _turn(self, drain=False):
        """One turn of the loop: answers queries, applies one batch, runs the timers.
        Returns how many messages the batch held."""
        if self.poller_dirty:
            self.poller = zmq.Poller()
            for sock in [self.xpub, self.pull, self.router, *self.subs.values(), *self.dealers.values()]:
                self.poller.register(sock, zmq.POLLIN)
            self.by_socket = {s: ("sub", p) for p, s in self.subs.items()}
            self.by_socket.update({s: ("dealer", p) for p, s in self.dealers.items()})
            self.poller_dirty = False
        now = time.monotonic()
        timeout = 0 if drain else max(0, min(self.next_heartbeat - now, 0.05))
        ready = dict(self.poller.poll(int(timeout * 1000)))
        batch = []
        limit = self.topo.settings["batch_max"]
        if self.xpub in ready:
            self._subscriptions()
        if self.router in ready:
            for _ in range(64):
                got = self._recv_bounded(self.router, wire.MAX_FRAMES + 1)
                if got is None:
                    break
                try:
                    self._query(*got)
                except sqlite3.Error as e:  # dead letters of queries are written at once
                    self._store_failed(e)
        for sock in ready:
            kind = self.by_socket.get(sock)
            if not kind:
                continue
            while len(batch) < limit:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                batch.append((kind[0], kind[1], frames, None))
        if self.pull in ready:
            while len(batch) < limit:
                got = self._recv_bounded(self.pull, wire.MAX_FRAMES)
                if got is None:
                    break
                frames, user, oversize = got
                batch.append(("command", oversize, frames, user))
        if batch:
            self._apply(batch, time.perf_counter())
        self._timers()
        return len(batch)

    def _recv_bounded(self, sock, max_frames):
        """One message, frame by frame: at most `max_frames` frames and max_message_bytes are
        kept, the rest is read and dropped (a peer cannot make it hold more). Returns
        (frames, User-Id, why it was cut or None), or None when nothing is there."""
        try:
            first = sock.recv(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None
        user = self._user(first)
        frames, size, oversize = [first.bytes], len(first.bytes), None
        more = first.more
        while more:
            frame = sock.recv(copy=False)
            more = frame.more
            user = user or self._user(frame)  # a ROUTER's routing frame carries none
            if len(frames) >= max_frames or size + len(frame) > self.max_bytes:
                oversize = oversize or f"over {max_frames} frames or max_message_bytes = {self.max_bytes}"
                continue
            frames.append(frame.bytes)
            size += len(frame)
        return frames, user, oversize

    def _user(self, frame):
        if not self.keys:
            return None
        try:
            return frame.get("User-Id")
        except (zmq.ZMQError, KeyError):
            return None

    def _subscriptions(self):
        """Applies what subscribers ask (XPUB manual mode, §7.6, §8): only a prefix of one
        of its own topics (anything else would match nothing, yet XPUB would hold it for as
        long as the peer stays), and mirrors only for a [taps.*] identity under CURVE."""
        while True:
            try:
                frame = self.xpub.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            data = frame.bytes
            if not data or data[0] not in (0, 1):
                continue  # anything else a peer sends upstream is ignored (§7.6)
            topic, on = data[1:], data[0] == 1
            if not any(t.startswith(topic) for t in self.own_topics):
                if on:
                    self.metrics.inc("subscriptions_ignored")
                continue
            if topic == HEARTBEAT_TOPIC:
                self.heartbeat_subscribers = max(self.heartbeat_subscribers + (1 if on else -1), 0)
            if not TAP_TOPIC.startswith(topic):
                self._apply_subscription(topic, on)
                continue
            user = self._user(frame)  # under CURVE; None for what libzmq sends when a peer leaves
            if user is not None and user not in self.topo.taps:
                # What the prefix covers of the events and heartbeats, never the mirrors.
                for t in self.own_topics:
                    if t != TAP_TOPIC and t.startswith(topic):
                        self.xpub.setsockopt(zmq.SUBSCRIBE if on else zmq.UNSUBSCRIBE, t)
                if not on:
                    if topic == TAP_TOPIC and self.refused_taps > 0:
                        self.refused_taps -= 1
                    continue
                if topic == TAP_TOPIC:
                    self.refused_taps += 1
                self.metrics.auth_refused["tap"] = self.metrics.auth_refused.get("tap", 0) + 1
                if len(self.refused_logged) < 1000 and ("tap", user) not in self.refused_logged:
                    self.refused_logged.add(("tap", user))
                    self.log("warn", f"'{user}' subscribed to '{wire.printable(topic.decode('latin-1'))}', which "
                                     f"would take tap mirrors, but is not a [taps.*] identity: it gets events "
                                     f"and heartbeats only")
                continue
            if self.keys and not on and topic == TAP_TOPIC and self.refused_taps > 0:
                # A peer that leaves unsubscribes with no User-Id: a refused request going
                # away must not take the real taps' count down.
                self.refused_taps -= 1
                continue
            self._apply_subscription(topic, on)
            if topic == TAP_TOPIC:
                self.tap_subscriptions = max(self.tap_subscriptions + (1 if on else -1), 0)

    def _apply_subscription(self, topic, on):
        self.xpub.setsockopt(zmq.SUBSCRIBE if on else zmq.UNSUBSCRIBE, topic)

    def _taps(self):
        return self.tap_subscriptions

    def _mirror(self, type_, env_bytes, payload_bytes):
        if not self._taps():
            return
        self.mirror_seq += 1
        env = wire.make_envelope(self.service, type_, "event", sequence=self.mirror_seq)
        try:
            self.xpub.send_multipart([TAP_TOPIC, wire.encode_envelope(env), bytes(env_bytes), payload_bytes],
                                     zmq.NOBLOCK)
            self.metrics.inc("mirrored")
        except zmq.Again:
            pass

    # --- a unit of work: a batch of messages, one transaction, one savepoint per message
    def _apply(self, batch, received=None):
        """`received`: when the batch was taken from its sockets (queue_us)."""
        t0 = time.perf_counter()
        marks = {p: s.mark() for p, s in self.streams.items()}
        head0 = self.store.head
        heads0 = dict(self.command_heads)
        outbox_marks = {t: (o.acked, o.incarnation, o.checked) for t, o in self.outboxes.items()}
        self.to_publish, self.to_send = [], []
        try:
            self.store.begin()
            for kind, peer, frames, user in batch:
                if received is not None:
                    self.metrics.queue_us.add((time.perf_counter() - received) * 1e6)
                if kind == "sub":
                    self._event_frames(peer, frames)
                elif kind == "dealer":
                    self._replay_reply(peer, frames)
                else:
                    self._command(frames, user, peer)
            for pub, s in self.streams.items():
                if s.position != marks[pub][0] or s.identity() != s.saved_identity:
                    self.store.set_position("ev:" + pub, s.position, s.identity())
            for sender, pos, epochs in self.inbox.moved():
                self.store.set_position("cmd:" + sender, pos, epochs)
            if self.store.head != head0:
                self.store.save_head()
            t_commit = time.perf_counter()
            self.store.commit()
            self.metrics.store_commit_us.add((time.perf_counter() - t_commit) * 1e6)
        except Exception as e:  # the store failed: nothing of the batch happened
            self.store.rollback()
            for p, s in self.streams.items():
                s.rewind(marks[p])
                s.replay_wanted = True
            self.inbox.rolled_back()
            self.store.head = head0
            self.command_heads = heads0
            for t, (a, i, c) in outbox_marks.items():
                self.outboxes[t].acked, self.outboxes[t].incarnation, self.outboxes[t].checked = a, i, c
            self.metrics.inc("store_failures")
            if self.store_error is None:
                self.log("error", f"store write failed ({e}); nothing of the batch is applied, retrying")
            self.store_error = str(e)
            return
        if self.store_error:
            self.log("info", "store writes work again")
        self.store_error = None
        for s in self.streams.values():
            s.saved_identity = s.identity()
        self.inbox.committed()
        self.metrics.batch_size.add(len(batch))
        self.metrics.commit_us.add((time.perf_counter() - t0) * 1e6)
        t_relay = time.perf_counter()
        self._flush()
        self.metrics.relay_us.add((time.perf_counter() - t_relay) * 1e6)

    def _flush(self):
        """After commit: the batch's events go out, and its commands where they may."""
        for frames in self.to_publish:
            self.xpub.send_multipart(frames)
            self.metrics.inc("published")
        for target, seq, env, payload in self.to_send:
            if self.outboxes[target].may_send():
                try:
                    self.pushes[target].send_multipart([env, payload], zmq.NOBLOCK)
                    self.outboxes[target].sent(seq)
                except zmq.Again:
                    pass  # resent from the store
        self.to_publish, self.to_send = [], []

    def _store_failed(self, e):
        self.metrics.inc("store_failures")
        if self.store_error is None:
            self.log("error", f"store write failed ({e}); degraded until writes work again")
        self.store_error = str(e)

    def _effects(self, fx, pub=None):
        for level, text in fx.reports:
            self.log(level, text)
        if fx.loss:
            self.loss.append(fx.loss)
        if fx.gap_opened:
            self.metrics.inc("gaps_seen")
        if fx.gap_repaired:
            self.metrics.inc("gaps_repaired")
        self.metrics.inc("events_lost", fx.events_lost)

    def _event_frames(self, pub, frames):
        stream = self.streams.get(pub)
        now = time.monotonic()
        if stream:
            stream.heard(now)
        if len(frames) != 3:
            self.metrics.inc("rejected_frames")
            self._dead_letter(f"events:{pub}", None, f"expected topic, envelope and payload frames, got "
                                                     f"{len(frames)} frame(s)", frames)
            return
        topic = frames[0]
        if topic == HEARTBEAT_TOPIC:
            self._heartbeat_of(pub, frames[2])
            return
        if not stream:
            return
        try:
            env = wire.decode_envelope(frames[1])
        except wire.Rejected as e:
            self.metrics.inc("rejected_frames")
            self._dead_letter(f"events:{pub}", None, str(e), frames)
            return
        if env["source"] != pub or env["kind"] != "event" or not env.get("sequence"):
            self.metrics.inc("rejected_frames")
            self._dead_letter(f"events:{pub}", env, f"not an event of {pub}'s stream (source "
                                                    f"'{wire.printable(env['source'])}', kind '{env['kind']}', "
                                                    f"sequence {env.get('sequence', 0)})", frames)
            return
        self._offer(stream, env, frames[1], frames[2], False)

    def _heartbeat_of(self, pub, payload):
        try:
            word = wire.decode_payload(payload, "$heartbeat", self.max_bytes, self.max_bytes)
            acks = word.get("acks") or {}
            epoch = word.get("epoch")
            if word.get("service", pub) != pub or not isinstance(word["incarnation"], str) or \
               not isinstance(acks, dict) or not all(isinstance(v, int) for v in acks.values()) or \
               not (epoch is None or isinstance(epoch, int)) or not isinstance(word.get("boot", ""), str):
                raise ValueError("not a heartbeat of " + pub)
            word = {"incarnation": word["incarnation"], "boot": word.get("boot", ""),
                    "head": min(max(int(word["head"]), 0), MAX_INT), "durable": bool(word.get("durable", True)),
                    "epoch": epoch, "acks": acks}
        except (wire.Rejected, KeyError, TypeError, ValueError, AttributeError, OverflowError):
            self.metrics.inc("rejected_frames")
            return
        fx = rules.Effects()
        if pub in self.streams:
            self.streams[pub].heartbeat(word, fx)
        outbox = self.outboxes.get(pub)
        if outbox:
            ack = word["acks"].get(self.service)
            forget = outbox.heartbeat(ack if isinstance(ack, int) else None, word["incarnation"], word["durable"],
                                      self.command_heads[pub], self.durable, time.monotonic(), fx)
            if forget:
                self.store.forget_commands(pub, forget)
            self.store.set_outbound(pub, self.command_heads[pub], outbox.acked, outbox.incarnation)
        self._effects(fx, pub)

    def _replay_reply(self, pub, frames):
        stream = self.streams[pub]
        if len(frames) < 2 or (len(frames) - 2) % 2:
            self.metrics.inc("rejected_frames")
            return
        try:
            env = wire.decode_envelope(frames[0])
        except wire.Rejected:
            self.metrics.inc("rejected_frames")
            return
        if not stream.awaits(env.get("causationid", "")):
            return  # an answer to a replay given up on
        fx = rules.Effects()
        if env["type"] == "$error":
            stream.refused(fx)
            self._effects(fx, pub)
            return
        try:
            hdr = wire.decode_payload(frames[1], "$replay", self.max_bytes, self.max_bytes)
            answer = {"incarnation": hdr["incarnation"], "boot": hdr.get("boot", ""), "head": int(hdr["head"]),
                      "durable": bool(hdr.get("durable", True)), "epoch": hdr.get("epoch"),
                      "oldest": int(hdr.get("oldest", 1)), "epoch_of_from": hdr.get("epoch_of_from")}
        except (wire.Rejected, KeyError, TypeError, ValueError):
            self.metrics.inc("rejected_frames")
            stream.refused(fx)
            return
        ok = stream.answered(answer, fx)
        self._effects(fx, pub)
        if not ok:
            return
        for i in range(2, len(frames), 2):
            try:
                ev = wire.decode_envelope(frames[i])
            except wire.Rejected as e:
                self._dead_letter(f"replay:{pub}", None, str(e), frames[i:i + 2])
                continue
            self._offer(stream, ev, frames[i], frames[i + 1], True)

    def _offer(self, stream, env, env_bytes, payload, replayed):
        fx = rules.Effects()
        seq = env.get("sequence", 0)
        was_gap = stream.in_gap()
        if self.break_rule == "duplicates" and stream.verified() and 0 < seq <= stream.position:
            verdict = rules.APPLY  # the deliberately broken peer: applies duplicates again
        else:
            verdict = stream.offer(seq, env.get("epoch", 0), replayed, fx)
        self._effects(fx, stream.publisher)
        if verdict == rules.DUPLICATE:
            self.metrics.inc("duplicates")
        elif verdict == rules.GAP and not was_gap:
            self._mirror("$gap", env_bytes, wire.pack({"publisher": stream.publisher, "position": stream.position,
                                                        "seen": seq}))
        if verdict != rules.APPLY:
            return
        if fx.gap_repaired:
            self._mirror("$repaired", env_bytes, wire.pack({"publisher": stream.publisher,
                                                             "position": stream.position}))
        type_ = env["type"]
        if type_ not in self.topo.reacts_to.get(stream.publisher, []):
            return  # not one it handles: the position moved, nothing else
        where = "replay" if replayed else "events"
        self._handle(f"{where}:{stream.publisher}", self.event_handlers.get(type_), env, env_bytes, payload)

    def _handle(self, endpoint, handler, env, env_bytes, payload, seen_id=None):
        """Runs one handler in its own savepoint; a refusal or failure rolls back only
        its message and keeps the message as a dead letter. Returns the refusal, or None."""
        type_ = env["type"]
        tm = self.metrics.type(type_)
        tm.received += 1
        t0 = time.perf_counter()
        head, heads = self.store.head, dict(self.command_heads)
        n_pub, n_send = len(self.to_publish), len(self.to_send)
        self.store.savepoint()
        try:
            data = self._decode(type_, payload, env)
            handler(data, Context(self, env))
            if seen_id is not None:
                self.store.mark_seen(seen_id, None, self.topo.settings["retention_command_ids"])
            self.store.release()
            tm.handled += 1
            refusal = None
        except sqlite3.Error:
            raise  # the store failed, not the message: the whole batch rolls back (_apply)
        except Exception as e:
            self.store.undo()
            self.store.head, self.command_heads = head, heads
            del self.to_publish[n_pub:], self.to_send[n_send:]
            tm.rejected += 1
            refusal = str(e) if isinstance(e, (Refused, wire.Rejected, Invalid, Oversized)) else \
                f"handler failed: {type(e).__name__}: {e}"
            if isinstance(e, Refused):
                refusal = f"{type_}: refused: {refusal}"
            if seen_id is not None:
                self.store.mark_seen(seen_id, refusal[:256], self.topo.settings["retention_command_ids"])
            self._dead_letter(endpoint, env, refusal, [env_bytes, payload], retryable=True)
        tm.latency_us.add((time.perf_counter() - t0) * 1e6)
        return refusal

    def _decode(self, type_, payload, env):
        limit = self.topo.settings["max_field_bytes"]
        value = wire.decode_payload(payload, type_, self.max_bytes, limit)
        m = self.messages.get(type_)
        if m is None:
            return value
        try:
            return m.check(value)
        except Invalid as e:
            sent = env.get("schemaversion", 1)
            raise Invalid(f"{type_} ({len(payload)} bytes): {e} (sent as schemaversion {sent} by "
                          f"{wire.printable(env['source'])}; {self.service} {VERSION} reads schemaversion "
                          f"{m.schemaversion})")

    def _command(self, frames, user, oversize=None):
        if oversize:
            self.metrics.inc("oversized_received")
            self.metrics.inc("rejected_frames")  # as the C++ node counts it
            self._dead_letter("commands", None, f"a command {oversize}: its first frames are kept", frames)
            return
        if len(frames) != 2:
            self.metrics.inc("rejected_frames")
            self._dead_letter("commands", None, f"expected envelope and payload frames, got {len(frames)} "
                                                f"frame(s)", frames)
            return
        try:
            env = wire.decode_envelope(frames[0])
        except wire.Rejected as e:
            self.metrics.inc("rejected_frames")
            self._dead_letter("commands", None, str(e), frames)
            return
        self._mirror("$command", frames[0], frames[1])
        if user and not self._rate_ok(user, "commands"):
            return
        type_, source, seq = env["type"], env["source"], env.get("sequence", 0)
        if not seq and self.store.seen(env["id"])[0]:
            self.metrics.inc("duplicates")  # handled once already: applied or refused, it stays so
            return
        problem = None
        if env["kind"] != "command":
            problem = f"a {env['kind']} on the commands endpoint"
        elif type_ not in self.topo.accepts or type_ not in self.command_handlers:
            problem = f"service '{self.service}' does not accept command '{wire.printable(type_)}'"
            self.metrics.type("$unknown" if not self._known_type(type_) else type_).rejected += 1
        elif seq and self.service not in self.topo.services.get(source, {}).get("sends", {}):
            problem = f"a sequenced command from '{wire.printable(source)}', which the topology does not let " \
                      f"send {self.service} commands"
        elif user and ((seq and source != user) or (source != user and source in self.topo.identities())):
            problem = f"command names source '{wire.printable(source)}', but comes from identity '{user}'"
            self.metrics.auth_refused["source"] = self.metrics.auth_refused.get("source", 0) + 1
        if problem:
            self._dead_letter("commands", env, problem, frames)
            if not seq:
                self.store.mark_seen(env["id"], problem[:256], self.topo.settings["retention_command_ids"])
            return
        handler = self.command_handlers[type_]
        if seq:
            fx = rules.Effects()
            verdict = self.inbox.offer(source, seq, env.get("epoch", 0), fx)
            self._effects(fx)
            if verdict == rules.DUPLICATE:
                self.metrics.inc("duplicates")
            elif verdict == "out_of_order":
                self.metrics.inc("commands_out_of_order")
            else:
                self._handle("commands", handler, env, frames[0], frames[1])
            return
        self._handle("commands", handler, env, frames[0], frames[1], seen_id=env["id"])

    def _known_type(self, type_):
        for svc in self.topo.services.values():
            if type_ in svc.get("publishes", []) + svc.get("accepts", []) + svc.get("answers", []):
                return True
        return False

    def _rate_ok(self, user, what):
        rate = self.topo.client_rate(user, what)
        if not rate:
            return True
        now = int(time.monotonic())
        window = self.__dict__.setdefault("_windows", {})
        second, n = window.get((user, what), (now, 0))
        if second != now:
            second, n = now, 0
        window[(user, what)] = (second, n + 1)
        if n < rate:
            return True
        self.metrics.rate_limited[what] += 1
        return False

    def _dead_letter(self, endpoint, env, reason, frames, retryable=False):
        """Keeps a refused message whole. Only a handler's refusal is `retryable` (it keeps
        the message id, one letter per id): what was refused at the door — not routed
        here, forged, malformed — never reaches a handler, not even by a retry."""
        source = env["source"] if env else ""
        type_ = env["type"] if env else ""
        evicted = self.store.dead_letter(endpoint, source, type_, reason, env["id"] if retryable else "", frames,
                                         self.topo.settings["max_dead_letters"],
                                         self.topo.settings["max_dead_letter_bytes"])
        self.metrics.inc("dead_letters")
        self.metrics.inc("dead_letters_evicted", evicted)
        what = f"{wire.printable(type_)} from {wire.printable(source)}" if env else f"a message on {endpoint}"
        self.log("warn", f"dead letter: {what}: {wire.printable(reason, 500)}")
        env_bytes = bytes(frames[0]) if env and frames else wire.encode_envelope(
            wire.make_envelope(self.service, "$unknown", "event"))
        self._mirror("$deadletter", env_bytes, wire.pack({"endpoint": endpoint, "reason": reason,
                                                          "frames": len(frames)}))

    # --- what handlers do
    def _emit(self, cause, message, data, correlationid):
        type_ = _name(message)
        publishes = self.declared_publishes if self.declared_publishes is not None else self.topo.publishes
        if type_ not in publishes:
            raise Refused(f"{self.service} does not publish '{type_}'")
        m = message if isinstance(message, Message) else self.messages.get(type_)
        payload = wire.pack(m.encode(data) if m else data)
        seq = self.store.head + 1
        env = wire.make_envelope(self.service, type_, "event", sequence=seq, epoch=self.store.epoch,
                                 correlationid=correlationid or cause.get("correlationid", ""),
                                 causationid=cause["id"], traceparent=cause.get("traceparent", ""),
                                 schemaversion=m.schemaversion if m else 1)
        env_bytes = wire.encode_envelope(env)
        self._check_envelope(type_, env, env_bytes)
        topic = type_.encode() + b" "
        if len(topic) + len(env_bytes) + len(payload) > self.max_bytes:
            self.metrics.inc("oversized_refused")
            raise Oversized(f"{type_} #{seq} is {len(env_bytes) + len(payload)} bytes, over max_message_bytes "
                            f"= {self.max_bytes}: not emitted")
        self.store.append_event(seq, type_, env.get("correlationid", ""), env_bytes, payload)
        self.store.head = seq
        self.metrics.type(type_).published += 1
        self.to_publish.append([topic, env_bytes, payload])

    def _check_envelope(self, type_, env, env_bytes):
        """An envelope of ours that its readers would refuse (docs/protocol.md §2) is not
        committed: refused by every reader and asked for again, it would stall the stream."""
        def size(v):  # as the wire writes it: bytes that were not UTF-8 are kept as they came
            return len(v.encode("utf-8", "surrogateescape"))
        long = [k for k, v in env.items() if isinstance(v, str) and size(v) > wire.MAX_ENVELOPE_STRING]
        if long or len(env_bytes) > wire.MAX_ENVELOPE_BYTES:
            self.metrics.inc("oversized_refused")
            what = (f"its {long[0]} of {size(env[long[0]])} bytes is over the limit of "
                    f"{wire.MAX_ENVELOPE_STRING} bytes per string" if long else
                    f"it is {len(env_bytes)} bytes, over the limit of {wire.MAX_ENVELOPE_BYTES} bytes per envelope")
            raise Oversized(f"{self.service} emits {type_} whose envelope every peer would refuse: {what}, "
                            f"so it is not committed")

    def _send_command(self, cause, target, message, data):
        type_ = _name(message)
        if type_ not in self.topo.sends.get(target, []):
            raise Refused(f"{self.service} does not send '{type_}' to '{target}'")
        m = message if isinstance(message, Message) else self.messages.get(type_)
        payload = wire.pack(m.encode(data) if m else data)
        seq = self.command_heads[target] + 1
        env = wire.make_envelope(self.service, type_, "command", sequence=seq,
                                 epoch=self.store.epoch if self.durable else 0,
                                 correlationid=cause.get("correlationid", ""), causationid=cause["id"],
                                 schemaversion=m.schemaversion if m else 1)
        env_bytes = wire.encode_envelope(env)
        self._check_envelope(type_, env, env_bytes)
        self.store.append_command(target, seq, env_bytes, payload)
        self.command_heads[target] = seq
        o = self.outboxes[target]
        self.store.set_outbound(target, seq, o.acked, o.incarnation)
        self.to_send.append((target, seq, env_bytes, payload))

    # --- timers
    def _timers(self):
        now = time.monotonic()
        for s in self.pending_refusals[:]:
            self.pending_refusals.remove(s)
            endpoint, address, key = s
            self.metrics.auth_refused[endpoint] = self.metrics.auth_refused.get(endpoint, 0) + 1
            if (endpoint, key) not in self.refused_logged and len(self.refused_logged) < 1000:
                self.refused_logged.add((endpoint, key))
                self.log("warn", f"refused a CURVE client on {endpoint} from {address} (key {key}): not admitted")
            env = wire.make_envelope(address, "$refused", "event")
            self._mirror("$refused", wire.encode_envelope(env),
                         wire.pack({"endpoint": endpoint, "address": address, "key": key}))
        if now >= self.next_heartbeat:
            self._heartbeat()
            self.next_heartbeat = now + self.heartbeat_s
        for pub, stream in self.streams.items():
            fx = rules.Effects()
            reopen_sub, reopen_replay, ask = stream.tick(now, fx)
            self._effects(fx, pub)
            if reopen_sub:
                self._subscribe(pub)
            if reopen_replay:
                self._open_dealer(pub)
            if ask is not None:
                id_ = wire.uuid7()
                env = wire.make_envelope(self.service, "$replay", "query", id_=id_)
                self.dealers[pub].send_multipart([wire.encode_envelope(env),
                                                  wire.pack({"from": ask, "max": REPLAY_MAX})], zmq.NOBLOCK)
                stream.asked(id_, ask, now)
                self.metrics.inc("replays_requested")
        for target, outbox in self.outboxes.items():
            if outbox.resend_due(now):
                rows = self.store.unacked(target, outbox.acked, outbox.resend_limit())
                for seq, env, payload in rows:
                    try:
                        self.pushes[target].send_multipart([env, payload], zmq.NOBLOCK)
                        outbox.sent(seq)
                    except zmq.Again:
                        break
                self.metrics.inc("commands_resent", len(rows))
                outbox.last_progress = now
        if now >= self.next_trim:
            self.next_trim = now + 10
            self.store.trim(self.topo.settings["retention_events"])

    def _heartbeat(self):
        payload = {"service": self.service, "incarnation": self.store.incarnation, "boot": self.boot,
                   "head": self.store.head, "oldest": self.store.oldest(), "durable": self.durable,
                   "acks": self.inbox.acks(), "epoch": self.store.epoch}
        env = wire.make_envelope(self.service, "$heartbeat", "event")
        self.xpub.send_multipart([HEARTBEAT_TOPIC, wire.encode_envelope(env), wire.pack(payload)])

    # --- queries (§7.5)
    def _query(self, raw, user, oversize):
        if oversize:
            self.metrics.inc("oversized_received")
            self.metrics.inc("rejected_frames")  # as the C++ node counts it
            self._dead_letter("queries", None, f"a query {oversize}: its first frames are kept", raw[1:])
            return
        if len(raw) < 3:
            self.metrics.inc("rejected_frames")
            self._dead_letter("queries", None, f"expected routing, envelope and payload frames, got {len(raw)} "
                                               f"frame(s)", raw)
            return
        routing, env_bytes, payload = raw[:-2], raw[-2], raw[-1]
        try:
            env = wire.decode_envelope(env_bytes)
        except wire.Rejected as e:
            self.metrics.inc("rejected_frames")
            self._dead_letter("queries", None, str(e), raw[-2:])
            self._reply(routing, None, "$error", {"error": str(e)})
            return
        if user and not self._rate_ok(user, "queries"):
            self._reply(routing, env, "$error", {"error": f"rate limit: identity '{user}' may ask "
                                                          f"{self.topo.client_rate(user, 'queries')} queries per "
                                                          f"second of {self.service}"})
            return
        type_ = env["type"]
        if type_.startswith("$"):
            try:
                refusal = self._builtin_refusal(type_, payload, user)
                if refusal:
                    self._reply(routing, env, "$error", {"error": refusal})
                    return
                body, extra = self._builtin(env, payload)
                self._reply(routing, env, type_, body, extra)
            except sqlite3.Error:
                raise
            except Exception as e:  # whatever a request holds, the answer is an $error
                self._reply(routing, env, "$error", {"error": f"{type_}: {type(e).__name__}: {e}"
                                                     if not isinstance(e, (wire.Rejected, Invalid)) else f"{type_}: {e}"})
            return
        self._mirror("$query", env_bytes, payload)
        entry = self.query_handlers.get(type_)
        if entry is None or type_ not in self.topo.answers:
            msg = f"service '{self.service}' does not answer query '{wire.printable(type_)}'"
            self._dead_letter("queries", env, msg, raw[-2:])
            self._reply(routing, env, "$error", {"error": msg})
            return
        tm = self.metrics.type(type_)
        tm.received += 1
        t0 = time.perf_counter()
        try:
            data = self._decode(type_, payload, env)
        except (wire.Rejected, Invalid) as e:
            self._dead_letter("queries", env, str(e), raw[-2:])
            self._reply(routing, env, "$error", {"error": str(e)})
            return
        try:
            answer = entry[0](data, QueryContext(self, env))
            m = self.messages.get(entry[1])
            body = m.encode(answer) if m else answer
            tm.handled += 1
        except sqlite3.Error:
            raise
        except Exception as e:  # a refusal ("no such order") is an answer, not a dead letter
            tm.rejected += 1
            body = None
            self._reply(routing, env, "$error", {"error": f"{type_}: {e}"})
        tm.latency_us.add((time.perf_counter() - t0) * 1e6)
        if body is not None:
            self._reply(routing, env, type_, body)

    def _reply(self, routing, cause, type_, body, extra=()):
        if cause:
            env = wire.make_envelope(self.service, type_, "reply", correlationid=cause.get("correlationid", ""),
                                     causationid=cause["id"], traceparent=cause.get("traceparent", ""))
        else:
            env = wire.make_envelope(self.service, type_, "reply")
        env_bytes, payload = wire.encode_envelope(env), wire.pack(body)
        if len(env_bytes) + len(payload) > self.max_bytes:
            self.metrics.inc("oversized_refused")
            env["type"] = "$error"
            env_bytes = wire.encode_envelope(env)
            payload = wire.pack({"error": f"reply {type_} is {len(payload)} bytes, over max_message_bytes"})
            extra = ()
        try:
            self.router.send_multipart([*routing, env_bytes, payload, *extra], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # the asker is gone

    def _builtin_refusal(self, type_, payload, user):
        if not user or type_ not in ("$replay", "$trace", "$deadletters"):
            return None
        if user not in self.admitted["events"]:
            self.metrics.auth_refused["builtin"] = self.metrics.auth_refused.get("builtin", 0) + 1
            return f"identity '{user}' may not read the events of {self.service} ({type_})"
        if type_ == "$deadletters":
            req = wire.decode_payload(payload, type_, self.max_bytes, self.max_bytes)
            if isinstance(req, dict) and req.get("op") == "retry" and user not in self.admitted["commands"]:
                self.metrics.auth_refused["builtin"] = self.metrics.auth_refused.get("builtin", 0) + 1
                return f"identity '{user}' may not send commands to {self.service} ($deadletters retry)"
        return None

    @staticmethod
    def _number(req, key, default):
        """A request's integer, clamped to what SQLite holds; anything else is refused."""
        v = req.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not math.isfinite(v)):
            raise Invalid(f"field '{key}': expected integer, got {type(v).__name__}")
        return min(max(int(v), 0), MAX_INT)

    def _builtin(self, env, payload):
        type_ = env["type"]
        req = wire.decode_payload(payload, type_, self.max_bytes, self.max_bytes) if payload else {}
        if not isinstance(req, dict):
            raise Invalid(f"expected a map, got {type(req).__name__}")
        if type_ == "$health":
            return self._health(), ()
        if type_ == "$metrics":
            m = self.metrics
            m.c["subscriptions"] = self.heartbeat_subscribers
            m.c["taps"] = self._taps()
            return m.reply(self.service), ()
        if type_ == "$topology":
            t = self.topo
            return {"mesh": t.mesh_name, "file": t.path, "service": self.service,
                    "endpoints": {w: t.endpoint(self.service, w, for_peer=False) for w in ("events", "commands",
                                                                                         "queries")},
                    "publishes": t.publishes, "accepts": t.accepts, "answers": t.answers,
                    "reacts_to": t.reacts_to, "sends": t.sends, "heartbeat_ms": t.settings["heartbeat_ms"],
                    "durability": t.settings["durability"]}, ()
        if type_ == "$schema":
            return {"service": self.service, "build": VERSION, "contract": json.dumps(self.contract())}, ()
        if type_ == "$replay":
            frm, to = self._number(req, "from", 1), self._number(req, "to", MAX_INT)
            limit = min(max(self._number(req, "max", 512), 1), 2048)
            events = self.store.events(frm, to, limit, self.max_bytes // 2)
            self.metrics.inc("replays_served")
            hdr = {"head": self.store.head, "oldest": self.store.oldest(), "count": len(events),
                   "incarnation": self.store.incarnation, "boot": self.boot, "durable": self.durable,
                   "epoch": self.store.epoch, "epoch_of_from": self.store.epoch_of(frm - 1) if frm > 0 else 0}
            return hdr, [f for ev in events for f in ev]
        if type_ == "$trace":
            corr = req["correlationid"]
            if not isinstance(corr, str):
                raise Invalid("field 'correlationid': expected string")
            events = self.store.events_of(corr, min(max(self._number(req, "max", 1000), 1), 10_000),
                                          self.max_bytes // 2)
            return {"count": len(events)}, [f for ev in events for f in ev]
        if type_ == "$seen":
            ids = req["ids"]
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise Invalid("field 'ids': expected an array of strings")
            if len(ids) > 1000:
                raise Invalid(f"{len(ids)} ids asked, at most 1000 per query")
            seen, outcomes = [], []
            for id_ in ids:
                was, refusal = self.store.seen(id_)
                seen.append(was)
                o = {"id": id_, "state": "unseen" if not was else "refused" if refusal else "applied"}
                if refusal:
                    o["reason"] = refusal
                outcomes.append(o)
            return {"seen": seen, "outcomes": outcomes}, ()
        if type_ == "$deadletters":
            return self._deadletters(req), ()
        raise Invalid(f"unknown built-in query '{wire.printable(type_)}'")

    def _health(self):
        upstreams = []
        for pub, s in self.streams.items():
            upstreams.append({"publisher": pub, "position": s.position, "known_head": s.known_head,
                              "lag": max(s.known_head - s.position, 0),
                              "behind_retention": s.phase == "behind_retention",
                              "head_regressed": s.phase == "history_lost", "stalled": s.stalled})
        degraded = self.store_error or any(s.stopped() or s.stalled for s in self.streams.values()) or self.loss
        out = {"service": self.service, "version": VERSION, "incarnation": self.store.incarnation,
               "uptime_s": time.monotonic() - self.started, "state": "degraded" if degraded else "ready",
               "durable": self.durable, "head": self.store.head, "oldest": self.store.oldest(),
               "subscriptions": self.heartbeat_subscribers, "dead_letters": self.store.dead_letter_count(),
               "upstreams": upstreams}
        if self.store_error:
            out["store_error"] = self.store_error
        return out

    def _deadletters(self, req):
        op = req.get("op", "list")
        if op == "list":
            limit = min(self._number(req, "max", 100), 1000)
            return {"count": self.store.dead_letter_count(), "letters": self.store.dead_letters(limit)}
        letter = self.store.dead_letter_by_id(self._number(req, "id", 0))
        if letter is None:
            raise Invalid(f"no dead letter {self._number(req, 'id', 0)}")
        if op == "show":
            share = max(self.max_bytes // 2 // max(len(letter["raw"]), 1), 1)
            if any(len(f) > share for f in letter["raw"]):
                letter["raw"] = [f[:share] for f in letter["raw"]]
                letter["truncated"] = True
            return letter
        if op != "retry":
            raise Invalid(f"op '{wire.printable(str(op))}' is none of list, show, retry")
        return self._retry(letter)

    def _retry(self, letter):
        """Applies a kept message again (its handler, now); gone when it is taken. Only a
        letter a handler refused is retried: one refused at the door (not routed here,
        forged, malformed, a query) is refused again, as the C++ node does."""
        raw = letter["raw"]
        out = {"id": letter["id"], "retried": True, "ok": False, "attempts": letter["attempts"]}
        endpoint = letter["endpoint"]
        try:
            env = wire.decode_envelope(raw[0]) if len(raw) == 2 and self.store.retryable(letter["id"]) else None
        except wire.Rejected:
            env = None
        handlers, types = {}, ()
        if endpoint == "commands" and env and env["kind"] == "command":
            handlers, types = self.command_handlers, self.topo.accepts
        elif endpoint.startswith(("events:", "replay:")) and env and env["kind"] == "event":
            handlers = self.event_handlers
            types = self.topo.reacts_to.get(endpoint.split(":", 1)[1], ())
        if env is None or env["type"] not in handlers or env["type"] not in types:
            self.store.refuse_again(letter["id"], letter["reason"])
            out["attempts"] += 1
            return out
        self.to_publish, self.to_send = [], []
        head, heads = self.store.head, dict(self.command_heads)
        self.store.begin()
        try:
            seen_id = env["id"] if endpoint == "commands" and not env.get("sequence") else None
            # A refusal again updates the same letter (one per message id); a success removes it.
            refusal = self._handle(endpoint, handlers[env["type"]], env, raw[0], raw[1], seen_id=seen_id)
            if refusal is None:
                self.store.drop_dead_letter(letter["id"])
            self.store.save_head()
            self.store.commit()
        except sqlite3.Error:
            self.store.rollback()
            self.store.head, self.command_heads = head, heads
            self.to_publish, self.to_send = [], []
            raise
        self._flush()
        if refusal is None:
            out["ok"] = True
        else:
            out["attempts"] += 1
        return out
