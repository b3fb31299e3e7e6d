#!/usr/bin/python3
"""bench_quick: `scripts/bench --smoke --out TMP` (the --quick run's scenarios with the
smallest counts) runs every scenario for every system it
claims to compare and reports each one: rows, systems, the machine, the plots. It never
looks at how fast anything was. Leaves bench/results.json and docs/ untouched. And
bench/peer_bench.py fails a peer that applies duplicates (the Python peer broken on
purpose, as the conformance suite breaks it).

  bench_quick_test.py SOURCE_ROOT BUILD_ROOT
"""
import json
import os
import subprocess
import sys
import tempfile

SYSTEMS = ["troupe-memory", "troupe-durable", "raw-libzmq", "mosquitto-qos0", "mosquitto-qos1", "redis-streams"]
EXPECTED = set()
for scenario in ("events-1to1-100B", "events-1to1-1KiB", "fanout-1to3-100B"):
    EXPECTED |= {(scenario, s, m) for s in SYSTEMS for m in ("throughput", "lost")}
for scenario in ("command-rtt", "query-rtt"):
    # Redis Streams has no request/reply: no query row.
    EXPECTED |= {(scenario, s, m) for s in SYSTEMS for m in ("p50", "p99", "samples", "lost")
                 if not (scenario == "query-rtt" and s == "redis-streams")}
# Redis Streams is the durable anchor: it counts what it delivers twice too.
EXPECTED |= {(scenario, "redis-streams", "duplicated")
             for scenario in ("events-1to1-100B", "events-1to1-1KiB", "fanout-1to3-100B")}
# Where the shop saga's time goes at 1,000/s: its first hop, median and tail, and the
# split of orders' time (queueing, handling, commit, relay), for each shop the docs show.
# (The first hop's far end is whichever event the load driver saw first: OrderPlaced, or
# over inproc now and then an event of a later hop that overtook it on the way.)
HOP_SYSTEMS = ("troupe-memory", "troupe-durable", "edge-memory", "edge-durable")
HOP_PREFIXES = ["1 %s: PlaceOrder sent -> " % w for w in ("median", "tail")]
EXPECTED |= {("shop-split", "troupe-durable", "orders %s mean" % part)
             for part in ("queue", "handling", "commit", "relay")}
# What the disk allows the durable 1→1 run: its commits, events per commit.
EXPECTED |= {("events-1to1-100B", "troupe-durable", m) for m in ("commits", "events-per-commit")}
# ... and with commit = "pipelined": its rate and loss, and what its fsyncs covered.
EXPECTED |= {("events-1to1-100B", "troupe-durable-pipelined", m)
             for m in ("throughput", "lost", "commits", "fsyncs", "events-per-fsync")}
for system in ("troupe-memory", "troupe-durable", "edge-memory", "edge-durable"):
    EXPECTED |= {("shop-sustained", system, "throughput"), ("shop-1000/s", system, "p50"),
                 ("shop-1000/s", system, "p99"), ("shop-1000/s", system, "stuck")}
EXPECTED |= {("footprint", "troupe-durable", m) for m in (
    "size-one-service", "size-shop-edge", "rss-one-service", "rss-shop-edge", "pss-one-service", "pss-shop-edge",
    "uss-one-service", "uss-shop-edge", "ready-5-processes", "ready-shop-edge")}
EXPECTED |= {("footprint", "mosquitto-broker", m) for m in ("size", "rss", "pss", "uss", "ready")}
EXPECTED |= {("events-1to1-100B-curve", s, m) for s in ("troupe-memory", "troupe-durable") for m in ("throughput", "lost")}
# One peer process applying a durable stream (bench/peer_bench.py): the C++ node and the Python peer.
EXPECTED |= {("peer-apply-durable", s, m) for s in ("troupe-durable", "python-peer")
             for m in ("throughput", "lost", "duplicated")}

# Commands through the HTTP gateway and from troupe::Client (bench/gateway_bench.sh).
EXPECTED |= {("gateway-commands", s, m) for s in ("troupe-durable", "gateway") for m in ("throughput", "p99")}

# The shop partitioned (orders ×3, inventory ×2) beside the unpartitioned one, with CPU per process.
EXPECTED |= {("shop-sustained", "partitioned", "throughput"), ("shop-1000/s", "partitioned", "p99"),
             ("shop-1000/s", "partitioned", "stuck"), ("shop-cpu", "partitioned", "busiest"),
             ("shop-cpu", "troupe-durable", "busiest")}

# The same two shops with every process on a host of its own (network namespaces, tcp):
# expected unless this machine cannot make namespaces, which the run must then say.
HOSTS = {(s, system, m) for system in ("hosts", "hosts-partitioned")
         for s, m in (("shop-sustained", "throughput"), ("shop-1000/s", "p99"), ("shop-1000/s", "stuck"),
                      ("shop-cpu", "busiest"))}

TABLE_ROWS = ["events 1→1, 100 B", "events 1→1, 1 KiB", "fan-out 1→3, 100 B", "command round trip p50",
              "command round trip p99", "query round trip p50", "query round trip p99", "shop saga, sustained",
              "shop saga at 1,000 orders/s, p99", "idle RSS", "exec → ready", "with CURVE", "cost of CURVE",
              "peer applies a durable stream, C++ node", "peer applies a durable stream, Python peer",
              "Python peer / C++ node", "through the HTTP gateway", "HTTP gateway / troupe::Client",
              "orders ×3 + inventory ×2", "partitioned / unpartitioned", "busiest process's CPU",
              "shop-edge saga at 1,000 orders/s, p99", "events per commit", "what the disk allows", "idle PSS",
              "idle USS", "commit = \"pipelined\"", "pipelined: events per fsync"]
