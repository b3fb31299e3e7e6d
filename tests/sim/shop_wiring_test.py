#!/usr/bin/env python3
"""The simulator's shop is wired as topology/shop.toml says: each service reacts to
the same publishers, and every service of the topology is simulated."""
import subprocess
import sys
import tomllib

sim, topology = sys.argv[1], sys.argv[2]
with open(topology, "rb") as f:
    services = tomllib.load(f)["services"]
want = {name: sorted(spec.get("reacts_to", {}).keys()) for name, spec in services.items()}
out = subprocess.run([sim, "--shop-wiring"], check=True, capture_output=True, text=True).stdout
got = {}
for line in out.splitlines():
    name, _, pubs = line.partition(":")
    got[name] = sorted(pubs.split())
if got != want:
    print(f"FAIL: tests/sim/shop.cpp wires the shop as {got}, {topology} says {want}")
    sys.exit(1)
print(f"the simulator's shop follows {topology}: {len(got)} services")
