#!/usr/bin/python3
"""A troupe tap in Python, written from docs/protocol.md alone, with Debian's
python3-zmq and python3-msgpack: subscribes to every service of a topology and prints
each event it sees, one line each (or one CloudEvents JSON document per line).

    examples/python/tap.py [--topology topology/shop.toml] [--state-dir DIR]
                           [--identity tap] [--limit N] [--seconds S] [--json]
    examples/python/tap.py --check-routing docs/protocol.md

Under security = "curve" it presents the key pair of a [taps.NAME] identity from the
mesh's keys directory (NAME.key, NAME.pub) and checks each service's public key.
"""
import argparse
import json
import re
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


def fnv1a64(data: bytes) -> int:
    """docs/protocol.md §7.10: 64-bit FNV-1a of the key's bytes."""
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) % (1 << 64)
    return h


def partition_of(key: bytes, partitions: int) -> int:
    return fnv1a64(key) % partitions if partitions > 1 else 0


def instance_endpoint(endpoint, service, k):
    """Instance k's endpoint of a partitioned service (docs/protocol.md §7.10)."""
    if "{partition}" in endpoint:
        return endpoint.replace("{partition}", str(k))
    if endpoint.startswith("tcp://"):
        host, _, port = endpoint.rpartition(":")
        return f"{host}:{int(port) + 100 * k}" if port.isdigit() else endpoint
    scheme = endpoint.find("://")
    at = endpoint.rfind(service)
    if at > scheme >= 0:
        return endpoint[: at + len(service)] + f".{k}" + endpoint[at + len(service):]
    return f"{endpoint}.{k}"


def check_routing(doc_path):
    """Checks the routing test vectors of docs/protocol.md §7.10 against this code."""
    with open(doc_path, encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("### 7.10"):]
    section = section[: section.index("\n## ")]
    rows = re.findall(r"^\| (?:`([^`]*)`[^|]*|\(empty\) )\| `([0-9a-f]{16})` \| (\d) \| (\d) \| (\d) \|$",
                      section, re.M)
    bad = 0
    for key, digest, m2, m3, m4 in rows:
        k = key.encode()
        got = (format(fnv1a64(k), "016x"), partition_of(k, 2), partition_of(k, 3), partition_of(k, 4))
        if got != (digest, int(m2), int(m3), int(m4)):
            print(f"routing: key {key!r}: expected {digest} {m2} {m3} {m4}, computed {got}")
            bad += 1
    print(f"routing: {len(rows)} vectors, {bad} wrong")
    return 1 if bad or not rows else 0


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
        n = svc.get("partitions", 1)
        # A partitioned service is N instances, NAME.K, each its own publisher and key pair.
        for k, inst in enumerate([f"{name}.{k}" for k in range(n)] if n > 1 else [name]):
            server_key = None
            if curve:
                server_key = svc.get("public_key", "").encode() or read_key(f"{keys}/{inst}.pub")
            if isinstance(ep, list):  # listed per instance
                at = ep[k].replace("{state_dir}", state)
            else:
                at = ep.replace("{state_dir}", state)
                at = instance_endpoint(at, name, k) if n > 1 else at
            out[inst] = (at, svc.get("publishes", []), server_key)
    return out, (keys if curve else None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--topology", default="topology/shop.toml")
    ap.add_argument("--state-dir", default=None)
    ap.add_argument("--limit", type=int, default=0, help="stop after N events")
    ap.add_argument("--seconds", type=float, default=0, help="stop after S seconds")
    ap.add_argument("--json", action="store_true", help="CloudEvents JSON, one per line")
    ap.add_argument("--identity", default="tap", help="the [taps.NAME] whose keys to present (curve)")
    ap.add_argument("--check-routing", metavar="PROTOCOL_MD",
                    help="check the routing test vectors of docs/protocol.md §7.10 and exit")
    args = ap.parse_args()
    if args.check_routing:
        return check_routing(args.check_routing)

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
