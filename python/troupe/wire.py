"""The wire of docs/protocol.md: envelopes (§2), payload decoding with limits (§3, §4),
ids and times. Pure functions over bytes; no sockets here."""
import os
import secrets
import time

import msgpack

SPECVERSION = "1.0"
MAX_ENVELOPE_BYTES = 4096
MAX_ENVELOPE_STRING = 1024
MAX_PAYLOAD_DEPTH = 32
MAX_CONTAINER_ENTRIES = 65536
MAX_FRAMES = 16  # a command or query (§7.4)

# Envelope keys in the order troupe writes them (§2), with their msgpack type.
_KEYS = [
    ("specversion", str, True), ("id", str, True), ("source", str, True), ("type", str, True),
    ("time", str, False), ("datacontenttype", str, False), ("kind", str, True),
    ("sequence", int, False), ("epoch", int, False), ("correlationid", str, False),
    ("causationid", str, False), ("traceparent", str, False), ("schemaversion", int, False),
]
_KINDS = ("event", "command", "query", "reply")


class Rejected(Exception):
    """Input that is not what §2-§4 allow; the message names where and what."""

    def __init__(self, message, code="invalid"):
        super().__init__(message)
        self.code = code  # "malformed", "too_large", "invalid"


_random = bytearray()


def _random_bits(n):
    """n random bytes from a buffer refilled 4 KiB at a time: one system call per ~400 ids."""
    global _random
    if len(_random) < n:
        _random = bytearray(os.urandom(4096))
    out = bytes(_random[:n])
    del _random[:n]
    return out


def uuid7():
    """A UUIDv7 (RFC 9562): 48-bit milliseconds, then random bits; time-ordered."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(_random_bits(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 68) & 0xFFF) << 64 | (0b10 << 62) | (rand & ((1 << 62) - 1))
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_second = [-1, ""]  # the last second formatted, and its text


def now_rfc3339():
    secs, us = divmod(time.time_ns() // 1000, 1_000_000)
    if secs != _second[0]:
        _second[:] = [secs, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))]
    return f"{_second[1]}.{us:06d}Z"


def random_epoch():
    return secrets.randbits(63) or 1


def _type_name(v):
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (bytes, bytearray)):
        return "binary"
    if isinstance(v, (list, tuple)):
        return "array"
    if isinstance(v, dict):
        return "map"
    return type(v).__name__


def _unpack(data, what, max_bytes, max_str):
    if not data:
        raise Rejected(f"{what} (0 bytes): empty", "malformed")
    if len(data) > max_bytes:
        raise Rejected(f"{what} ({len(data)} bytes): over the limit of {max_bytes} bytes", "too_large")
    try:
        # Limits before allocation (§4): msgpack checks these lengths as it reads.
        # Strings that are not UTF-8 are kept as they came (surrogate escapes), as the C++
        # node keeps them: what is refused for them is the message, never the envelope.
        return msgpack.unpackb(data, raw=False, unicode_errors="surrogateescape", strict_map_key=False,
                               max_str_len=max_str,
                               max_bin_len=max_str, max_array_len=MAX_CONTAINER_ENTRIES,
                               max_map_len=MAX_CONTAINER_ENTRIES, max_ext_len=0)
    except msgpack.ExtraData:
        raise Rejected(f"{what} ({len(data)} bytes): trailing bytes after one msgpack value", "malformed")
    except ValueError as e:
        text = str(e)
        code = "too_large" if "exceeds" in text else "malformed"
        raise Rejected(f"{what} ({len(data)} bytes): {text}", code)
    except Exception as e:  # msgpack's own errors for bytes that are never valid
        raise Rejected(f"{what} ({len(data)} bytes): not msgpack ({e})", "malformed")


def decode_envelope(data):
    """An envelope as a dict, checked by §2's rules (unknown keys ignored)."""
    env = _unpack(data, "envelope", MAX_ENVELOPE_BYTES, MAX_ENVELOPE_STRING)
    if not isinstance(env, dict):
        raise Rejected(f"envelope ({len(data)} bytes): expected a map, got {_type_name(env)}")
    out = {}
    for key, kind, required in _KEYS:
        if key not in env:
            if required:
                raise Rejected(f"envelope ({len(data)} bytes): missing required key '{key}'")
            continue
        v = env[key]
        ok = isinstance(v, kind) and not isinstance(v, bool) and (kind is not int or v >= 0)
        if not ok:
            raise Rejected(f"envelope ({len(data)} bytes): key '{key}': expected "
                           f"{'string' if kind is str else 'unsigned integer'}, got {_type_name(v)}")
        if key == "schemaversion" and v > 0xFFFFFFFF:
            raise Rejected(f"envelope ({len(data)} bytes): key 'schemaversion': {v} does not fit 32 bits")
        out[key] = v
    for v in env.values():  # at most 2 levels deep
        if isinstance(v, (list, dict)) and any(isinstance(x, (list, dict)) for x in
                                               (v.values() if isinstance(v, dict) else v)):
            raise Rejected(f"envelope ({len(data)} bytes): nested deeper than 2 levels")
    if not out["type"]:  # (one with a space is no type of the mesh: refused where it is handled)
        raise Rejected(f"envelope ({len(data)} bytes): key 'type': empty")
    if out["kind"] not in _KINDS:
        raise Rejected(f"envelope ({len(data)} bytes): key 'kind': '{out['kind']}' is none of {', '.join(_KINDS)}")
    if not out["specversion"].startswith("1."):
        raise Rejected(f"envelope ({len(data)} bytes): specversion '{out['specversion']}' is not 1.x")
    return out


