"""The delivery rules (docs/protocol.md §7.1-§7.4, docs/guarantees.md), without I/O:
one publisher's stream as a subscriber follows it, and both ends of sequenced
commands. The same rules as troupe's C++ core (common/core), so both peers behave
alike; the driver (node.py) feeds in what arrived and the time and does what the
verdicts and effects say."""
import time

STOPPED, HELD, DUPLICATE, GAP, APPLY = "stopped", "held", "duplicate", "gap", "apply"
STALL_REPLAYS = 3  # unanswered replays, while the publisher's heartbeats arrive, before "stalled"


class Effects:
    def __init__(self):
        self.reports = []          # (level, text)
        self.loss = None           # "behind_retention", "history_lost", "commands_rewritten", ...
        self.save_identity = False
        self.gap_opened = self.gap_repaired = self.health_changed = False
        self.events_lost = 0

    def report(self, level, text):
        self.reports.append((level, text))


class InboundStream:
    """One publisher's events: in order, once, gaps replayed, its identity verified."""

    def __init__(self, publisher, heartbeat_s, durable, position=0, identity=""):
        inc, epoch, lost = self.parse_identity(identity)
        self.publisher = publisher
        self.heartbeat_s, self.durable = heartbeat_s, durable
        self.phase = "history_lost" if lost else "unverified"
        self.position = self.known_head = position
        self.incarnation, self.epoch = inc, epoch
        self.boot = ""
        self.trusted_epoch = 0
        self.replay_wanted = True
        self.replay = None  # (id, from, position when asked, sent)
        self.last_heard = self.subscribed_at = time.monotonic()
        self.unanswered = 0
        self.stalled = False
        self.saved_identity = self.identity()

    # --- state
    def verified(self):
        return self.phase in ("following", "repairing")

    def in_gap(self):
        return self.phase in ("unverified_behind", "repairing")

    def stopped(self):
        return self.phase in ("behind_retention", "history_lost")

    def identity(self):
        lost = self.phase == "history_lost"
        out = self.incarnation
        if self.epoch or lost:
            out += f" {self.epoch}"
        return out + (" lost" if lost else "")

    @staticmethod
    def parse_identity(record):
        parts = (record or "").split(" ")
        epoch = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        return parts[0], epoch, record.endswith(" lost") if record else False

    def mark(self):
        return (self.position, self.epoch, self.incarnation, self.saved_identity)

    def rewind(self, m):
        self.position, self.epoch, self.incarnation, self.saved_identity = m

    def recall(self, fx):
        if self.phase != "history_lost":
            return
        fx.report("error", f"LOSS: {self.publisher}'s history is not the one this service applied up to "
                           f"#{self.position} (found before this start: its store was replaced or lost commits); "
                           f"not applying {self.publisher} until an operator decides")
        fx.loss = "history_lost"
        fx.health_changed = True

    # --- what arrives
    def offer(self, sequence, epoch, replayed, fx):
        if self.stopped():
            return STOPPED
        if not replayed and epoch and epoch != self.trusted_epoch and self.verified():
            self._unverify()
        if not self.verified():
            self.known_head = max(self.known_head, sequence)
            return HELD
        if sequence <= self.position:
            return DUPLICATE
        if sequence > self.position + 1:
            self.known_head = max(self.known_head, sequence)
            if not self.in_gap():
                self._open_gap(fx)
            return GAP
        self.position = sequence
        if epoch:
            self.epoch = epoch
        self.known_head = max(self.known_head, sequence)
        if self.in_gap() and self.position >= self.known_head:
            self.phase = "following" if self.phase == "repairing" else "unverified"
            fx.gap_repaired = True
        return APPLY

    def heartbeat(self, word, fx):
        self._check(word, fx)
        if self.stopped():
            return
        self.known_head = max(self.known_head, word["head"])
        if self.position < word["head"] and not self.in_gap() and not self.replay:
            self._open_gap(fx)

    def awaits(self, id_):
        return self.replay is not None and self.replay[0] == id_

    def answered(self, answer, fx):
        """A $replay reply's header; True when its events are to be offered."""
        frm = self.replay[1] if self.replay else self.position + 1
        self.replay = None
        self._moves(fx)
        self._check(answer, fx)
        if self.stopped() or not self._check_epoch(answer, frm, fx):
            return False
        self.known_head = max(self.known_head, answer["head"])
        oldest = answer.get("oldest", 1)
        if self.position + 1 < oldest and self.position < answer["head"]:
            lost = oldest - 1 - self.position
            if self.durable:
                fx.report("error", f"LOSS: {self.publisher} no longer retains events {self.position + 1}.."
                                   f"{oldest - 1} that this service has not applied (it keeps {oldest}.."
                                   f"{answer['head']}); not applying {self.publisher} until an operator decides")
                self._stop("behind_retention", fx)
                return False
            fx.report("warn", f"memory mode: {lost} events of {self.publisher} are gone; skipping ahead")
            fx.events_lost += lost
            self.position = oldest - 1
        return True

    def refused(self, fx):
        self.replay = None
        self._moves(fx)

    def tick(self, now, fx):
        """(reopen_subscription, reopen_replay, ask_from or None)."""
        reopen_sub = reopen_replay = False
        if self.stopped():
            return False, False, None
        hb = self.heartbeat_s
        if now - max(self.last_heard, self.subscribed_at) > max(hb * 3, 5.0):
            reopen_sub = True
            self.subscribed_at = now
        timeout = max(hb * 2, 1.0)
        wait = timeout * (1 << min(self.unanswered, 3))
        if self.replay and now - self.replay[3] < wait:
            return reopen_sub, False, None
        if self.replay:
            asked_at = self.replay[2]
            self.replay = None
            reopen_replay = True
            if self.position != asked_at:
                self._moves(fx)
            else:
                if now - self.last_heard < wait:
                    self.unanswered += 1
                    if self.unanswered >= STALL_REPLAYS:
                        self._stall(fx)
        ask = None
        if self.replay_wanted or not self.verified() or self.position < self.known_head:
            ask = self.position + 1
        return reopen_sub, reopen_replay, ask

    def asked(self, id_, frm, now):
        self.replay = (id_, frm, self.position, now)
        self.replay_wanted = False

    def heard(self, now):
        self.last_heard = now

    # --- the checks
    def _check(self, word, fx):
        if self.stopped() or not word.get("incarnation"):
            return
        new_boot = word.get("boot", "") != self.boot
        self.boot = word.get("boot", "")
        epoch = word.get("epoch")
        if not self.incarnation:
            self.incarnation = word["incarnation"]
            fx.save_identity = True
        elif word["incarnation"] != self.incarnation:
            if not word.get("durable", True):
                lost = max(self.known_head - self.position, 0)
                fx.report("warn", f"{self.publisher} restarted without its history (memory mode): {lost} "
                                  f"event(s) never applied are gone; position {self.position} -> 0")
                fx.events_lost += lost
                self.position, self.known_head = 0, word["head"]
                self.incarnation, self.epoch = word["incarnation"], 0
                self.trusted_epoch = epoch or 0
                fx.save_identity = True
                self.phase = "following"
                return
            fx.report("error", f"LOSS: {self.publisher}'s store was replaced (incarnation {word['incarnation']}, "
                               f"this service applied up to #{self.position} of {self.incarnation}); not applying "
                               f"{self.publisher} until an operator decides")
            self._stop("history_lost", fx)
            return
        if new_boot and not epoch and word["head"] < self.position:
            fx.report("error", f"LOSS: {self.publisher}'s head #{word['head']} is behind this service's position "
                               f"#{self.position}: it lost committed events; not applying {self.publisher} until "
                               f"an operator decides")
            self._stop("history_lost", fx)
            return
        if not epoch or epoch == self.trusted_epoch:
            self._verify()
        elif self.verified():
            self._unverify()

    def _check_epoch(self, answer, frm, fx):
        epoch = answer.get("epoch")
        if not epoch or epoch == self.trusted_epoch:
            return self.verified()
        at = frm - 1
        if at != self.position:
            self.replay_wanted = True
            return False
        theirs = answer.get("epoch_of_from") or 0
        retained = at + 1 >= answer.get("oldest", 1)
        if at > 0 and retained and (at > answer["head"] or (self.epoch != 0 and theirs != self.epoch)):
            what = "no longer has" if at > answer["head"] else f"has from epoch {theirs:x}"
            fx.report("error", f"LOSS: {self.publisher} lost committed events: this service applied its event "
                               f"#{at} (epoch {self.epoch:x}), which {self.publisher} now {what} (its head is "
                               f"#{answer['head']}): it wrote other events under the same numbers; not applying "
                               f"{self.publisher} until an operator decides")
            self._stop("history_lost", fx)
            return False
        self.trusted_epoch = epoch
        self._verify()
        return True

    def _stop(self, why, fx):
        self.phase = why
        if why == "history_lost":
            fx.save_identity = True
        fx.loss = why
        fx.health_changed = True

    def _verify(self):
        self.phase = {"unverified": "following", "unverified_behind": "repairing"}.get(self.phase, self.phase)

    def _unverify(self):
        self.phase = {"following": "unverified", "repairing": "unverified_behind"}.get(self.phase, self.phase)
        self.replay_wanted = True

    def _open_gap(self, fx):
        self.phase = {"unverified": "unverified_behind", "following": "repairing"}.get(self.phase, self.phase)
        fx.gap_opened = True

    def _stall(self, fx):
        if self.stalled:
            return
        self.stalled = True
        fx.health_changed = True
        fx.report("error", f"stream from {self.publisher} stuck at #{self.position} (its head is "
                           f"#{self.known_head}): {self.unanswered} replays from #{self.position + 1} went "
                           f"unanswered while its heartbeats arrive; nothing after #{self.position} is applied "
                           f"until it moves")

    def _moves(self, fx):
        self.unanswered = 0
        if self.stalled:
            self.stalled = False
            fx.health_changed = True
            fx.report("info", f"stream from {self.publisher} moves again (at #{self.position})")


