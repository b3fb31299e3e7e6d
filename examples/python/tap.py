#!/usr/bin/python3
"""A troupe tap in Python, written from docs/protocol.md alone, with Debian's
python3-zmq and python3-msgpack: subscribes to every service of a topology and prints
each event it sees, one line each (or one CloudEvents JSON document per line).

    examples/python/tap.py [--topology topology/shop.toml] [--state-dir DIR]
                           [--identity tap] [--limit N] [--seconds S] [--json]

Under security = "curve" it presents the key pair of a [taps.NAME] identity from the
mesh's keys directory (NAME.key, NAME.pub) and checks each service's public key.
"""
import argparse
import json
import sys
import time
import tomllib

import msgpack
import zmq


def read_key(path):
    """A key file: the first line that is not empty and not a # comment (Z85)."""
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                return line.encode()
    raise SystemExit(f"tap.py: {path} holds no key")


def load(topology_path, state_dir):
    with open(topology_path, "rb") as f:
        topo = tomllib.load(f)
    mesh = topo["mesh"]
    state = state_dir or mesh.get("state_dir", "var")
    keys = mesh.get("keys_dir", "{state_dir}/keys").replace("{state_dir}", state)
    curve = mesh.get("security", "none") == "curve"
    out = {}
    for name, svc in topo["services"].items():
        # A service running in one process with others (inproc) exposes endpoints for us.
        ep = svc.get("expose", {}).get("events") or svc["events"]
        server_key = None
        if curve:
            server_key = svc.get("public_key", "").encode() or read_key(f"{keys}/{name}.pub")
        out[name] = (ep.replace("{state_dir}", state), svc.get("publishes", []), server_key)
    return out, (keys if curve else None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--topology", default="topology/shop.toml")
    ap.add_argument("--state-dir", default=None)
    ap.add_argument("--limit", type=int, default=0, help="stop after N events")
    ap.add_argument("--seconds", type=float, default=0, help="stop after S seconds")
    ap.add_argument("--json", action="store_true", help="CloudEvents JSON, one per line")
    ap.add_argument("--identity", default="tap", help="the [taps.NAME] whose keys to present (curve)")
    args = ap.parse_args()

    services, keys_dir = load(args.topology, args.state_dir)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    if keys_dir:
        secret = read_key(f"{keys_dir}/{args.identity}.key")
        sub.curve_secretkey = secret
        sub.curve_publickey = zmq.curve_public(secret)
    for name, (ep, types, server_key) in services.items():
        for t in types:
            sub.setsockopt(zmq.SUBSCRIBE, (t + " ").encode())  # topic = type + one space
        if server_key:
            sub.curve_serverkey = server_key  # per connection: set before each connect
        sub.connect(ep)

    seen = 0
    deadline = time.monotonic() + args.seconds if args.seconds else None
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    while not args.limit or seen < args.limit:
        if deadline and time.monotonic() > deadline:
            break
        if not poller.poll(100):
            continue
        frames = sub.recv_multipart()
        if len(frames) != 3:
            print(f"skipped a message of {len(frames)} frames", file=sys.stderr)
            continue
        topic, env_bytes, payload_bytes = frames
        try:
            env = msgpack.unpackb(env_bytes, raw=False)
            data = msgpack.unpackb(payload_bytes, raw=False)
        except Exception as e:  # noqa: BLE001 - a tap shows what it cannot read and goes on
            print(f"undecodable message on {topic!r}: {e}", file=sys.stderr)
            continue
        seen += 1
        if args.json:
            doc = {k: env[k] for k in ("specversion", "id", "source", "type", "time", "kind",
                                       "sequence", "correlationid", "causationid") if k in env}
            doc["datacontenttype"] = "application/json"
            doc["data"] = data
            print(json.dumps(doc), flush=True)
        else:
            fields = " ".join(f"{k}={v}" for k, v in data.items() if k != "order_id")
            print(f"{env.get('source', '?'):<14} {env['type']:<18} #{env.get('sequence', 0):<5} "
                  f"{env.get('correlationid', ''):<16} {fields}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
