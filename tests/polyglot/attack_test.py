#!/usr/bin/python3
"""One admitted, low-privilege client (the `storefront` key) attacks a running shop
under CURVE, as issue 14 found it could; each attack is a function, each claim an
`ok`/`FAIL` line:

  modes       the state directory is 0700, its .db, .db-wal and .log files 0600
  door        a field over max_field_bytes is refused at the door (command: a dead
              letter; query: $error), naming the limit
  poison      a PlaceOrder whose 1,000,000-char customer passes the door (the topology
              raises that type's limit) makes payments emit a ~2 MB PaymentDeclined:
              it is never committed (a dead letter "over max_message_bytes",
              oversized_refused), and 100 orders after it all complete, lag 0 everywhere
  longkey     a PlaceOrder whose 2,000-char order id passes the door: orders' event
              would carry it as its correlation id, over the envelope's 1,024 bytes per
              string; it is never committed (a dead letter naming the field and the
              limit, oversized_refused), and no stream stalls behind it
  mirrors     subscriptions "" and "$t" get no `$tap ` mirror while a real tap watches
              (auth_refused.tap)
  forgery     commands whose envelope source is `payments` (sequenced 1..50; the
              topology lets payments send PlaceOrder to orders) or `cli` are refused
              (auth_refused.source, a dead letter naming it), none is applied
  subs        60 subscriptions with 1 MB topics: orders' RSS grows by less than 64 MiB,
              during and after (subscriptions_ignored, or the connection dropped)
  multipart   one command of FRAMES x 1,000,000 bytes: the letter kept is at most
              max_message_bytes and names the real frame count; RSS back under
              baseline + 128 MiB; orders.db + -wal do not grow by hundreds of MB
  flood       20,000 garbage commands (from cli: storefront may send 100 a second):
              at most max_dead_letters kept, the oldest evicted (dead_letters_evicted);
              storefront's own burst of 500 is rate limited (rate_limited.commands)
  ratelimit   ListOrders at 200/s for 2 s: some get `$error` "rate limit"
              (rate_limited.queries), and a cli order's saga completes meanwhile
  takeover    a second `orders` (its own state dir, the same ipc paths) takes the
              endpoints: the real one logs an ERROR naming the endpoint, and answers
              again within a few heartbeats of the impostor stopping
  final       100 orders complete, every service is ready with lag 0, none restarted

    attack_test.py --build BUILD --state-dir DIR --topology FILE --work DIR [--frames N]

Run from the source root with the mesh up (attack_test.sh writes the topology, starts
the mesh and runs this). Exit 1 on any FAIL.
"""
import argparse
import json
import glob
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time

import zmq
from zmq.utils import z85

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from garbage_test import Checks, Mesh, pack, pack_envelope, poll_until, read_key, unpack  # noqa: E402
from zmtp_curve import CurveClient  # noqa: E402

MIB = 1 << 20


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def order(order_id, customer="alice", sku="KB-101", quantity=1):
    return {"order_id": order_id, "customer": customer, "sku": sku, "quantity": quantity}


