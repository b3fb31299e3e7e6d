#!/usr/bin/python3
"""Layering check: dependencies point inward (DESIGN.md §2). A header or source of a
layer may include only the standard library, its own layer and the layers inside it;
domain, ports and core include no third-party header at all: the delivery core
(common/core) compiles without ZeroMQ, a store or a logger, and reads no clock."""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1])
common = root / "common"
# layer -> troupe layers it may include
allowed = {
    "domain": {"domain"},
    "ports": {"domain", "ports"},
    "adapters": {"domain", "ports", "adapters"},
    "core": {"core"},
    "runtime": {"domain", "ports", "adapters", "core", "runtime"},
}
# third-party headers: only adapters and runtime may name them
third_party = re.compile(r"^(zmq|msgpack|sqlite3|toml\+\+|spdlog|fmt|CLI|nlohmann|catch2)")
include = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]')

problems = []
for path in sorted(common.rglob("*")):
    if path.suffix not in {".hpp", ".cpp", ".h"}:
        continue
    layer = path.relative_to(common).parts[0]
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        m = include.match(line)
        if not m:
            continue
        target = m.group(1)
        where = f"{path.relative_to(root)}:{lineno}"
        if target.startswith("troupe/"):
            target_layer = target.split("/")[1]
            if target_layer not in allowed[layer]:
                problems.append(f"{where}: {layer} includes <{target}>, which points outward")
        elif third_party.match(target) and layer in {"domain", "ports", "core"}:
            problems.append(f"{where}: {layer} includes third-party <{target}>")
        elif target.startswith("../") or "/adapters/" in target:
            problems.append(f"{where}: relative include '{target}' bypasses the layers")

# The transport is adapters/zmq's and the runtime's (which owns the sockets): no other
# layer or adapter names ZeroMQ. Which store a node gets is decided in one file of the
# runtime (compose.cpp), the only one that names a store adapter.
zmq_header = re.compile(r'^\s*#\s*include\s*[<"](zmq\.h|zmq\.hpp|zmq_addon\.hpp)[>"]')
store_adapter = re.compile(r'^\s*#\s*include\s*[<"]troupe/adapters/(sqlite|memory|toml)/')
for path in sorted(common.rglob("*")):
    if path.suffix not in {".hpp", ".cpp", ".h"}:
        continue
    rel = path.relative_to(common)
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        where = f"{path.relative_to(root)}:{lineno}"
        if zmq_header.match(line) and rel.parts[0] != "runtime" and rel.parts[:2] != ("adapters", "zmq"):
            problems.append(f"{where}: only adapters/zmq and the runtime include ZeroMQ")
        if store_adapter.match(line) and rel.parts[0] == "runtime" and path.name != "compose.cpp":
            problems.append(f"{where}: the runtime names a store adapter outside compose.cpp")

# The core takes the time as a parameter: it never asks a clock.
clock = re.compile(r"\b(steady_clock|system_clock|high_resolution_clock)::now\b|\btime\(|\brand\(|random_device")
for path in sorted((common / "core").rglob("*")):
    if path.suffix in {".hpp", ".cpp"}:
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if clock.search(line.split("//")[0]):
                problems.append(f"{path.relative_to(root)}:{lineno}: the core reads a clock or a random source")

for p in problems:
    print(p)
print("layering:", "ok" if not problems else f"{len(problems)} problem(s)")
sys.exit(1 if problems else 0)
