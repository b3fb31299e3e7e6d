"""The one main() of a Python service, with the C++ services' options and exit codes:
0 clean stop (SIGTERM/SIGINT), 1 broken environment (address in use, store unwritable,
already running), 2 bad topology or keys, 64 bad arguments."""
import argparse
import json
import sqlite3
import sys

from .store import AlreadyRunning
from .topology import TopologyError


def service_main(name, summary, build, default_topology="topology/shop.toml", argv=None):
    """`build(topology_path, state_dir)` returns the service's Node, its handlers installed."""
    ap = argparse.ArgumentParser(prog=name, description=f"{name}: {summary} (troupe's Python peer)")
    ap.add_argument("--topology", default=default_topology, help="the mesh's topology file")
    ap.add_argument("--state-dir", default=None, help="instead of the topology's [mesh] state_dir")
    ap.add_argument("--contract", action="store_true", help="print the contract $schema answers and exit")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return 0 if e.code == 0 else 64
    try:
        node = build(args.topology, args.state_dir)
    except TopologyError as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 2
    if args.contract:
        print(json.dumps(node.contract(), indent=2))
        return 0
    try:
        return node.run()
    except TopologyError as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 2
    except (AlreadyRunning, sqlite3.Error, OSError) as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 1
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            return 1
        raise