class Shop:
    """The mesh as the attacker and the operator see it: sockets per identity."""

    def __init__(self, args, checks):
        self.args = args
        self.checks = checks
        self.mesh = Mesh(args)
        self.ctx = self.mesh.ctx
        keys = os.path.join(args.state_dir, "keys")
        secret = read_key(f"{keys}/storefront.key")
        self.mesh.identities["storefront"] = (secret, zmq.curve_public(secret))
        self.dealers = {}
        self.pushes = {}

    def check(self, what, ok, detail=""):
        return self.checks.check(what, ok, detail)

    def socket(self, kind, service, endpoint, identity):
        s = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDTIMEO, 5000)
        self.mesh.connect(s, service, endpoint, identity)
        return s

    def ask(self, service, qtype, payload, identity="cli", timeout_ms=3000):
        """A query and its reply (type, payload), or (None, None) on no answer."""
        key = (service, identity)
        s = self.dealers.get(key)
        if s is None:
            s = self.dealers[key] = self.socket(zmq.DEALER, service, "queries", identity)
        s.send_multipart([pack_envelope(type=qtype, kind="query", source=identity), pack(payload)])
        if not s.poll(timeout_ms):
            s.close()
            del self.dealers[key]  # a late reply must not answer the next question
            return None, None
        frames = s.recv_multipart()
        return unpack(frames[0]).get("type"), unpack(frames[1])

    def send(self, service, ctype, payload, identity="cli", **envelope):
        key = (service, identity)
        s = self.pushes.get(key)
        if s is None:
            s = self.pushes[key] = self.socket(zmq.PUSH, service, "commands", identity)
        fields = {"source": identity, **envelope}
        s.send_multipart([pack_envelope(type=ctype, kind="command", **fields),
                          payload if isinstance(payload, bytes) else pack(payload)])

    def metrics(self, service):
        t, m = self.ask(service, "$metrics", {})
        return m if t == "$metrics" else {}

    def health(self, service):
        t, h = self.ask(service, "$health", {})
        return h if t == "$health" else None

    def letters(self, service, most=1000):
        t, r = self.ask(service, "$deadletters", {"op": "list", "id": 0, "max": most})
        return r if t == "$deadletters" else {"count": None, "letters": []}

    def pid(self, service):
        return self.mesh.pids().get(service)

    def status(self, order_id):
        t, r = self.ask("orders", "GetOrder", {"order_id": order_id})
        return r.get("status") if t and t != "$error" and isinstance(r, dict) else None

    def load(self, orders, seed, wait=20):
        r = subprocess.run([os.path.join(self.args.build, "troupe"), "shop", "load", "--topology", self.args.topology,
                            "--state-dir", self.args.state_dir, "--orders", str(orders), "--rate", "0",
                            "--seed", str(seed), "--quiet", "--json", "--wait", str(wait)],
                           capture_output=True, timeout=wait + 60)
        try:
            out = json.loads(r.stdout)
        except ValueError:
            return False, (r.stdout + r.stderr).decode(errors="replace").strip()[-300:] or "(no output)"
        line = f"{out['orders']} placed, {out['confirmed']} confirmed, {out['cancelled']} cancelled, {out['stuck']} stuck"
        return r.returncode == 0 and out["stuck"] == 0, line

    def settled(self, seconds=15):
        """Every service ready with lag 0 on every upstream; the last view when not."""
        view = {}

        def ready():
            view.clear()
            for name in self.mesh.services:
                h = self.health(name)
                view[name] = (h or {}).get("state"), sorted((u["publisher"], u["lag"]) for u in (h or {}).get(
                    "upstreams", []) if u.get("lag") or u.get("head_regressed") or u.get("stalled"))
            return all(state == "ready" and not lags for state, lags in view.values())
        return poll_until(ready, seconds, 0.2), dict(view)

    def close(self):
        for s in list(self.dealers.values()) + list(self.pushes.values()):
            s.close()


def attack_modes(shop):
    state = shop.args.state_dir
    mode = stat.S_IMODE(os.stat(state).st_mode)
    shop.check(f"the state directory is 0700 (it is {mode:04o})", mode == 0o700)
    loose = []
    for pattern in ("*.db", "*.db-wal", "*.log"):
        for path in glob.glob(os.path.join(state, pattern)):
            m = stat.S_IMODE(os.stat(path).st_mode)
            if m != 0o600:
                loose.append(f"{os.path.basename(path)} {m:04o}")
    shop.check("every .db, .db-wal and .log file is 0600", not loose and glob.glob(os.path.join(state, "*.db")),
               ", ".join(loose[:8]))


def attack_door(shop):
    big = "x" * 1_000_000
    before = shop.metrics("orders").get("dead_letters", 0)
    shop.send("orders", "CancelOrder", {"order_id": big, "reason": "door"}, identity="storefront")
    t, r = shop.ask("orders", "GetOrder", {"order_id": big}, identity="storefront")
    shop.check("a query with a 1,000,000-char field gets $error naming the field limit",
               t == "$error" and "a string is longer than" in str(r.get("error")), f"{t}: {str(r)[:200]}")
    grew = poll_until(lambda: shop.metrics("orders").get("dead_letters", 0) > before, 10)
    reasons = [str(l.get("reason")) for l in shop.letters("orders")["letters"] if l.get("type") == "CancelOrder"]
    shop.check("a command with a 1,000,000-char field is refused at the door, its letter naming the limit",
               grew and any("a string is longer than" in r for r in reasons), f"reasons {[r[:120] for r in reasons]}")


