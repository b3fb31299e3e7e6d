#!/usr/bin/python3
"""The conformance peer on troupe's Python peer library: service `peer` of the topology
tests/conformance/conformance.py writes (the C++ one is peer.cpp, with the same behaviour).

  reacts to: source/Ping   -> records n, emits Pong {n, text}
  accepts:   Note          -> records text; refuses the text "refuse"
  answers:   GetState      -> {pings, notes}, in the order applied

TROUPE_PEER_BREAK=duplicates makes the library apply duplicates again: a deliberately
broken peer, which the suite must catch (§7.1).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "python"))

import troupe  # noqa: E402
from troupe import message, string, uint64, vector  # noqa: E402

Ping = message("Ping", n=uint64, text=string)
Pong = message("Pong", n=uint64, text=string)
Note = message("Note", text=string)
GetState = message("GetState")
State = message("State", pings=vector(uint64), notes=vector(string))


def append(ctx, table, value):
    count = ctx.load("counts", table) or 0
    ctx.save(table, f"{count:012d}", value)
    ctx.save("counts", table, count + 1)


def build(topology, state_dir):
    node = troupe.Node(topology, "peer", state_dir)
    node.publishes(Pong)

    @node.on(Ping)
    def ping(p, ctx):
        append(ctx, "pings", p["n"])
        ctx.emit(Pong, {"n": p["n"], "text": p["text"]})

    @node.on_command(Note)
    def note(n, ctx):
        append(ctx, "notes", n["text"])  # first: the refusal must roll it back
        if n["text"] == "refuse":
            raise troupe.Refused("the peer refuses a Note 'refuse'")

    @node.on_query(GetState, State)
    def get_state(_, ctx):
        return {"pings": ctx.scan("pings", "", 1_000_000), "notes": ctx.scan("notes", "", 1_000_000)}

    return node


if __name__ == "__main__":
    sys.exit(troupe.service_main("peer", "the conformance peer", build, default_topology=""))
