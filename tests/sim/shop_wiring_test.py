#!/usr/bin/env python3
"""The simulator's shop is the shop of topology/shop.toml: every service of the
topology is simulated, reacts to the same publishers, and its own install() registers
handlers for exactly the event types it reacts to and the commands it accepts (a node
refuses to start otherwise; the simulator's Handlers accepts anything, so it is
checked here)."""
import subprocess
import sys
import tomllib

sim, topology = sys.argv[1], sys.argv[2]
with open(topology, "rb") as f:
    services = tomllib.load(f)["services"]
want = {}
for name, spec in services.items():
    reacts = spec.get("reacts_to", {})
    want[name] = (sorted(reacts.keys()), sorted({t for types in reacts.values() for t in types}),
                  sorted(spec.get("accepts", [])))
out = subprocess.run([sim, "--shop-wiring"], check=True, capture_output=True, text=True).stdout
got = {}
for line in out.splitlines():
    name, _, rest = line.partition(":")
    pubs, reacts, accepts = (part.strip() for part in rest.split("|"))
    got[name] = (sorted(pubs.split()), sorted(reacts.removeprefix("reacts:").split()),
                 sorted(accepts.removeprefix("accepts:").split()))
if got != want:
    for name in sorted(set(got) | set(want)):
        if got.get(name) != want.get(name):
            print(f"FAIL: {name}: the simulator has (publishers, reactions, accepts) = {got.get(name)}, "
                  f"{topology} says {want.get(name)}")
    sys.exit(1)
print(f"the simulator's shop follows {topology}: {len(got)} services")