class CommandInbox:
    """Each sender's sequenced commands: strictly in order, once; acks only what committed."""

    def __init__(self):
        self.pending, self.committed_ = {}, {}  # sender -> [position, [(first, epoch)], rewritten]

    def knows(self, sender):
        return sender in self.pending

    def restore(self, sender, position, epochs=""):
        pairs = [tuple(int(x) for x in item.split(":")) for item in epochs.split() if ":" in item]
        self.pending[sender] = [position, pairs, 0]
        self.committed_[sender] = [position, list(pairs), 0]

    def offer(self, sender, sequence, epoch, fx):
        st = self.pending.setdefault(sender, [0, [], 0])
        if sequence <= st[0]:
            ours = 0
            for first, e in st[1]:
                if first <= sequence:
                    ours = e
            if epoch and ours and epoch != ours and epoch != st[2]:
                st[2] = epoch
                fx.report("error", f"LOSS: {sender} sent command #{sequence} again as another command (it was "
                                   f"applied here from an earlier opening of its store): {sender} lost commands "
                                   f"after sending them; its commands numbered up to #{st[0]} are dropped here "
                                   f"as duplicates")
                fx.loss = "commands_rewritten"
                fx.health_changed = True
            return DUPLICATE
        if sequence > st[0] + 1:
            return "out_of_order"
        st[0] = sequence
        if epoch and (not st[1] or st[1][-1][1] != epoch):
            st[1].append((sequence, epoch))
            del st[1][:-8]
        return APPLY

    def moved(self):
        out = []
        for sender, st in self.pending.items():
            old = self.committed_.get(sender)
            if old is not None and old[0] == st[0] and old[1] == st[1]:
                continue
            out.append((sender, st[0], " ".join(f"{f}:{e}" for f, e in st[1])))
        return out

    def committed(self):
        self.committed_ = {s: [st[0], list(st[1]), st[2]] for s, st in self.pending.items()}

    def rolled_back(self):
        self.pending = {s: [st[0], list(st[1]), st[2]] for s, st in self.committed_.items()}

    def acks(self):
        return {s: st[0] for s, st in self.committed_.items()}