def attack_poison(shop):
    """The issue's poison, let through the door: payments would emit a ~2 MB event."""
    base = {n: shop.metrics(n).get("oversized_refused", 0) for n in shop.mesh.services}
    shop.send("orders", "PlaceOrder", order("poison-1", customer="c" * 1_000_000), identity="storefront")
    where = {}

    def refused():
        for name in shop.mesh.services:
            for letter in shop.letters(name)["letters"]:
                if "over max_message_bytes" in str(letter.get("reason")):
                    where[name] = str(letter["reason"])[:200]
        return where
    poll_until(refused, 15, 0.2)
    shop.check("the oversized event is refused before commit: a dead letter 'over max_message_bytes'",
               bool(where), "no such letter in any service")
    counted = {n: shop.metrics(n).get("oversized_refused", 0) - base[n] for n in shop.mesh.services}
    shop.check("... counted in oversized_refused where it was refused",
               bool(where) and all(counted[n] >= 1 for n in where), f"oversized_refused grew by {counted}")
    ok, line = shop.load(100, seed=21)
    shop.check(f"100 orders after the poison all complete ({line})", ok)
    ok, view = shop.settled()
    shop.check("every service is ready with lag 0 after the poison", ok, str(view))


def attack_longkey(shop):
    """A PlaceOrder whose 2,000-char order id passes the door (a field may hold 64 KiB):
    orders' events carry the order id as their correlation id, over the envelope's limit
    of 1,024 bytes per string. Committed, every reader would refuse the event, ask for
    it again and refuse it again: orders' stream would stall behind it. It is refused
    before commit instead, and the mesh goes on."""
    base = shop.metrics("orders").get("oversized_refused", 0)
    long_id = "k" * 2000
    shop.send("orders", "PlaceOrder", order(long_id), identity="storefront")
    reason = {}

    def refused():
        for letter in shop.letters("orders")["letters"]:
            if "whose envelope every peer would refuse" in str(letter.get("reason")):
                reason["orders"] = str(letter["reason"])[:220]
        return reason
    poll_until(refused, 15, 0.2)
    shop.check("an event whose correlation id is over the envelope limit is not committed: a dead letter on orders "
               "naming the field and the limit",
               "correlationid of 2000 bytes is over the limit of 1024" in reason.get("orders", ""), str(reason))
    shop.check("... counted in oversized_refused",
               shop.metrics("orders").get("oversized_refused", 0) > base, "not counted")
    ok, line = shop.load(100, seed=23)
    shop.check(f"100 orders after it all complete ({line})", ok)
    ok, view = shop.settled()
    shop.check("every service is ready with lag 0: no stream stalled behind it", ok, str(view))