TABLE_HEADERS = ["troupe memory", "troupe durable", "raw libzmq", "Mosquitto QoS 0", "Mosquitto QoS 1",
                 "Redis Streams, fsync always", "memory / raw", "durable / QoS 1", "durable / Redis"]

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("FAILED: " + what)


def main():
    src, build = sys.argv[1], sys.argv[2]
    bench = os.path.join(src, "scripts", "bench")

    r = subprocess.run([bench, "--help"], stdout=subprocess.PIPE, text=True)
    check(r.returncode == 0 and "--quick" in r.stdout and "--out" in r.stdout, "--help exits 0 and names the options")
    r = subprocess.run([bench, "--no-such-option"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    check(r.returncode == 2, "a usage error exits 2 (got %d)" % r.returncode)

    # A peer that applies an event again is a failure of the bench, not a figure.
    with tempfile.TemporaryDirectory(prefix="troupe-bench-test-") as out:
        records = os.path.join(out, "broken.json")
        r = subprocess.run(["/usr/bin/python3", os.path.join(src, "bench", "peer_bench.py"), "--count", "300",
                            "--system", "python-peer", "--json", records, "--",
                            "/usr/bin/python3", os.path.join(src, "tests", "conformance", "peer.py")],
                           env=dict(os.environ, TROUPE_PEER_BREAK="duplicates"), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        dup = [x["value"] for x in (json.load(open(records)) if os.path.exists(records) else [])
               if x["metric"] == "duplicated"]
        check(r.returncode == 1 and dup and dup[0] > 0,
              "peer_bench.py exits 1 and records the duplicates of a peer that applies them again (exit %d, "
              "duplicated %s): %s" % (r.returncode, dup, r.stderr.strip()[-300:]))

    real = [os.path.join(src, "bench", "results.json"), os.path.join(src, "docs", "performance.md")]
    before = {p: open(p, "rb").read() if os.path.exists(p) else None for p in real}
    with tempfile.TemporaryDirectory(prefix="troupe-bench-test-") as out:
        r = subprocess.run([bench, "--smoke", "--build", build, "--out", out], stdout=subprocess.PIPE, text=True)
        print(r.stdout)
        check(r.returncode == 0, "scripts/bench --smoke exits 0 (got %d)" % r.returncode)

        path = os.path.join(out, "results.json")
        check(os.path.exists(path), "results.json is written into --out")
        if os.path.exists(path):
            data = json.load(open(path))
            machine = data.get("machine", {})
            for key in ("cpu", "cores", "kernel", "date"):
                check(key in machine, "the machine object has '%s'" % key)
            have = set()
            for x in data.get("results", []):
                check(set(x) == {"scenario", "system", "metric", "value", "unit"}, "record fields: %s" % x)
                check(isinstance(x.get("value"), (int, float)), "a numeric value: %s" % x)
                have.add((x.get("scenario"), x.get("system"), x.get("metric")))
            skipped = machine.get("skipped")
            check(isinstance(skipped, list), "the machine object lists what was skipped")
            hosts_skipped = [s for s in skipped or [] if s.startswith("shop hosts")]
            check(not hosts_skipped or "no network namespaces" in hosts_skipped[0],
                  "hosts are skipped only for want of network namespaces: %s" % hosts_skipped)
            if hosts_skipped:
                print("hosts rows skipped here: " + "; ".join(hosts_skipped))
            for missing in sorted((EXPECTED | (set() if hosts_skipped else HOSTS)) - have):
                check(False, "results.json has %s / %s / %s" % missing)
            for system in HOP_SYSTEMS:
                for prefix in HOP_PREFIXES:
                    check(any(sc == "shop-hops" and sy == system and m.startswith(prefix) for sc, sy, m in have),
                          "results.json has shop-hops / %s / %s…" % (system, prefix))

        for row in TABLE_ROWS + TABLE_HEADERS + ["5 hosts over tcp", "on 8 hosts over tcp",
                                                  "partitioned / unpartitioned shop on hosts"]:
            check(row in r.stdout, "the printed table has '%s'" % row)

        doc = os.path.join(out, "performance.md")
        text = open(doc).read() if os.path.exists(doc) else ""
        check("<!-- bench:begin -->" in text and "generated by scripts/bench" in text,
              "performance.md in --out has the regenerated block")
        check("| durable ≥ 2 × Redis Streams" in text, "the targets are stated with their verdicts")
        check("Where the saga's time goes at 1,000 orders/s" in text and "| process | queueing" in text,
              "performance.md has the saga's hops and each process's split")
        for png in ("bench-command-rtt.png", "bench-query-rtt.png"):
            p = os.path.join(out, png)
            check(os.path.exists(p) and open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n", png + " is a PNG in --out")

    for p in real:
        check((open(p, "rb").read() if os.path.exists(p) else None) == before[p], p + " is left alone with --out")

    print("%d check(s) failed" % len(failures) if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