class CommandOutbox:
    """Towards one receiver: resend what its heartbeats have not acknowledged."""

    def __init__(self, receiver, head_at_start, acked, incarnation, heartbeat_s):
        self.receiver, self.incarnation = receiver, incarnation
        self.head_at_start, self.acked = head_at_start, acked
        self.heartbeat_s = heartbeat_s
        self.checked = False
        self.sent_through = head_at_start
        self.lost_reported = False
        self.last_progress = time.monotonic()

    def may_send(self):
        return self.checked

    def resend_limit(self):
        return (1 << 63) - 1 if self.checked else self.head_at_start

    def resend_due(self, now):
        return now - self.last_progress >= self.heartbeat_s * 2

    def sent(self, sequence):
        self.sent_through = max(self.sent_through, sequence)

    def heartbeat(self, ack, incarnation, receiver_durable, head, durable, now, fx):
        """Returns the number up to which the outbox may forget commands, when the ack moved."""
        if incarnation and incarnation != self.incarnation:
            if self.incarnation and self.acked > 0:
                what = (f"{self.receiver}'s store was replaced (incarnation {incarnation}, was {self.incarnation}): "
                        f"the commands #1..#{self.acked} of ours it had applied are gone with it; they are not resent")
                if receiver_durable and durable:
                    fx.report("error", "LOSS: " + what)
                    fx.loss = "commands_lost_there"
                    fx.health_changed = True
                else:
                    fx.report("warn", "memory mode: " + what)
            self.incarnation, self.acked = incarnation, 0
            fx.save_identity = True
        if not self.checked:
            self.checked = True
            self.last_progress = 0.0
        if ack is not None and ack > self.sent_through and durable and not self.lost_reported:
            self.lost_reported = True
            fx.report("error", f"LOSS: {self.receiver} applied our commands up to #{ack}, but this service sent it "
                               f"no more than #{self.sent_through} (its store ends at #{head}): commands were lost "
                               f"here after they were sent, and new commands with those numbers are taken for "
                               f"applied by {self.receiver}")
            fx.loss = "commands_lost_here"
            fx.health_changed = True
        if ack is not None and ack > self.acked:
            self.acked = ack
            self.last_progress = now
            return ack
        if ack is not None and ack < self.acked:
            fx.report("error", f"LOSS: {self.receiver} acknowledges our commands only up to #{ack} after "
                               f"#{self.acked}: it lost applied commands; they are not resent")
            self.acked = ack
            fx.loss = "commands_lost_there"
            fx.health_changed = True
        return None
