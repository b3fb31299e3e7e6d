#!/usr/bin/python3
"""troupe-gateway against a live shop (real processes, real sockets, real HTTP).

Every route and every error status; idempotent retries (one order for two POSTs);
?wait; SSE with filters, resumed from Last-Event-ID through the outbox, a slow client
that the gateway drops for (and counts) without slowing the mesh; /metrics checked by
promtool; the OpenAPI document served is the committed one and valid; the token and
bind rules; SIGTERM. Then (unless --no-browser) the dashboard in headless Chromium
under `troupe shop load`: five services drawn, rates non-zero, a saga stuck on a stopped
payments is shown with where it waits, and goes once payments resumes.

Usage: gateway_test.py SOURCE_ROOT BUILD_ROOT [--no-browser] [--sanitized] [--screenshot PNG]
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

src, build = sys.argv[1], sys.argv[2]
sanitized = "--sanitized" in sys.argv  # an ASan build: no browser part, no memory bound
browser = "--no-browser" not in sys.argv and not sanitized
shot = sys.argv[sys.argv.index("--screenshot") + 1] if "--screenshot" in sys.argv else None
os.chdir(src)
env = dict(os.environ, TROUPE_BUILD_DIR=build)
state = tempfile.mkdtemp(prefix="troupe-gateway-")
mesh = ["scripts/mesh", "--state-dir", state]
troupe = [os.path.join(build, "troupe")]
gateway_exe = os.path.join(build, "troupe-gateway")
procs = []
failures = 0
run_id = str(int(time.time() * 1000) % 10**9)


def check(what, ok, detail=""):
    global failures
    print(("ok: " if ok else "FAIL: ") + what + ("" if ok or not detail else f" ({detail})"), flush=True)
    if not ok:
        failures += 1


def until(cond, seconds, step=0.05):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return cond()


def start_gateway(*args):
    p = subprocess.Popen([gateway_exe, "--state-dir", state, *args], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=env)
    procs.append(p)
    # Log lines of threads started before the listener (a tap that cannot watch, say) may
    # come first; what it said before "listening on" is its error when it did not start.
    said = ""
    for line in p.stdout:
        if "listening on http://" in line:
            p.first_line = said
            return p, line.split("http://", 1)[1].split("/", 1)[0]
        said += line
    p.first_line = said
    return p, None


def request(base, method, path, body=None, headers=None):
    """(status, parsed JSON or text, headers) for one request."""
    data = body if isinstance(body, (bytes, type(None))) else (body if isinstance(body, str) else json.dumps(body)).encode()
    req = urllib.request.Request("http://" + base + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=40) as r:
            status, raw, hdrs = r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        status, raw, hdrs = e.code, e.read(), e.headers
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text), hdrs
    except ValueError:
        return status, text, hdrs


def is_error(body, where_prefix=None):
    """Every error body is JSON with what and where."""
    return (isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]
            and isinstance(body.get("where"), str) and (where_prefix is None or body["where"].startswith(where_prefix)))


class Sse:
    """A Server-Sent Events reader on a raw socket (HTTP/1.1, chunked): what a client
    sees, with a receive buffer of our choosing and reads that can time out and go on."""

    def __init__(self, base, path, headers=None, rcvbuf=None):
        host, port = base.rsplit(":", 1)
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect((host, int(port)))
        head = f"GET {path} HTTP/1.1\r\nHost: {base}\r\nAccept: text/event-stream\r\n"
        for k, v in (headers or {}).items():
            head += f"{k}: {v}\r\n"
        self.sock.sendall((head + "\r\n").encode())
        self.raw = b""     # bytes received, not yet de-chunked
        self.text = b""    # the stream's bytes, de-chunked
        self.headers = {}
        while b"\r\n\r\n" not in self.raw:
            self._recv(10)
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.chunked = self.headers.get("transfer-encoding") == "chunked"

    def _recv(self, seconds):
        self.sock.settimeout(max(0.01, seconds))
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.raw += data

    def _dechunk(self):
        if not self.chunked:
            self.text += self.raw
            self.raw = b""
            return
        while b"\r\n" in self.raw:
            size_line, rest = self.raw.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            if len(rest) < size + 2:
                return
            self.text += rest[:size]
            self.raw = rest[size + 2:]
            if size == 0:
                raise EOFError

    def next(self, seconds):
        """The next SSE message as (event, id, data), or None after `seconds` or at the end."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                self._dechunk()
            except EOFError:
                return None
            while b"\n\n" in self.text:
                block, self.text = self.text.split(b"\n\n", 1)
                event, ident, data = "message", None, []
                for line in block.decode().split("\n"):
                    if line.startswith(":"):
                        continue
                    key, _, value = line.partition(": ")
                    if key == "event":
                        event = value
                    elif key == "id":
                        ident = value
                    elif key == "data":
                        data.append(value)
                if data:
                    return event, ident, json.loads("\n".join(data))
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                self._recv(left)
            except (socket.timeout, TimeoutError):
                return None
            except (EOFError, OSError):
                return None

    def close(self):
        self.sock.close()


