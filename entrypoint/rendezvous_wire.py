"""The rendezvous wire format: one JSON object per line, and the HMAC handshake.

Shared by the server (rendezvous_server) and the clients (rendezvous, control).
The job token never crosses the wire: each side proves it holds the token with an
HMAC-SHA256 over fresh nonces from both ends (docs/rendezvous.md, "Handshake").
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import secrets
import select
import socket
import threading
from typing import Any

PROTOCOL = "tfbuild-rendezvous/1"
MAX_LINE = 4 * 1024 * 1024
"""Largest line accepted from an authenticated peer (a 512-node `formed` message is ~40 KB)."""
MAX_UNAUTHENTICATED_LINE = 8 * 1024
"""Largest line accepted before the handshake: an unknown peer cannot make us buffer much."""


class ProtocolError(Exception):
    """The peer sent something that is not this protocol (garbage, an oversized line)."""


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class LineReader:
    """Splits a byte stream into decoded JSON messages."""

    def __init__(self, limit: int = MAX_LINE) -> None:
        self.limit = limit
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buf += data
        messages = []
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                break
            line = bytes(self._buf[:end])
            del self._buf[: end + 1]
            if line.strip():
                messages.append(_decode(line))
        if len(self._buf) > self.limit:
            raise ProtocolError(f"a line longer than {self.limit} bytes")
        return messages


def _decode(line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ProtocolError(f"not a JSON line: {line[:60]!r}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError(f"not a protocol message: {line[:60]!r}")
    return message


def new_nonce() -> str:
    return secrets.token_hex(16)


def _key(token: str | None) -> bytes:
    # Trusted-network mode runs without a token; both ends then MAC with the empty
    # key, so a node with a token and a node without one still fail to agree.
    return (token or "").encode()


def join_mac(token: str | None, server_nonce: str, fields: dict[str, Any]) -> str:
    """The client's proof: covers the server's nonce and every field of its join."""
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    msg = f"{PROTOCOL} join\n{server_nonce}\n{body}".encode()
    return hmac.new(_key(token), msg, hashlib.sha256).hexdigest()


def accept_mac(token: str | None, server_nonce: str, client_nonce: str) -> str:
    """The server's proof, so a client never trusts a server that lacks the token."""
    msg = f"{PROTOCOL} accept\n{server_nonce}\n{client_nonce}".encode()
    return hmac.new(_key(token), msg, hashlib.sha256).hexdigest()


def macs_equal(a: object, b: str) -> bool:
    return isinstance(a, str) and hmac.compare_digest(a.encode(), b.encode())


class LineSocket:
    """A connected blocking socket that speaks JSON lines; sends may come from any thread."""

    def __init__(self, sock: socket.socket, reader: LineReader | None = None) -> None:
        self.sock = sock
        self.reader = reader or LineReader()
        self._send_lock = threading.Lock()

    def send(self, message: dict[str, Any], timeout: float) -> None:
        """Raises OSError when the peer is gone or does not take the data within `timeout`."""
        with self._send_lock:
            self.sock.settimeout(timeout)
            self.sock.sendall(encode(message))

    def receive(self, timeout: float) -> list[dict[str, Any]] | None:
        """Messages that arrived within `timeout` ([] if none); None at end of stream.

        Raises OSError when the connection failed, ProtocolError on garbage.
        """
        # poll, not select: a process serving hundreds of nodes has fds above 1024.
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        if not poller.poll(max(timeout, 0.0) * 1000):
            return []
        data = self.sock.recv(65536)
        if not data:
            return None
        return self.reader.feed(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
