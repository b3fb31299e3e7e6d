#!/usr/bin/python3
"""Layering check: dependencies point inward (DESIGN.md §2). A header or source of a
layer may include only the standard library, its own layer and the layers inside it;
domain, ports and core include no third-party header at all: the delivery core
(common/core) compiles without ZeroMQ, a store or a logger, and reads no clock.

Beyond common/: a service's domain code (its messages.hpp, NAME.hpp, NAME.cpp and what
they include) names no transport, codec, store or logger; the tools (tools/) include
nothing of services/; and, given the build directory, the `troupe` executable links
nothing built from services/.

Usage: layering_test.py SOURCE_ROOT [BUILD_DIR]"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1]).resolve()
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

# A service's domain code: its messages, its pure rules, and whatever they include.
domain_third_party = re.compile(r"^(zmq|msgpack|sqlite3|toml\+\+|spdlog|fmt|CLI|nlohmann|httplib|hiredis|catch2)")
quoted = re.compile(r'^\s*#\s*include\s*"([^"]+)"')
services = root / "services"
pending = []
for svc in sorted(p for p in services.iterdir() if p.is_dir()):
    for name in ("messages.hpp", f"{svc.name}.hpp", f"{svc.name}.cpp"):
        if (svc / name).is_file():
            pending.append(svc / name)
seen = set()
while pending:
    path = pending.pop()
    if path in seen:
        continue
    seen.add(path)
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        m = include.match(line)
        if not m:
            continue
        target, where = m.group(1), f"{path.relative_to(root)}:{lineno}"
        if domain_third_party.match(target):
            problems.append(f"{where}: a service's domain code includes third-party <{target}>")
        elif target.startswith("troupe/") and not target.startswith("troupe/domain/"):
            problems.append(f"{where}: a service's domain code includes <{target}>, beyond troupe/domain")
        q = quoted.match(line)
        if q:
            resolved = (path.parent / q.group(1)).resolve()
            if resolved.is_file():
                pending.append(resolved)
if len(seen) < 10:
    problems.append(f"services/: only {len(seen)} domain files found; the check would pass on nothing")

# The tools are for any mesh: nothing of services/ is included by them.
templates = root / "tools" / "troupe" / "templates"  # a new project's files, not the tools'
for path in sorted((root / "tools").rglob("*")):
    if path.suffix not in {".hpp", ".cpp", ".h"} or templates in path.parents:
        continue
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        m = include.match(line)
        if not m:
            continue
        target = m.group(1)
        resolved = (path.parent / target).resolve()
        if "services/" in target or services.resolve() in resolved.parents:
            problems.append(f"{path.relative_to(root)}:{lineno}: a tool includes '{target}' from services/")

# What the build links into `troupe`: no object or library built from services/.
if len(sys.argv) > 2:
    ninja = pathlib.Path(sys.argv[2]) / "build.ninja"
    edge = None
    lines = ninja.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("build troupe:"):
            edge = line
            while i + 1 < len(lines) and (edge.endswith("$") or lines[i + 1].startswith(" ")):
                i += 1  # ninja's line continuation, and the edge's variables (LINK_ARGS)
                edge = (edge[:-1] if edge.endswith("$") else edge + " ") + lines[i]
            break
    if edge is None:
        problems.append(f"{ninja}: no link edge for the troupe executable")
    else:
        inputs = edge.split(":", 1)[1].split()[1:]
        if not any(i.startswith("troupe.p/") for i in inputs):
            problems.append(f"{ninja}: the troupe link edge names none of its own objects; the check would pass on nothing")
        for i in inputs:
            if i.startswith("services/") or "shop" in i:
                problems.append(f"{ninja}: troupe links {i}, which is the shop's")

for p in problems:
    print(p)
print("layering:", "ok" if not problems else f"{len(problems)} problem(s)")
sys.exit(1 if problems else 0)
