"""A CurveZMQ client written by hand (RFC 23 ZMTP 3.0, RFC 26 CurveZMQ) over libsodium,
for what a libzmq socket would not send or would keep itself: a SUB whose subscriptions
are 1 MB topics (libzmq's own SUB stores each in a trie of one node per byte, and frees
it recursively) is a few frames here, and costs this process nothing.

    c = CurveClient("ipc:///.../orders.events", b"SUB", public, secret, server_public)
    c.send([b"\\x01" + topic])   # a subscription
    c.pump()                     # answers the server's ZMTP heartbeats
    c.close()

Keys are the 32 raw bytes (zmq.utils.z85.decode of a troupe key file's line).
"""
import ctypes
import os
import select
import socket
import struct

_sodium = ctypes.CDLL("libsodium.so.23")
if _sodium.sodium_init() < 0:
    raise RuntimeError("libsodium failed to initialise")
MAC = 16  # crypto_box_MACBYTES: an "easy" box is the MAC, then the ciphertext


def _buf(data):
    return ctypes.create_string_buffer(bytes(data), len(data))


def keypair():
    pk, sk = ctypes.create_string_buffer(32), ctypes.create_string_buffer(32)
    _sodium.crypto_box_keypair(pk, sk)
    return pk.raw, sk.raw


def box(message, nonce, public, secret):
    out = ctypes.create_string_buffer(len(message) + MAC)
    if _sodium.crypto_box_easy(out, _buf(message), ctypes.c_ulonglong(len(message)), _buf(nonce),
                               _buf(public), _buf(secret)) != 0:
        raise RuntimeError("crypto_box_easy failed")
    return out.raw


def box_open(boxed, nonce, public, secret):
    out = ctypes.create_string_buffer(max(len(boxed) - MAC, 1))
    if _sodium.crypto_box_open_easy(out, _buf(boxed), ctypes.c_ulonglong(len(boxed)), _buf(nonce),
                                    _buf(public), _buf(secret)) != 0:
        raise ConnectionError("a CURVE box from the server does not open")
    return out.raw[:len(boxed) - MAC]


def _precompute(public, secret):
    k = ctypes.create_string_buffer(32)
    _sodium.crypto_box_beforenm(k, _buf(public), _buf(secret))
    return k.raw


def _box_afternm(message, nonce, key):
    out = ctypes.create_string_buffer(len(message) + MAC)
    _sodium.crypto_box_easy_afternm(out, _buf(message), ctypes.c_ulonglong(len(message)), _buf(nonce), _buf(key))
    return out.raw


def _open_afternm(boxed, nonce, key):
    out = ctypes.create_string_buffer(max(len(boxed) - MAC, 1))
    if _sodium.crypto_box_open_easy_afternm(out, _buf(boxed), ctypes.c_ulonglong(len(boxed)), _buf(nonce),
                                            _buf(key)) != 0:
        raise ConnectionError("a CURVE message from the server does not open")
    return out.raw[:len(boxed) - MAC]


def _frame(body, command=False, more=False):
    flags = (4 if command else 0) | (1 if more else 0)
    if len(body) > 255:
        return bytes([flags | 2]) + struct.pack(">Q", len(body)) + body
    return bytes([flags, len(body)]) + body


def _property(name, value):
    return bytes([len(name)]) + name + struct.pack(">I", len(value)) + value


