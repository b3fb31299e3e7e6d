"""A Python peer's SQLite store: its outbox (its events, kept for $replay), its
positions in the streams it follows, the command ids it has handled, its outgoing
commands, its dead letters and its handlers' state — all in one file, so a handler's
state, the position that says its message was applied, and the events it emitted
commit in one transaction (docs/guarantees.md)."""
import fcntl
import os
import sqlite3

import msgpack

from .wire import now_rfc3339, random_epoch, uuid7

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox(seq INTEGER PRIMARY KEY, type TEXT NOT NULL, correlationid TEXT NOT NULL,
  envelope BLOB NOT NULL, payload BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS outbox_correlation ON outbox(correlationid);
CREATE TABLE IF NOT EXISTS epochs(first_seq INTEGER PRIMARY KEY, epoch INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS inbox(stream TEXT PRIMARY KEY, position INTEGER NOT NULL, identity TEXT NOT NULL)
  WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seen_ids(n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, refusal TEXT);
CREATE TABLE IF NOT EXISTS commands(target TEXT NOT NULL, seq INTEGER NOT NULL, envelope BLOB NOT NULL,
  payload BLOB NOT NULL, PRIMARY KEY(target, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbound(target TEXT PRIMARY KEY, head INTEGER NOT NULL, acked INTEGER NOT NULL,
  incarnation TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters(id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL,
  first_time TEXT NOT NULL, endpoint TEXT NOT NULL, source TEXT NOT NULL, type TEXT NOT NULL,
  reason TEXT NOT NULL, message_id TEXT NOT NULL, attempts INTEGER NOT NULL, frames BLOB NOT NULL,
  bytes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS state(tbl TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
  PRIMARY KEY(tbl, key)) WITHOUT ROWID;
"""
VERSION = "1"


def _t(text):
    """Text for SQLite: what was not UTF-8 (surrogate escapes) as \\xNN, never an error
    that would fail the whole unit of work for one peer's bytes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class AlreadyRunning(Exception):
    pass


class Store:
    def __init__(self, path, synchronous="full"):
        self._lock = None
        if path != ":memory:":  # memory mode (durability = "memory"): nothing on disk
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            # One process per store: a second instance would fork the service's history.
            self._lock = open(path + ".lock", "a")
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise AlreadyRunning(f"{path} is in use by another process (is the service already running?)")
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
        self.db.executescript(SCHEMA)
        self.db.execute("BEGIN IMMEDIATE")
        self.incarnation = self._meta("incarnation") or self._set_meta("incarnation", uuid7())
        self._set_meta("version", VERSION)
        self.head = self.db.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]
        head_seen = int(self._meta("head") or 0)
        self.head = max(self.head, head_seen)  # retention may have trimmed the outbox to nothing
        # A new epoch each open, recorded with the first sequence written under it (§7.1).
        self.epoch = random_epoch()
        self.db.execute("INSERT OR REPLACE INTO epochs(first_seq, epoch) VALUES(?, ?)", (self.head + 1, self.epoch))
        self.db.execute("COMMIT")

    def _meta(self, key):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key, value):
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (key, value))
        return value

    def close(self):
        self.db.close()
        if self._lock:
            self._lock.close()

    # --- units of work
    def begin(self):
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self):
        self.db.execute("COMMIT")

    def rollback(self):
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def savepoint(self):
        self.db.execute("SAVEPOINT message")

    def release(self):
        self.db.execute("RELEASE message")

    def undo(self):
        self.db.execute("ROLLBACK TO message")
        self.db.execute("RELEASE message")

    # --- the outbox
    def append_event(self, seq, type_, correlationid, envelope, payload):
        self.db.execute("INSERT INTO outbox(seq, type, correlationid, envelope, payload) VALUES(?, ?, ?, ?, ?)",
                        (seq, _t(type_), _t(correlationid), envelope, payload))

    def save_head(self):
        """The head, kept apart from the outbox (retention may trim it to nothing): once a batch."""
        self._set_meta("head", str(self.head))

    def oldest(self):
        row = self.db.execute("SELECT min(seq) FROM outbox").fetchone()
        return row[0] if row[0] is not None else self.head + 1

    def events(self, frm, to, limit, max_bytes):
        out, size = [], 0
        for env, payload in self.db.execute(
                "SELECT envelope, payload FROM outbox WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?",
                (frm, min(to, (1 << 63) - 1), limit)):
            size += len(env) + len(payload)
            if out and size > max_bytes:
                break
            out.append((env, payload))
        return out

    def events_of(self, correlationid, limit, max_bytes):
        out, size = [], 0
        for env, payload in self.db.execute(
                "SELECT envelope, payload FROM outbox WHERE correlationid = ? ORDER BY seq LIMIT ?",
                (_t(correlationid), limit)):
            size += len(env) + len(payload)
            if out and size > max_bytes:
                break
            out.append((env, payload))
        return out

    def epoch_of(self, seq):
        if seq == 0 or seq > self.head:
            return 0
        row = self.db.execute("SELECT epoch FROM epochs WHERE first_seq <= ? ORDER BY first_seq DESC LIMIT 1",
                              (seq,)).fetchone()
        return row[0] if row else 0

    def trim(self, keep):
        if self.head > keep:
            self.db.execute("DELETE FROM outbox WHERE seq <= ?", (self.head - keep,))

    # --- positions
    def positions(self):
        return {s: (p, i) for s, p, i in self.db.execute("SELECT stream, position, identity FROM inbox")}

    def set_position(self, stream, position, identity):
        self.db.execute("INSERT OR REPLACE INTO inbox(stream, position, identity) VALUES(?, ?, ?)",
                        (stream, position, identity))

    # --- one-shot command ids
    def seen(self, id_):
        row = self.db.execute("SELECT refusal FROM seen_ids WHERE id = ?", (_t(id_),)).fetchone()
        return (True, row[0]) if row else (False, None)

    def mark_seen(self, id_, refusal, keep):
        self.db.execute("INSERT OR REPLACE INTO seen_ids(id, refusal) VALUES(?, ?)",
                        (_t(id_), None if refusal is None else _t(refusal)))
        self.db.execute("DELETE FROM seen_ids WHERE n <= (SELECT max(n) FROM seen_ids) - ?", (keep,))

    # --- outgoing sequenced commands
    def outbound(self):
        return {t: (h, a, i) for t, h, a, i in self.db.execute("SELECT target, head, acked, incarnation FROM outbound")}

    def set_outbound(self, target, head, acked, incarnation):
        self.db.execute("INSERT OR REPLACE INTO outbound(target, head, acked, incarnation) VALUES(?, ?, ?, ?)",
                        (target, head, acked, incarnation))

    def append_command(self, target, seq, envelope, payload):
        self.db.execute("INSERT INTO commands(target, seq, envelope, payload) VALUES(?, ?, ?, ?)",
                        (target, seq, envelope, payload))

    def unacked(self, target, acked, limit):
        return list(self.db.execute("SELECT seq, envelope, payload FROM commands WHERE target = ? AND seq > ? "
                                    "AND seq <= ? ORDER BY seq LIMIT 512", (target, acked, limit)))

    def forget_commands(self, target, upto):
        self.db.execute("DELETE FROM commands WHERE target = ? AND seq <= ?", (target, upto))

    # --- dead letters
    def dead_letter(self, endpoint, source, type_, reason, message_id, frames, max_letters, max_bytes):
        """Keeps a refused message whole; one letter per message id (a retry updates it).
        Returns how many old letters were evicted to stay within the caps."""
        now = now_rfc3339()
        source, type_, reason, message_id = _t(source), _t(type_), _t(reason), _t(message_id)
        blob = msgpack.packb([bytes(f) for f in frames], use_bin_type=True)
        if message_id:
            row = self.db.execute("SELECT id FROM dead_letters WHERE message_id = ?", (message_id,)).fetchone()
            if row:
                self.db.execute("UPDATE dead_letters SET time = ?, reason = ?, attempts = attempts + 1 WHERE id = ?",
                                (now, reason, row[0]))
                return 0
        self.db.execute("INSERT INTO dead_letters(time, first_time, endpoint, source, type, reason, message_id, "
                        "attempts, frames, bytes) VALUES(?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
                        (now, now, endpoint, source, type_, reason, message_id, blob, len(blob)))
        evicted = 0
        while True:
            n, size = self.db.execute("SELECT count(*), coalesce(sum(bytes), 0) FROM dead_letters").fetchone()
            if n <= max_letters and size <= max_bytes or n <= 1:
                return evicted
            self.db.execute("DELETE FROM dead_letters WHERE id = (SELECT min(id) FROM dead_letters)")
            evicted += 1

    def dead_letter_count(self):
        return self.db.execute("SELECT count(*) FROM dead_letters").fetchone()[0]

    def dead_letters(self, limit):
        return [self._letter(r, False) for r in self.db.execute(
            "SELECT id, time, first_time, endpoint, source, type, reason, attempts, frames FROM dead_letters "
            "ORDER BY id LIMIT ?", (limit,))]

    def dead_letter_by_id(self, id_, with_frames=True):
        row = self.db.execute("SELECT id, time, first_time, endpoint, source, type, reason, attempts, frames "
                              "FROM dead_letters WHERE id = ?", (id_,)).fetchone()
        return self._letter(row, with_frames) if row else None

    @staticmethod
    def _letter(row, with_frames):
        frames = msgpack.unpackb(row[8], raw=False)
        out = {"id": row[0], "time": row[1], "first_time": row[2], "endpoint": row[3], "source": row[4],
               "type": row[5], "reason": row[6], "attempts": row[7], "frames": len(frames)}
        if with_frames:
            out["raw"] = frames
        return out

    def retryable(self, id_):
        """Whether a handler refused it (only those keep their message id)."""
        row = self.db.execute("SELECT message_id FROM dead_letters WHERE id = ?", (id_,)).fetchone()
        return bool(row and row[0])

    def drop_dead_letter(self, id_):
        self.db.execute("DELETE FROM dead_letters WHERE id = ?", (id_,))

    def refuse_again(self, id_, reason):
        self.db.execute("UPDATE dead_letters SET time = ?, reason = ?, attempts = attempts + 1 WHERE id = ?",
                        (now_rfc3339(), _t(reason), id_))

    # --- handlers' state: msgpack values by table and key
    def load(self, tbl, key):
        row = self.db.execute("SELECT value FROM state WHERE tbl = ? AND key = ?", (_t(tbl), _t(key))).fetchone()
        return msgpack.unpackb(row[0], raw=False, unicode_errors="surrogateescape") if row else None

    def save(self, tbl, key, value):
        self.db.execute("INSERT OR REPLACE INTO state(tbl, key, value) VALUES(?, ?, ?)",
                        (_t(tbl), _t(key), msgpack.packb(value, use_bin_type=True, unicode_errors="surrogateescape")))

    def delete(self, tbl, key):
        self.db.execute("DELETE FROM state WHERE tbl = ? AND key = ?", (_t(tbl), _t(key)))

    def scan(self, tbl, after, limit):
        return [msgpack.unpackb(v, raw=False, unicode_errors="surrogateescape") for (v,) in self.db.execute(
            "SELECT value FROM state WHERE tbl = ? AND key > ? ORDER BY key LIMIT ?", (_t(tbl), _t(after), limit))]
