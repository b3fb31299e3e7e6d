"""What a Python peer counts, in the shape of `$metrics` (docs/protocol.md §7.5): every
field of the C++ node's MetricsReply, so `troupe metrics` reads it like any other."""
import bisect

BOUNDS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000,
          200_000, 500_000, 1_000_000, 2_000_000, 5_000_000]
COUNTERS = ["replays_requested", "replays_served", "gaps_seen", "gaps_repaired", "duplicates", "dead_letters",
            "rejected_frames", "commands_resent", "commands_out_of_order", "store_failures", "events_lost",
            "oversized_refused", "oversized_received", "connections_renewed", "tasks_failed",
            "subscriptions_ignored", "dead_letters_evicted", "published", "subscriptions", "taps", "mirrored"]


class Histogram:
    def __init__(self):
        self.counts = [0] * (len(BOUNDS) + 1)
        self.count = self.sum = self.max = 0

    def add(self, v):
        v = int(v)
        self.count += 1
        self.sum += v
        if v > self.max:
            self.max = v
        self.counts[bisect.bisect_left(BOUNDS, v)] += 1  # the first bound >= v; past the last: +Inf

    def _quantile(self, q):
        if not self.count:
            return 0
        want, seen = q * self.count, 0
        for i, n in enumerate(self.counts):
            seen += n
            if seen >= want:
                return BOUNDS[i] if i < len(BOUNDS) else self.max
        return self.max

    def reply(self):
        buckets = [[b, n] for b, n in zip(BOUNDS, self.counts)] + [["+Inf", self.counts[-1]]]
        return {"count": self.count, "sum": self.sum, "max": self.max, "p50": self._quantile(0.5),
                "p99": self._quantile(0.99), "buckets": buckets}


class TypeMetrics:
    def __init__(self):
        self.received = self.handled = self.rejected = self.published = 0
        self.latency_us = Histogram()

    def reply(self):
        return {"received": self.received, "handled": self.handled, "rejected": self.rejected,
                "published": self.published, "latency_us": self.latency_us.reply()}


class Metrics:
    def __init__(self):
        self.c = dict.fromkeys(COUNTERS, 0)
        self.types = {}
        self.batch_size, self.commit_us = Histogram(), Histogram()
        # where a message's time goes: receipt to handler (per message), the commit alone
        # and the relay after it (per batch)
        self.queue_us, self.store_commit_us, self.relay_us = Histogram(), Histogram(), Histogram()
        self.rate_limited = {"queries": 0, "commands": 0}
        self.socket_events = {}
        self.auth_refused = {}

    def type(self, name):
        m = self.types.get(name)
        if m is None:
            m = self.types[name] = TypeMetrics()
        return m

    def inc(self, name, n=1):
        self.c[name] += n

    def reply(self, service):
        out = {"service": service, "types": {t: m.reply() for t, m in self.types.items()},
               "batch_size": self.batch_size.reply(), "commit_us": self.commit_us.reply(),
               "queue_us": self.queue_us.reply(), "store_commit_us": self.store_commit_us.reply(),
               "relay_us": self.relay_us.reply()}
        out.update(self.c)
        out.update(rate_limited=dict(self.rate_limited), socket_events=dict(self.socket_events),
                   auth_refused=dict(self.auth_refused))
        return out