class CurveClient:
    """One connection, handshaken as the identity whose key pair is (public, secret)."""

    def __init__(self, endpoint, socket_type, public, secret, server, timeout=5.0):
        if endpoint.startswith("ipc://"):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address = endpoint[len("ipc://"):]
        elif endpoint.startswith("tcp://"):
            host, port = endpoint[len("tcp://"):].rsplit(":", 1)
            self.sock, address = socket.socket(socket.AF_INET, socket.SOCK_STREAM), (host, int(port))
        else:
            raise ValueError(f"no raw socket reaches {endpoint}")
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        self.pending = b""
        greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"CURVE".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
        self.sock.sendall(greeting)
        theirs = self._read(64)
        if theirs[12:17] != b"CURVE":
            raise ConnectionError(f"the server speaks {theirs[12:32].rstrip(bytes(1))!r}, not CURVE")
        short_public, short_secret = keypair()
        self.nonce = 1
        hello_nonce = b"CurveZMQHELLO---" + struct.pack(">Q", self.nonce)
        signature = box(bytes(64), hello_nonce, server, short_secret)
        self.sock.sendall(_frame(b"\x05HELLO" + b"\x01\x00" + bytes(72) + short_public + hello_nonce[16:] + signature,
                                 command=True))
        welcome = self._command()
        if not welcome.startswith(b"\x07WELCOME") or len(welcome) != 168:
            raise ConnectionError(f"no WELCOME from the server ({welcome[:16]!r})")
        plain = box_open(welcome[24:], b"WELCOME-" + welcome[8:24], server, short_secret)
        server_short, cookie = plain[:32], plain[32:128]
        vouch_nonce = os.urandom(16)
        vouch = box(short_public + server, b"VOUCH---" + vouch_nonce, server_short, secret)
        self.nonce += 1
        initiate_nonce = b"CurveZMQINITIATE" + struct.pack(">Q", self.nonce)
        metadata = _property(b"Socket-Type", socket_type)
        if socket_type in (b"DEALER", b"ROUTER", b"REQ"):
            metadata += _property(b"Identity", b"")
        sealed = box(public + vouch_nonce + vouch + metadata, initiate_nonce, server_short, short_secret)
        self.sock.sendall(_frame(b"\x08INITIATE" + cookie + initiate_nonce[16:] + sealed, command=True))
        ready = self._command()
        if not ready.startswith(b"\x05READY"):
            raise ConnectionError(f"the server refused the handshake ({ready[:40]!r})")
        self.key = _precompute(server_short, short_secret)
        self.pings = 0

    def _read(self, n):
        while len(self.pending) < n:
            chunk = self.sock.recv(max(65536, n - len(self.pending)))
            if not chunk:
                raise ConnectionError("the server hung up")
            self.pending += chunk
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def _next_frame(self):
        flags = self._read(1)[0]
        size = struct.unpack(">Q", self._read(8))[0] if flags & 2 else self._read(1)[0]
        return flags, self._read(size)

    def _command(self):
        flags, body = self._next_frame()
        if not flags & 4:
            raise ConnectionError("expected a ZMTP command during the handshake")
        return body

    def _message(self, body, more=False, command=False):
        self.nonce += 1
        nonce = b"CurveZMQMESSAGEC" + struct.pack(">Q", self.nonce)
        flags = (1 if more else 0) | (2 if command else 0)
        return _frame(b"\x07MESSAGE" + nonce[16:] + _box_afternm(bytes([flags]) + body, nonce, self.key))

    def send(self, frames):
        """One multipart message; each frame sealed on its own, as libzmq does."""
        for i, body in enumerate(frames):
            self.sock.sendall(self._message(body, more=i + 1 < len(frames)))

    def pump(self):
        """Reads what the server sent; answers each ZMTP PING with PONG, so the
        connection outlives the server's heartbeat timeout. Returns the data frames."""
        frames = []
        while True:
            readable, _, _ = select.select([self.sock], [], [], 0)
            if not readable and len(self.pending) == 0:
                return frames
            if readable:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    raise ConnectionError("the server hung up")
                self.pending += chunk
            while True:
                if len(self.pending) < 2:
                    break
                flags = self.pending[0]
                header = 9 if flags & 2 else 2
                if len(self.pending) < header:
                    break
                size = struct.unpack(">Q", self.pending[1:9])[0] if flags & 2 else self.pending[1]
                if len(self.pending) < header + size:
                    break
                body, self.pending = self.pending[header:header + size], self.pending[header + size:]
                if not body.startswith(b"\x07MESSAGE"):
                    continue
                plain = _open_afternm(body[16:], b"CurveZMQMESSAGES" + body[8:16], self.key)
                inner, payload = plain[0], plain[1:]
                if inner & 2 and payload.startswith(b"\x04PING"):
                    self.pings += 1
                    self.sock.sendall(self._message(b"\x04PONG" + payload[7:], command=True))
                elif not inner & 2:
                    frames.append(payload)
            if not readable:
                return frames

    def close(self):
        self.sock.close()
