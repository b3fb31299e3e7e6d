#!/usr/bin/python3
"""Cross-language codec check: Debian's python3-msgpack reads what the C++ codec
writes, and the C++ codec reads what Python writes from docs/protocol.md alone."""
import subprocess
import sys

import msgpack

probe = sys.argv[1]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


# 1. C++ -> Python
env_hex, payload_hex = subprocess.run([probe, "example"], check=True, capture_output=True,
                                      text=True).stdout.split()
env = msgpack.unpackb(bytes.fromhex(env_hex), raw=False)
payload = msgpack.unpackb(bytes.fromhex(payload_hex), raw=False)
check(env["specversion"] == "1.0", "specversion")
check(env["source"] == "orders" and env["type"] == "OrderPlaced", "source/type")
check(env["kind"] == "event", "kind")
check(env["sequence"] == 42 and isinstance(env["sequence"], int), "sequence is an integer")
check(env["correlationid"] == "order-1", "correlationid")
check(env["datacontenttype"] == "application/msgpack", "datacontenttype")
check(payload == {"order_id": "order-1", "sku": "SKU-1", "quantity": 2}, "payload")

# 2. Python -> C++, written from the protocol's description (key order differs on purpose,
#    and an unknown extension key must be ignored).
py_env = {
    "type": "OrderPlaced", "kind": "event", "id": "0193c8f2-0000-7000-8000-00000000beef",
    "source": "python-peer", "specversion": "1.0", "time": "2026-11-27T18:00:01.000000Z",
    "datacontenttype": "application/msgpack", "sequence": 7, "correlationid": "order-9",
    "schemaversion": 1, "x-python-extension": [1, 2, 3],
}
py_payload = {"quantity": 5, "sku": "SKU-9", "order_id": "order-9"}
out = subprocess.run([probe, "decode", msgpack.packb(py_env).hex(), msgpack.packb(py_payload).hex()],
                     capture_output=True, text=True)
check(out.returncode == 0, "C++ decodes a Python envelope: " + out.stderr.strip())
fields = dict(line.split("=", 1) for line in out.stdout.splitlines())
check(fields.get("source") == "python-peer", "source from python")
check(fields.get("sequence") == "7", "sequence from python")
check(fields.get("quantity") == "5" and fields.get("sku") == "SKU-9", "payload from python")

# 3. Python sends a wrong type: C++ rejects it with the field named.
bad_payload = dict(py_payload, quantity="five")
out = subprocess.run([probe, "decode", msgpack.packb(py_env).hex(), msgpack.packb(bad_payload).hex()],
                     capture_output=True, text=True)
check(out.returncode == 2, "wrong type is rejected")
check("field 'quantity': expected integer, got string" in out.stderr, "rejection names the field: " + out.stderr)

print("polyglot codec:", "ok" if not failures else f"{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
