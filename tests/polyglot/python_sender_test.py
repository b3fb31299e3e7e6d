#!/usr/bin/python3
"""Sequenced commands across languages: a Python service (`relay`, on python/troupe)
sends commands to a C++ node (the conformance peer, tests/conformance/peer.cpp), which
is SIGKILLed and restarted while they flow. Every command is applied exactly once, in
order (the Python outbox resends until the C++ heartbeats acknowledge; the C++ inbox
drops what it applied). Real processes, sockets and SQLite files.

    python_sender_test.py SOURCE_ROOT BUILD_ROOT        (or as `relay`: --serve ...)
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "tests", "conformance"))

import troupe  # noqa: E402
from troupe import message, string  # noqa: E402

Forward = message("Forward", text=string)
Note = message("Note", text=string)

TOPOLOGY = """[mesh]
name = "sender"
state_dir = "{state}"
heartbeat_ms = 100
[services.source]
events = "ipc://{{state_dir}}/source.events"
commands = "ipc://{{state_dir}}/source.commands"
queries = "ipc://{{state_dir}}/source.queries"
publishes = ["Ping"]
[services.peer]
events = "ipc://{{state_dir}}/peer.events"
commands = "ipc://{{state_dir}}/peer.commands"
queries = "ipc://{{state_dir}}/peer.queries"
publishes = ["Pong"]
accepts = ["Note"]
answers = ["GetState"]
reacts_to = {{ source = ["Ping"] }}
[services.relay]
events = "ipc://{{state_dir}}/relay.events"
commands = "ipc://{{state_dir}}/relay.commands"
queries = "ipc://{{state_dir}}/relay.queries"
accepts = ["Forward"]
sends = {{ peer = ["Note"] }}
[clients.driver]
commands = ["*"]
queries = ["*"]
events = ["*"]
"""


def serve():
    def build(topology, state_dir):
        node = troupe.Node(topology, "relay", state_dir)
        node.sends("peer", Note)

        @node.on_command(Forward)
        def forward(f, ctx):
            ctx.send("peer", Note, {"text": f["text"]})
        return node
    return troupe.service_main("relay", "forwards each Forward as a Note to peer", build, argv=sys.argv[2:])


def main():
    import conformance as C  # the suite's raw-socket helpers: envelopes, packing
    import zmq
    build = sys.argv[2]
    state = tempfile.mkdtemp(prefix="troupe-sender-")
    topo = os.path.join(state, "t.toml")
    with open(topo, "w") as f:
        f.write(TOPOLOGY.format(state=state))
    args = ["--topology", topo, "--state-dir", state]
    peer_cmd = [os.path.join(build, "tests", "conformance", "conformance_peer")] + args
    relay_cmd = ["/usr/bin/python3", os.path.realpath(__file__), "--serve"] + args
    log = open(os.path.join(state, "log"), "ab")
    start = lambda cmd: subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    ctx = zmq.Context()
    failures = []

    def check(ok, what):
        print(("ok: " if ok else "FAIL: ") + what)
        if not ok:
            failures.append(what)

    def ask(service, type_, payload, timeout=1000):
        d = ctx.socket(zmq.DEALER)
        d.linger = 0
        d.connect(f"ipc://{state}/{service}.queries")
        d.send_multipart([C.pack(C.envelope(type_, "query", "driver")), C.pack(payload)])
        reply = C.unpack(d.recv_multipart()[1]) if d.poll(timeout) else None
        d.close()
        return reply

    def notes():
        r = ask("peer", "GetState", {})
        return r["notes"] if r else None

    def until(cond, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.05)
        return False

    peer, relay = start(peer_cmd), start(relay_cmd)
    try:
        push = ctx.socket(zmq.PUSH)
        push.connect(f"ipc://{state}/relay.commands")
        sent = [f"n{i:03d}" for i in range(200)]
        check(until(lambda: notes() is not None and ask("relay", "$health", {}) is not None, 10), "both peers answer")
        for i, text in enumerate(sent):
            env = C.envelope("Forward", "command", "driver")
            push.send_multipart([C.pack(env), C.pack({"text": text})])
            if i == 80:  # the receiver stops: what is sent meanwhile waits in its socket buffer
                until(lambda: len(notes() or []) >= 40, 10)
                os.killpg(peer.pid, signal.SIGSTOP)
            if i == 140:  # ... and dies with it unread: only the sender's outbox still has those
                # (once the relay has applied this Forward, its Note went out after the commit)
                until(lambda: (ask("relay", "$seen", {"ids": [env["id"]]}) or {}).get("seen") == [True], 10)
                os.killpg(peer.pid, signal.SIGKILL)
                peer.wait()
                peer = start(peer_cmd)
        check(until(lambda: notes() == sent, 30),
              "200 commands from the Python relay are applied by the C++ peer once each, in order, across its SIGKILL")
        got = notes() or []
        if got != sent:
            print(f"  notes: {len(got)}, first wrong at {next((i for i, (a, b) in enumerate(zip(got, sent)) if a != b), len(got))}")
        m = ask("relay", "$metrics", {})
        check(m is not None and m["commands_resent"] > 0, f"the relay resent what was not acknowledged "
                                                           f"(commands_resent {m and m['commands_resent']})")
        relay.send_signal(signal.SIGTERM)
        check(relay.wait(10) == 0, "the relay stops on SIGTERM with exit 0")
    finally:
        for p in (peer, relay):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        if failures:
            print(open(os.path.join(state, "log"), errors="replace").read()[-3000:])
        shutil.rmtree(state, ignore_errors=True)
    print(f"python sender: {len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(serve() if sys.argv[1:2] == ["--serve"] else main())