def encode_envelope(env):
    """Keys in §2's order; sequence/epoch left out when 0, ids left out when empty."""
    out = {}
    for key, _, _ in _KEYS:
        v = env.get(key)
        if v is None or (key in ("sequence", "epoch") and v == 0) or \
           (key in ("correlationid", "causationid", "traceparent") and v == ""):
            continue
        out[key] = v
    return msgpack.packb(out, unicode_errors="surrogateescape")  # a cause's ids, byte for byte


def make_envelope(source, type_, kind, *, sequence=0, epoch=0, correlationid="", causationid="",
                  traceparent="", schemaversion=1, id_=None):
    return {"specversion": SPECVERSION, "id": id_ or uuid7(), "source": source, "type": type_,
            "time": now_rfc3339(), "datacontenttype": "application/msgpack", "kind": kind,
            "sequence": sequence, "epoch": epoch, "correlationid": correlationid,
            "causationid": causationid, "traceparent": traceparent, "schemaversion": schemaversion}


def _depth(v, limit, at=1):
    if at > limit:
        return False
    if isinstance(v, dict):
        return all(_depth(x, limit, at + 1) for x in v.values())
    if isinstance(v, list):
        return all(_depth(x, limit, at + 1) for x in v)
    return True


def decode_payload(data, type_name, max_bytes, max_field):
    """One msgpack value within §4's limits (shape checked by the schema, if any)."""
    value = _unpack(data, type_name, max_bytes, max_field)
    if not _depth(value, MAX_PAYLOAD_DEPTH):
        raise Rejected(f"{type_name} ({len(data)} bytes): nested deeper than {MAX_PAYLOAD_DEPTH} levels",
                       "too_large")
    return value


def pack(value):
    return msgpack.packb(value, use_bin_type=True, unicode_errors="surrogateescape")


def printable(text, limit=200):
    """What a peer wrote, safe for a log line or a terminal (§7.7): controls escaped."""
    out = []
    for ch in text[:limit]:
        c = ord(ch)
        if 0xDC80 <= c <= 0xDCFF:  # a byte that was not UTF-8 (surrogate escape)
            out.append(f"\\x{c - 0xDC00:02x}")
        elif c < 0x20 or c == 0x7F:
            out.append(f"\\x{c:02x}")
        elif 0x80 <= c < 0xA0:
            out.append(f"\\u{c:04x}")
        else:
            out.append(ch)
    return "".join(out) + ("…" if len(text) > limit else "")