def saga_ended(base_order):
    """True once the order has its outcome event (OrderConfirmed or OrderCancelled)."""
    return saga_base and (lambda r: r[0] == 200 and r[1].get("outcome") is not None)(
        request(saga_base[0], "GET", f"/v1/sagas/{base_order}"))


saga_base = []


def place(base, order, key=None, wait=None, **fields):
    body = {"order_id": order, "customer": "alice", "sku": "KB-101", "quantity": 1, **fields}
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    return request(base, "POST", "/v1/commands/orders/PlaceOrder" + (f"?wait={wait}" if wait else ""), body, headers)


hit = set()  # the OpenAPI paths this test requested


def main():
    subprocess.run(mesh + ["up"], check=True, env=env, stdout=subprocess.DEVNULL)
    gw, base = start_gateway("--listen", "127.0.0.1:0", "--timeout", "1500", "--stuck-after", "2000",
                             "--max-body", "65536", "--sse-queue", "50")
    check("the gateway listens on a free port and says where", base is not None)
    saga_base.append(base)
    if not base:
        return

    # Health.
    s, b, _ = request(base, "GET", "/healthz")
    hit.add("/healthz")
    check("/healthz answers 200 ok", s == 200 and b == {"status": "ok"}, b)
    ready = until(lambda: request(base, "GET", "/readyz")[0] == 200, 15)
    hit.add("/readyz")
    check("/readyz answers 200 once every service answers $health", ready)

    # Commands: idempotent retry, wait, refusals.
    order = "gw-" + run_id + "-1"
    key = "key-" + run_id
    s1, b1, _ = place(base, order, key=key)
    s2, b2, _ = place(base, order, key=key)
    hit.add("/v1/commands/{service}/{type}")
    check("a command answers 202 with its id once taken", s1 == 202 and b1.get("id") == key, (s1, b1))
    check("the same Idempotency-Key again answers 202 with the same id", s2 == 202 and b2.get("id") == key, (s2, b2))
    s, saga, _ = request(base, "GET", f"/v1/sagas/{order}")
    hit.add("/v1/sagas/{correlation}")
    placed = [e for e in saga.get("events", []) if e["type"] == "OrderPlaced"] if s == 200 else []
    check("two POSTs with one Idempotency-Key placed one order", len(placed) == 1 and placed[0]["causationid"] == key,
          (s, len(placed)))
    sagas_ok = until(lambda: (lambda r: r[0] == 200 and r[1].get("outcome") and not r[1]["waiting"])(
        request(base, "GET", f"/v1/sagas/{order}")), 10)
    check("/v1/sagas/{correlation} gives the saga's events, no wait and its outcome once it ends", bool(sagas_ok),
          sagas_ok)
    s, b, _ = request(base, "GET", "/v1/sagas/no-such-saga-" + run_id)
    check("/v1/sagas of an unknown correlation answers 404", s == 404 and is_error(b, "path"), b)

    order2 = "gw-" + run_id + "-2"
    s, ev, _ = place(base, order2, key=key + "-w", wait="5s")
    check("?wait=5s answers 200 with the event the command caused (CloudEvents JSON)",
          s == 200 and ev.get("type") == "OrderPlaced" and ev.get("causationid") == key + "-w"
          and ev.get("specversion") == "1.0" and ev["data"].get("order_id") == order2, (s, ev))
    s, ev2, _ = place(base, order2, key=key + "-w", wait="5s")
    check("a retry with ?wait answers the same event", s == 200 and ev2.get("id") == ev.get("id"), (s, ev2))
    s, b, _ = request(base, "POST", "/v1/commands/orders/PlaceOrder", {"order_id": "gw-" + run_id + "-3"})
    check("a command the service refuses answers 422 with its reason",
          s == 422 and is_error(b) and "missing field 'customer'" in b["error"], (s, b))
    json_type = {"Content-Type": "application/json"}
    for what, path, body, headers, status, where in [
        ("an unknown service", "/v1/commands/nosuch/PlaceOrder", {}, {}, 404, "path: service"),
        ("a type the service does not accept", "/v1/commands/orders/Nope", {}, {}, 404, "path: type"),
        ("a body that is not JSON", "/v1/commands/orders/PlaceOrder", "{nope", {}, 400, "body"),
        ("a body that is not an object", "/v1/commands/orders/PlaceOrder", [1, 2], {}, 400, "body"),
        ("an Idempotency-Key with a space", "/v1/commands/orders/PlaceOrder", {}, {"Idempotency-Key": "a b"}, 400,
         "header: Idempotency-Key"),
        ("a bad ?wait", "/v1/commands/orders/PlaceOrder?wait=soon", {}, {}, 400, "query: wait"),
        ("an Idempotency-Key of 129 bytes", "/v1/commands/orders/PlaceOrder", {}, {"Idempotency-Key": "k" * 129}, 400,
         "header: Idempotency-Key"),
        ("a URL of 9,000 bytes (cpp-httplib's limit is 8 KiB)", "/v1/queries/orders/GetOrder?order_id=" + "x" * 9000,
         None, {}, 414, "request"),
        ("an unknown route", "/v1/nothing", None, {}, 404, "path"),
        ("a body nested 5,000 deep", "/v1/commands/orders/PlaceOrder", '{"a":' + "[" * 5000 + "]" * 5000 + "}", json_type,
         400, "body"),
        ("a query body nested 5,000 deep", "/v1/queries/orders/GetOrder", '{"a":' + "[" * 5000 + "]" * 5000 + "}",
         json_type, 400, "body"),
        ("a form-encoded body over 8 KiB (cpp-httplib's limit for forms)", "/v1/commands/orders/PlaceOrder",
         '{"a":"' + "x" * 9000 + '"}', {}, 413, "header: Content-Type"),
    ]:
        s, b, _ = request(base, "POST" if body is not None else "GET", path, body, headers)
        check(f"{what} answers {status} naming {where}", s == status and is_error(b, where), (s, b))
    s, b, _ = request(base, "GET", "/v1/mesh", headers={"Host": "evil.example:8080"})
    check("without a token, a Host other than this address answers 403 (no DNS rebinding)",
          s == 403 and is_error(b, "header: Host"), (s, b))
    s, b, _ = request(base, "POST", "/v1/commands/orders/PlaceOrder", {"order_id": "x"},
                      {"Origin": "http://evil.example", "Content-Type": "text/plain"})
    check("a request from another origin answers 403 (a web page cannot send commands)",
          s == 403 and is_error(b, "header: Origin"), (s, b))
    s, b, _ = request(base, "POST", "/v1/commands/orders/PlaceOrder", b"x" * 70000, {"Content-Type": "application/json"})
    check("a body over --max-body answers 413 JSON", s == 413 and is_error(b, "body"), (s, b))

    # Queries.
    s, b, _ = request(base, "GET", f"/v1/queries/orders/GetOrder?order_id={order}")
    hit.add("/v1/queries/{service}/{type}")
    check("GET a query answers the reply as JSON", s == 200 and b.get("order_id") == order, (s, b))
    s, b, _ = request(base, "POST", "/v1/queries/inventory/GetStock", {"sku": "KB-101"})
    check("POST a query answers the reply as JSON", s == 200 and "items" in b, (s, str(b)[:200]))
    s, b, _ = request(base, "POST", "/v1/queries/orders/GetOrder", {"order_id": 5})
    check("a request that does not fit the schema answers 400 with the codec's text",
          s == 400 and is_error(b) and "order_id" in b["error"], (s, b))
    s, b, _ = request(base, "GET", "/v1/queries/orders/Nope")
    check("an unknown query answers 404", s == 404 and is_error(b, "path: type"), (s, b))
    s, b, _ = request(base, "GET", "/v1/queries/nosuch/GetOrder")
    check("a query to an unknown service answers 404", s == 404 and is_error(b, "path: service"), (s, b))
    s, b, _ = request(base, "GET", "/v1/queries/orders/$health")
    check("a built-in query ($health) answers 200", s == 200 and b.get("service") == "orders", (s, b))
    s, b, _ = request(base, "GET", "/v1/queries/orders/$deadletters")
    check("other built-ins ($deadletters) are not routed (404)", s == 404, (s, b))
    pid = int(open(os.path.join(state, "notifications.pid")).read())
    os.kill(pid, signal.SIGSTOP)
    try:
        s, b, _ = request(base, "GET", "/v1/queries/notifications/ListNotifications")
        check("a query to a service that does not answer answers 503", s == 503 and is_error(b), (s, b))
        not_ready = until(lambda: request(base, "GET", "/readyz")[0] == 503, 10)
        check("/readyz answers 503 while a service does not answer", not_ready)
    finally:
        os.kill(pid, signal.SIGCONT)

    # The mesh's picture.
    s, p, _ = request(base, "GET", "/v1/mesh")
    hit.add("/v1/mesh")
    check("/v1/mesh draws five services and the topology's edges",
          s == 200 and len(p["services"]) == 5 and any(e["from"] == "orders" and e["to"] == "inventory" for e in p["edges"]),
          (s, str(p)[:200]))

    # Metrics, scrapeable.
    s, text, hdrs = request(base, "GET", "/metrics")
    hit.add("/metrics")
    check("/metrics answers the Prometheus text format",
          s == 200 and hdrs.get("Content-Type", "").startswith("text/plain; version=0.0.4")
          and 'troupe_up{service="orders"} 1' in text and "troupe_gateway_requests_total{" in text, (s, text[:200]))
    if shutil.which("promtool"):
        r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        check("promtool check metrics finds nothing wrong", r.returncode == 0, r.stdout + r.stderr)
    else:
        print("skip: promtool is not installed (scripts/bootstrap installs prometheus)")

    # The OpenAPI description is the committed one, and valid.
    s, served, _ = request(base, "GET", "/v1/openapi.json")
    hit.add("/v1/openapi.json")
    committed = json.load(open("docs/gateway.openapi.json"))
    check("/v1/openapi.json serves docs/gateway.openapi.json", s == 200 and served == committed)
    if shutil.which("node"):
        r = subprocess.run(["node", "tools/asyncapi/validate.cjs", "--strict", "--openapi", "docs/gateway.openapi.json"],
                           capture_output=True, text=True)
        check("the OpenAPI document is valid OpenAPI 3.1 (Spectral's oas rules)", r.returncode == 0,
              r.stdout[-400:] + r.stderr[-400:])
    s, page, hdrs = request(base, "GET", "/")
    hit.add("/")
    check("/ serves the dashboard page with a Content-Security-Policy",
          s == 200 and "<svg" in page and "default-src 'self'" in hdrs.get("Content-Security-Policy", ""))

    # SSE: filters, then a resume from Last-Event-ID through the outbox.
    stream = Sse(base, "/v1/events?service=orders&type=OrderPlaced")
    hit.add("/v1/events")
    check("/v1/events answers 200 text/event-stream",
          stream.status == 200 and stream.headers.get("content-type", "").startswith("text/event-stream"))
    time.sleep(0)  # the stream subscribes before its first read returns; orders below may still race it
    first = "gw-" + run_id + "-sse0"
    msg = None

    def seen_first():
        nonlocal msg
        place(base, first + str(time.monotonic_ns()), wait="2s")
        m = stream.next(2)
        while m and m[0] != "message":
            m = stream.next(2)
        msg = m
        return m is not None

    until(seen_first, 15, step=0)
    check("the stream delivers a live OrderPlaced", msg is not None and msg[2]["type"] == "OrderPlaced", msg)
    last_id = msg[1] if msg else ""
    check("an event's SSE id is its position per publisher", last_id.startswith("orders="), last_id)
    stream.close()
    missed = [f"gw-{run_id}-missed{i}" for i in range(3)]
    for o in missed:
        place(base, o, wait="5s")
    resumed = Sse(base, "/v1/events?service=orders&type=OrderPlaced", headers={"Last-Event-ID": last_id})
    got, got_types, resumed_id = [], [], last_id
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(o in got for o in missed):
        m = resumed.next(1)
        if m and m[0] == "message":
            got.append(m[2]["data"]["order_id"])
            got_types.append(m[2]["type"])
            resumed_id = m[1]
    resumed.close()
    check("a reconnect with Last-Event-ID gets what it missed, once and in order",
          [g for g in got if g in missed] == missed, got)
    check("...not the event its id named again", msg is None or msg[2]["data"]["order_id"] not in got, got)
    check("...and only what its filter names", all(t == "OrderPlaced" for t in got_types), got_types)
    # A resume whose replay has nothing to send — inventory far past its head, orders with
    # only events the filter leaves out since — must stay open and go live, not end.
    until(lambda: saga_ended(missed[-1]), 10)
    quiet = Sse(base, "/v1/events?type=OrderPlaced",
                headers={"Last-Event-ID": f"inventory=999999999,{resumed_id}"})
    # Quiet for a while first (two new pictures of the mesh: over a second), so that the
    # stream's first turn ends with nothing to say.
    times = []
    until(lambda: times.append(request(base, "GET", "/v1/mesh")[1].get("time")) or len(set(times)) >= 3, 10, 0.1)
    live_order = f"gw-{run_id}-after-quiet"
    place(base, live_order, wait="5s")
    seen_live = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and seen_live != live_order:
        m = quiet.next(1)
        if m and m[0] == "message":
            seen_live = m[2]["data"].get("order_id")
    quiet.close()
    check("a resume naming a publisher with nothing new stays open and goes live", seen_live == live_order,
          seen_live)

    # A slow client: the gateway drops for it, counts, tells it; the mesh does not wait.
    # The client stops reading (a 4 KiB receive buffer) while orders flow, until the
    # gateway counts drops for it, then reads on: it must be told how many it missed.
    slow = Sse(base, "/v1/events", rcvbuf=4096)
    load = subprocess.Popen(troupe + ["shop", "load", "--state-dir", state, "--orders", "1500", "--rate", "0", "--quiet",
                                      "--seed", "7"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    procs.append(load)

    def dropped_total():
        lines = [l for l in request(base, "GET", "/metrics")[1].splitlines()
                 if l.startswith("troupe_gateway_sse_dropped_total ")]
        return int(lines[0].split()[1]) if lines else 0

    dropped = until(lambda: dropped_total() > 0, 120, 0.1)
    check("the gateway counts what it dropped for the slow client", dropped)
    told = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        m = slow.next(5)
        if m is None:
            break
        if m[0] == "dropped":
            told = m[2].get("dropped", 0) > 0
            break
    check("the slow client is told how many records it missed (event: dropped)", told)
    slow.close()
    out = load.communicate(timeout=600)[0]
    check("the mesh completes orders while an SSE client does not read", "0 stuck" in out, out[-300:])
    if not sanitized:
        rss = int([l for l in open(f"/proc/{gw.pid}/status") if l.startswith("VmRSS:")][0].split()[1])
        check("the gateway's memory stays bounded (RSS under 200 MB)", rss < 200 * 1024, f"{rss} kB")

    # Bind and token rules, stream limit.
    p, where = start_gateway("--listen", "0.0.0.0:0")
    out = p.first_line + p.communicate(timeout=10)[0] if where is None else ""
    check("binding beyond loopback without --token refuses to start (exit 2)", where is None and p.returncode == 2,
          out)
    p, where = start_gateway("--listen", "127.0.0.1:0", "--threads", "8", "--sse-clients", "8")
    out = p.first_line + p.communicate(timeout=10)[0] if where is None else ""
    check("threads too few for the streams and waits refuse to start (exit 2)",
          where is None and p.returncode == 2 and "too few" in out, out)
    p, where = start_gateway("--listen", base)
    out = p.first_line + p.communicate(timeout=10)[0] if where is None else ""
    check("a second gateway on the same address refuses to start (exit 1), the first serving on",
          where is None and p.returncode == 1 and "cannot listen" in out and request(base, "GET", "/healthz")[0] == 200,
          out)
    # A deleted key file: the tap cannot watch, and the gateway says so instead of
    # serving empty streams as if all were well.
    key = os.path.join(state, "keys", "dashboard.key")
    os.rename(key, key + ".away")
    try:
        kp, kbase = start_gateway("--listen", "127.0.0.1:0")
        said = until(lambda: (lambda r: r[0] == 503 and "dashboard.key" in r[1].get("error", ""))(
            request(kbase, "GET", "/readyz")), 10) if kbase else False
        # The picture is remade every period; the one made before the tap failed may not say it yet.
        picture = until(lambda: (lambda p: p if "dashboard.key" in str(p.get("tap", {}).get("error")) else None)(
            request(kbase, "GET", "/v1/mesh")[1]), 10) if kbase else None
        check("with its tap's key file deleted, /readyz answers 503 naming the file, and the picture says it",
              bool(said) and picture is not None, f"readyz: {request(kbase, 'GET', '/readyz')[1]}" if kbase else f"not started: {kp.first_line}")
        kp.send_signal(signal.SIGTERM)
        kp.wait(timeout=10)
    finally:
        os.rename(key + ".away", key)
    p, where = start_gateway("--listen", "127.0.0.1:0", "--identity", "nobody")
    out = p.first_line + p.communicate(timeout=10)[0] if where is None else ""
    check("an identity the topology lacks refuses to start (exit 2), naming it",
          where is None and p.returncode == 2 and "[clients.nobody]" in out, out)
    p, where = start_gateway("--listen", "127.0.0.1:0", "--tap-identity", "storefront")
    out = p.first_line + p.communicate(timeout=10)[0] if where is None else ""
    check("a tap identity that is a client refuses to start (exit 2)",
          where is None and p.returncode == 2 and "[taps.storefront]" in out, out)
    tp, tbase = start_gateway("--listen", "127.0.0.1:0", "--token", "s3cret", "--sse-clients", "1", "--threads", "8")
    s, b, hdrs = request(tbase, "GET", "/v1/mesh")
    check("with --token a request without it answers 401 JSON",
          s == 401 and is_error(b, "header: Authorization") and hdrs.get("WWW-Authenticate") == "Bearer", (s, b))
    s, b, _ = request(tbase, "GET", "/v1/mesh", headers={"Authorization": "Bearer wrong!"})
    check("...and a wrong token answers 401", s == 401, s)
    s, b, _ = request(tbase, "GET", "/v1/mesh", headers={"Authorization": "Bearer s3cret"})
    check("...and the token answers 200", s == 200, s)
    s, b, _ = request(tbase, "GET", "/healthz")
    check("...and /healthz needs no token", s == 200, s)
    # ?wait holds a worker: at most a quarter of them (2 of 8 here) wait; a CancelOrder of an
    # order that already ended is applied and causes nothing, so its wait runs out (504).
    import threading
    auth = {"Authorization": "Bearer s3cret", "Content-Type": "application/json"}
    ended = []

    def cancel_and_wait():
        ended.append(request(tbase, "POST", "/v1/commands/orders/CancelOrder?wait=4s",
                             {"order_id": order, "reason": "late"}, auth))

    waiters = [threading.Thread(target=cancel_and_wait) for _ in range(2)]
    for w in waiters:
        w.start()
    gauge = lambda: [l for l in request(tbase, "GET", "/metrics", headers=auth)[1].splitlines()
                     if l.startswith("troupe_gateway_waiting ")]
    two = until(lambda: gauge() == ["troupe_gateway_waiting 2"], 10)
    s, b, _ = request(tbase, "POST", "/v1/commands/orders/CancelOrder?wait=4s", {"order_id": order}, auth)
    check("with a quarter of the workers waiting, another ?wait answers 503 at once",
          two and s == 503 and is_error(b, "query: wait"), (two, s, b))
    for w in waiters:
        w.join()
    check("a command that causes no event within ?wait answers 504 with its id",
          [r[0] for r in ended] == [504, 504] and all(r[1].get("id") and is_error(r[1]) for r in ended),
          [(r[0], r[1]) for r in ended])
    one = Sse(tbase, "/v1/events?access_token=s3cret")
    two = Sse(tbase, "/v1/events?access_token=s3cret")
    check("past --sse-clients streams a new one answers 503", one.status == 200 and two.status == 503,
          (one.status, two.status))
    one.close()
    two.close()
    tp.send_signal(signal.SIGTERM)
    try:
        rest = tp.communicate(timeout=10)[0]
        check("SIGTERM stops the gateway cleanly (exit 0)", tp.returncode == 0 and "stopped" in rest, rest)
    except subprocess.TimeoutExpired:
        check("SIGTERM stops the gateway cleanly (exit 0)", False, "still running after 10 s")

    documented = set(committed["paths"])
    check("every route of the OpenAPI document was requested by this test", documented <= hit, documented - hit)

    if browser:
        dashboard(base)
    gw.send_signal(signal.SIGTERM)
    gw.wait(timeout=10)


def dashboard(base):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    load = subprocess.Popen(troupe + ["shop", "load", "--state-dir", state, "--orders", "200000", "--rate", "60", "--quiet",
                                      "--seed", "11", "--timeout", "600000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    procs.append(load)
    o = Options()
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1440,1000", "--disable-dev-shm-usage",
              "--user-data-dir=" + os.path.join(state, "chromium")]:
        o.add_argument(a)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=o)
    payments = int(open(os.path.join(state, "payments.pid")).read())
    # The page redraws every second: read it in one script each time, never by element.
    def page(selector, what="e.textContent"):
        return driver.execute_script(
            f"return [...document.querySelectorAll(arguments[0])].map((e) => {what});", selector)

    try:
        driver.get("http://" + base + "/")
        drawn = until(lambda: len(page("#svc-rows tr.svc")) == 5 and len(page("#svg g.node")) == 6, 20, 0.2)
        check("the dashboard draws the five services (table and graph, with the clients)", drawn,
              page("#svg g.node", "e.dataset.name"))
        names = sorted(page("#svc-rows tr.svc", "e.dataset.name"))
        check("...named as in the topology", names == ["inventory", "notifications", "orders", "payments", "shipping"],
              names)
        live = until(lambda: [e for e, r in page("#svg text.rate", "[e.dataset.edge, e.dataset.rate]")
                              if float(r or 0) > 0], 20, 0.2)
        check("rates on the edges become non-zero under load", "orders->inventory" in (live or []), live)
        check("the tap pane shows live messages", bool(until(lambda: page("#lines .line"), 10, 0.2)))
        os.kill(payments, signal.SIGSTOP)
        stuck = until(lambda: [t for t in page("#stuck li.saga", "e.innerText")
                               if "payments has not reacted to StockReserved" in t], 30, 0.3)
        check("a saga stuck on a stopped payments appears, saying where it waits", bool(stuck), page("#stuck")[:1])
        if stuck:
            print("   " + stuck[0].replace("\n", " | ")[:200])
        if shot:
            driver.save_screenshot(shot)
        os.kill(payments, signal.SIGCONT)
        gone = until(lambda: not [t for t in page("#stuck li.saga") if "payments has not reacted" in t], 40, 0.5)
        check("...and disappears once payments resumes", gone, page("#stuck")[:1])
        driver.find_element(By.ID, "f-type").send_keys("OrderConfirmed\n")
        only = until(lambda: (lambda ls: len(ls) >= 3 and all("OrderConfirmed" in l for l in ls))(
            page("#lines .line")), 20, 0.3)
        check("the tap pane's type filter shows only that type", only)
    finally:
        os.kill(payments, signal.SIGCONT)
        driver.quit()
        load.terminate()


try:
    main()
except Exception as e:  # a failure of the test itself is a failure, with its reason
    import traceback
    traceback.print_exc()
    failures += 1
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
    subprocess.run(mesh + ["down"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(state, ignore_errors=True)
print(f"gateway: {failures} failure(s)")
sys.exit(1 if failures else 0)