def attack_mirrors(shop):
    """Subscriptions that are prefixes of "$tap " from a client that is no tap."""
    taps_before = shop.metrics("orders").get("taps", 0)  # before the tap connects: it may attach at once
    tap = shop.socket(zmq.SUB, "orders", "events", "tap")
    tap.setsockopt(zmq.SUBSCRIBE, b"$tap ")
    shop.check("a real tap attaches to orders", poll_until(
        lambda: shop.metrics("orders").get("taps", 0) > taps_before, 10))
    refused_before = shop.metrics("orders").get("auth_refused", {}).get("tap", 0)
    sub = shop.socket(zmq.SUB, "orders", "events", "storefront")
    for topic in (b"", b"$t", b"OrderPlaced "):
        sub.setsockopt(zmq.SUBSCRIBE, topic)
    topics = []

    def wait_placed(order_id, seconds):
        """Reads the storefront's SUB until orders' OrderPlaced for order_id arrives."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not sub.poll(100):
                continue
            frames = sub.recv_multipart()
            topics.append(frames[0])
            if frames[0] == b"OrderPlaced " and len(frames) == 3 and unpack(frames[2]).get("order_id") == order_id:
                return True
        return False
    # Attached once one of cli's orders is seen (a SUB's subscription travels on its own).
    attached = False
    for i in range(20):
        shop.send("orders", "PlaceOrder", order(f"mirror-warm-{i}"))
        if wait_placed(f"mirror-warm-{i}", 0.5):
            attached = True
            break
    shop.check("the storefront's subscriptions are attached", attached)
    shop.ask("orders", "GetOrder", {"order_id": "mirror-warm-0"})
    shop.ask("orders", "ListOrders", {"limit": 5})
    shop.send("orders", "PlaceOrder", order("mirror-last"))
    # On one connection frames keep their order: what was mirrored before this event is in.
    seen_last = wait_placed("mirror-last", 5)
    mirrors = 0
    while tap.poll(200):
        mirrors += tap.recv_multipart()[0] == b"$tap "
    shop.check("meanwhile the real tap receives mirrors of cli's commands and queries", mirrors > 0 and seen_last,
               f"{mirrors} mirrors")
    stolen = sum(t.startswith(b"$tap") for t in topics)
    shop.check("the storefront, subscribed to \"\" and \"$t\", receives no $tap mirror",
               stolen == 0, f"{stolen} of {len(topics)} frames it received were mirrors")
    got = poll_until(lambda: shop.metrics("orders").get("auth_refused", {}).get("tap", 0) - refused_before >= 2, 5)
    shop.check("... both requests are counted in orders' auth_refused.tap", got,
               f"auth_refused.tap {refused_before} -> {shop.metrics('orders').get('auth_refused', {}).get('tap', 0)}")
    sub.close()
    tap.close()


def attack_forgery(shop):
    m = shop.metrics("orders")
    source_before = m.get("auth_refused", {}).get("source", 0)
    letters_before = m.get("dead_letters", 0)
    forged = []
    for seq in range(1, 51):
        forged.append(f"forged-payments-{seq}")
        shop.send("orders", "PlaceOrder", order(forged[-1]), identity="storefront", source="payments", sequence=seq)
    for i in range(1, 6):
        forged.append(f"forged-cli-{i}")
        shop.send("orders", "PlaceOrder", order(forged[-1]), identity="storefront", source="cli")
    shop.send("orders", "PlaceOrder", order("forgery-marker"), identity="storefront")
    # The honest command after them is handled after them: once it is, they were too.
    poll_until(lambda: shop.status("forgery-marker") is not None, 10)
    applied = [o for o in forged if shop.status(o) is not None]
    shop.check("no forged command is applied (source 'payments' sequenced 1..50, source 'cli')",
               not applied, f"{len(applied)} of {len(forged)} applied, e.g. {applied[:3]}")
    m = shop.metrics("orders")
    counted = m.get("auth_refused", {}).get("source", 0) - source_before
    shop.check("each is counted in orders' auth_refused.source", counted >= len(forged),
               f"grew by {counted}, {len(forged)} forged; dead_letters grew by {m.get('dead_letters', 0) - letters_before}")
    reasons = " | ".join(str(l.get("reason")) for l in shop.letters("orders")["letters"])
    for claimed in ("payments", "cli"):
        text = f"source '{claimed}' is not the sender's identity 'storefront'"
        shop.check(f"a dead letter says: {text}", text in reasons)


def attack_subscriptions(shop, count=60):
    pid = shop.pid("orders")
    base = rss_mib(pid)
    secret = z85.decode(shop.mesh.identities["storefront"][0])
    public = z85.decode(shop.mesh.identities["storefront"][1])
    server = z85.decode(shop.mesh.server_keys["orders"])
    ignored_before = shop.metrics("orders").get("subscriptions_ignored", 0)
    client = CurveClient(shop.mesh.services["orders"]["endpoints"]["events"], b"SUB", public, secret, server)
    sent, peak, note = 0, base, ""
    try:
        for i in range(count):
            client.send([b"\x01" + os.urandom(1_000_000)])
            sent += 1

            def taken():  # the node made something of it: counted, or (today) it grew
                client.pump()
                r = rss_mib(pid) or 0
                ignored = shop.metrics("orders").get("subscriptions_ignored", 0) - ignored_before
                return ignored >= i + 1 or r - base > 16 * (i + 1) or r - base >= 64
            poll_until(taken, 0.3, 0.02)
            peak = max(peak, rss_mib(pid) or 0)
            if peak - base >= 64:
                note = f", stopped after {sent} (RSS over the bound)"
                break
    except (ConnectionError, OSError) as e:
        note = f", the node hung up after {sent}: {e}"
    if not note:  # the last ones reach the node: counted, or (today) applied

        def last_taken():
            client.pump()
            return (shop.metrics("orders").get("subscriptions_ignored", 0) - ignored_before >= sent or
                    (rss_mib(pid) or 0) - base >= 64)
        poll_until(last_taken, 3, 0.05)
    peak = max(peak, rss_mib(pid) or 0)
    ignored = shop.metrics("orders").get("subscriptions_ignored", 0) - ignored_before
    shop.check(f"{sent} subscriptions of 1 MB: orders' RSS grew by less than 64 MiB",
               peak - base < 64, f"{base:.0f} -> {peak:.0f} MiB{note}")
    hung_up = "hung up" in note
    shop.check("... each refused: counted in subscriptions_ignored, or the peer dropped", ignored >= 1 or hung_up,
               f"grew by {ignored}{note}")
    client.close()
    after = poll_until(lambda: (lambda r: r if r is not None and r - base < 64 else None)(rss_mib(pid)), 3)
    shop.check("... and after the subscriber disconnects", after is not None,
               f"{base:.0f} -> {rss_mib(pid)} MiB after the disconnect")


def store_bytes(state, service):
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(state, service + ".db*")) if os.path.isfile(p))


def attack_multipart(shop, frames):
    pid = shop.pid("orders")
    base = rss_mib(pid)
    disk_before = store_bytes(shop.args.state_dir, "orders")
    letters_before = shop.metrics("orders").get("dead_letters", 0)
    push = shop.socket(zmq.PUSH, "orders", "commands", "storefront")
    env = pack_envelope(type="PlaceOrder", kind="command", source="storefront")
    filler = b"\x00" * 1_000_000
    started = time.monotonic()
    push.send_multipart([env, pack(order("multipart-1"))] + [filler] * (frames - 2))
    kept = poll_until(lambda: shop.metrics("orders").get("dead_letters", 0) > letters_before, 30, 0.1)
    took = time.monotonic() - started
    letter = None
    for l in shop.letters("orders")["letters"]:
        if re.search(rf"\b{frames}\b", str(l.get("reason"))):
            letter = l
    shop.check(f"a command of {frames} frames x 1,000,000 bytes is a dead letter whose reason names {frames} frames",
               kept and letter is not None, f"{took:.1f} s; reasons "
               f"{[str(l.get('reason'))[:100] for l in shop.letters('orders')['letters'][-3:]]}")
    size = None
    if letter is not None:
        size = letter.get("bytes", letter.get("size"))
        if size is None:
            t, shown = shop.ask("orders", "$deadletters", {"op": "show", "id": letter["id"], "max": 1}, timeout_ms=10000)
            if t == "$deadletters":
                size = sum(len(f) for f in shown.get("raw", []))
    limit = shop.mesh.max_message
    shop.check(f"... and what is kept of it is at most max_message_bytes ({limit})",
               size is not None and size <= limit + 4096, f"kept {size} bytes")
    grown = (store_bytes(shop.args.state_dir, "orders") - disk_before) / MIB
    shop.check("orders.db and its WAL did not grow by hundreds of MB", grown < 32, f"grew by {grown:.0f} MiB")
    back = poll_until(lambda: (lambda r: r is not None and r < base + 128)(rss_mib(pid)), 10, 0.2)
    shop.check("orders' RSS is back under its baseline + 128 MiB", back, f"{base:.0f} -> {rss_mib(pid)} MiB")
    push.close()


def attack_flood(shop, count=20000):
    cap = 1000
    before = shop.metrics("orders").get("dead_letters", 0)
    push = shop.socket(zmq.PUSH, "orders", "commands", "cli")
    push.setsockopt(zmq.SNDTIMEO, 20000)
    for i in range(count):
        push.send(b"flood %d" % i)  # one frame: refused before the envelope
    grew = poll_until(lambda: shop.metrics("orders").get("dead_letters", 0) - before >= count, 40, 0.2)
    m = shop.metrics("orders")
    shop.check(f"orders refused all {count} garbage commands", grew,
               f"dead_letters grew by {m.get('dead_letters', 0) - before}")
    kept = shop.letters("orders", 1)["count"]
    shop.check(f"... and keeps at most max_dead_letters ({cap}) of them", kept is not None and kept <= cap,
               f"{kept} kept")
    shop.check("... the oldest evicted, counted in dead_letters_evicted", m.get("dead_letters_evicted", 0) > 0,
               f"dead_letters_evicted {m.get('dead_letters_evicted')}")
    push.close()
    push = shop.socket(zmq.PUSH, "orders", "commands", "storefront")
    def limited():
        return shop.metrics("orders").get("rate_limited", {}).get("commands", 0)
    before = limited()
    for i in range(500):
        push.send_multipart([pack_envelope(type="PlaceOrder", kind="command", source="storefront"), b"\xc1"])
    grew = poll_until(lambda: limited() > before, 10, 0.1)
    shop.check("storefront's burst of 500 commands is rate limited (rate_limited.commands)", grew,
               f"rate_limited.commands {before} -> {limited()}")
    push.close()


def attack_rate(shop, rate=200, seconds=2):
    replies = {"ok": 0, "limited": 0, "other": 0, "sent": 0}
    before = shop.metrics("orders").get("rate_limited", {}).get("queries", 0)

    def flood():
        d = shop.socket(zmq.DEALER, "orders", "queries", "storefront")
        start = time.monotonic()
        deadline = start + seconds
        while time.monotonic() < deadline:
            if time.monotonic() >= start + replies["sent"] / rate:
                # One order a reply: cheap to answer even under the sanitizers, so the flood
                # outruns the 20 a second storefront may ask, not the node's speed.
                d.send_multipart([pack_envelope(type="ListOrders", kind="query", source="storefront"),
                                  pack({"limit": 1})])
                replies["sent"] += 1
            while d.poll(0):
                tally(d.recv_multipart())
            time.sleep(0.001)
        end = time.monotonic() + 15
        while sum(replies[k] for k in ("ok", "limited", "other")) < replies["sent"] and time.monotonic() < end:
            if d.poll(100):
                tally(d.recv_multipart())
        d.close()

    def tally(frames):
        t, p = unpack(frames[0]).get("type"), unpack(frames[1])
        if t == "$error" and "rate limit" in str(p.get("error")):
            replies["limited"] += 1
        elif t == "$error":
            replies["other"] += 1
        else:
            replies["ok"] += 1
    flooder = threading.Thread(target=flood)
    flooder.start()
    shop.send("orders", "PlaceOrder", order("rate-1"))
    started = time.monotonic()
    done = poll_until(lambda: shop.status("rate-1") in ("confirmed", "cancelled"), 8, 0.1)
    took = time.monotonic() - started
    flooder.join()
    shop.check(f"while storefront floods ListOrders, a cli order's saga completes ({took:.2f} s)", done,
               f"status {shop.status('rate-1')}")
    shop.check(f"some of its {replies['sent']} ListOrders are answered $error 'rate limit'",
               replies["limited"] > 0, str(replies))
    shop.check("... and some are answered", replies["ok"] > 0, str(replies))
    after = shop.metrics("orders").get("rate_limited", {}).get("queries", 0)
    shop.check("... counted in orders' rate_limited.queries", after > before, f"{before} -> {after}")


def attack_takeover(shop):
    """A second orders with its own state dir and the first one's ipc paths."""
    state = shop.args.state_dir
    work = shop.args.work
    with open(shop.args.topology) as f:
        text = f.read()
    text = text.replace("{state_dir}", state)
    text = re.sub(r'(?m)^state_dir = .*$', f'state_dir = "{work}/impostor"\nkeys_dir = "{state}/keys"', text)
    topology = os.path.join(work, "impostor.toml")
    with open(topology, "w") as f:
        f.write(text)
    os.makedirs(os.path.join(work, "impostor"), mode=0o700, exist_ok=True)
    log_path = os.path.join(state, "orders.log")
    offset = os.path.getsize(log_path)
    with open(os.path.join(work, "impostor.log"), "ab") as out:
        impostor = subprocess.Popen([os.path.join(shop.args.build, "services", "orders"), "--topology", topology],
                                    stdout=out, stderr=subprocess.STDOUT)
    endpoints = list(shop.mesh.services["orders"]["endpoints"].values())
    paths = [e[len("ipc://"):] for e in endpoints if e.startswith("ipc://")]

    def logged():
        with open(log_path, errors="replace") as f:
            f.seek(offset)
            lines = [l for l in f.read().splitlines() if re.search(r"\berror\b", l, re.I) and any(p in l for p in paths)]
        return lines
    squatter = None
    try:
        poll_until(lambda: logged() or impostor.poll() is not None, 10)
        if impostor.poll() is not None and not logged():
            with open(os.path.join(work, "impostor.log"), errors="replace") as f:
                said = f.read()[-300:]
            shop.check("a second orders on the same ipc paths refuses to start, naming the endpoint",
                       any(p in said for p in paths), said)
            # Then something else takes the path: libzmq's bind replaces the file.
            squatter = shop.ctx.socket(zmq.ROUTER)
            squatter.setsockopt(zmq.LINGER, 0)
            squatter.bind(shop.mesh.services["orders"]["endpoints"]["queries"])
            poll_until(logged, 10)
        lines = logged()
        shop.check("the real orders logs an ERROR naming the endpoint taken over", bool(lines),
                   "no such line in orders.log")
        if lines:
            print(f"    {lines[0][:200]}")
    finally:
        if squatter is not None:
            squatter.close()  # libzmq removes the file it bound
        if impostor.poll() is None:
            impostor.send_signal(signal.SIGTERM)
        try:
            impostor.wait(15)
        except subprocess.TimeoutExpired:
            impostor.kill()
            impostor.wait()
    # A new connection reaches whatever is bound at the path now.
    for s in list(shop.dealers):
        if s[0] == "orders":
            shop.dealers.pop(s).close()

    def answers():
        q = shop.socket(zmq.DEALER, "orders", "queries", "cli")
        q.send_multipart([pack_envelope(type="GetOrder", kind="query", source="cli"), pack({"order_id": "rate-1"})])
        ok = q.poll(300)
        q.close()
        return ok
    started = time.monotonic()
    ok = poll_until(answers, 5, 0.1)
    shop.check("once the impostor stops, the real orders answers GetOrder again within a few heartbeats",
               ok, f"no answer in {time.monotonic() - started:.1f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--topology", required=True)
    ap.add_argument("--work", required=True, help="a scratch directory for the impostor")
    ap.add_argument("--frames", type=int, default=200, help="frames of the huge multipart command")
    ap.add_argument("--only", help="comma-separated attacks to run (default: all)")
    args = ap.parse_args()
    checks = Checks()
    shop = Shop(args, checks)
    pids = shop.mesh.pids()
    if not checks.check("the mesh is up", all(pids.values()), str(pids)):
        return 1
    attacks = [("modes", attack_modes), ("door", attack_door), ("poison", attack_poison), ("longkey", attack_longkey),
               ("mirrors", attack_mirrors), ("forgery", attack_forgery),
               ("subs", attack_subscriptions), ("multipart", lambda s: attack_multipart(s, args.frames)),
               ("flood", attack_flood), ("ratelimit", attack_rate), ("takeover", attack_takeover)]
    only = set(args.only.split(",")) if args.only else None
    started = time.monotonic()
    for name, attack in attacks:
        if only and name not in only:
            continue
        t = time.monotonic()
        print(f"--- {name}", flush=True)
        try:
            attack(shop)
        except Exception as e:  # noqa: BLE001 - an attack that breaks the harness is a failure, the rest still run
            checks.check(f"{name}: the attack ran to its end", False, f"{type(e).__name__}: {e}")
        print(f"    ({time.monotonic() - t:.1f} s)", flush=True)
    print("--- final", flush=True)
    ok, line = shop.load(100, seed=29, wait=15)
    checks.check(f"100 orders after all the attacks complete ({line})", ok)
    ok, view = shop.settled()
    checks.check("every service is ready with lag 0 at the end", ok, str(view))
    after = shop.mesh.pids()
    checks.check("no service died or restarted", after == pids and all(
        p and os.path.exists(f"/proc/{p}") for p in after.values()), f"before {pids}, after {after}")
    shop.close()
    print(f"attack: {checks.failures} failure(s) in {time.monotonic() - started:.1f} s")
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())
