"""The wire format of both agent channels: one JSON object per line, and the MACs.

Shared by the control channel (control.server, control.client, control.channel) and
the MPI launch channel (launch.mpi.channel, launch.mpi.server); the handshake that
uses these MACs is control.handshake. The job token never crosses the wire: each side
proves it holds the token with an HMAC-SHA256 over fresh nonces from both ends, and
every message after the handshake carries a sequence number and a MAC under a key
derived from the token and both nonces (docs/rendezvous.md, "Security").
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
from collections.abc import Callable
from typing import Any

from ..errors import ProtocolError

__all__ = ["LineReader", "LineSocket", "ProtocolError", "Session", "encode"]

PROTOCOL = "tfbuild-rendezvous/1"
MAX_LINE = 4 * 1024 * 1024
"""Largest line accepted from an authenticated peer (a 512-node `formed` message is ~40 KB)."""
MAX_UNAUTHENTICATED_LINE = 8 * 1024
"""Largest line accepted before the handshake: an unknown peer cannot make us buffer much."""




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


def session_key(token: str | None, protocol: str, server_nonce: str, client_nonce: str) -> bytes:
    """The per-connection key every message after the handshake is MAC'd with."""
    msg = f"{protocol} session\n{server_nonce}\n{client_nonce}".encode()
    return hmac.new(_key(token), msg, hashlib.sha256).digest()


CLIENT_TO_SERVER, SERVER_TO_CLIENT = "c2s", "s2c"
"""Direction labels inside the MAC: a message cannot be reflected back to its sender."""


class Session:
    """Seals outgoing and checks incoming messages of one authenticated connection.

    `seal` adds `seq` (1, 2, ...) and `mac`; `check` accepts a message only with a valid
    MAC and the next sequence number, so an injected, altered, replayed or reordered
    message is refused (and the caller logs and ignores it).
    """

    def __init__(self, key: bytes, outgoing: str, incoming: str) -> None:
        self._key = key
        self._outgoing = outgoing
        self._incoming = incoming
        self._sent = 0
        self._received = 0

    def seal(self, message: dict[str, Any]) -> dict[str, Any]:
        self._sent += 1
        body = {k: v for k, v in message.items() if k != "mac"}
        body["seq"] = self._sent
        body["mac"] = self._mac(self._outgoing, body)
        return body

    def check(self, message: dict[str, Any]) -> str | None:
        """None if `message` is authentic and next in order, else what is wrong with it."""
        body = {k: v for k, v in message.items() if k != "mac"}
        if "mac" not in message:
            return "it carries no MAC"
        if not macs_equal(message.get("mac"), self._mac(self._incoming, body)):
            return "its MAC does not match the job token of this connection"
        seq = body.get("seq")
        if seq != self._received + 1:
            return f"its sequence number is {seq!r}, expected {self._received + 1} (a replay?)"
        self._received += 1
        return None

    def _mac(self, direction: str, body: dict[str, Any]) -> str:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hmac.new(self._key, f"{direction}\n{text}".encode(), hashlib.sha256).hexdigest()


UNSEALED_ANSWERS = ("accepted", "refused")
"""What a server may send before its side of the session exists (the answer to a hello:
`accepted` carries its own MAC, see handshake.verify_accepted)."""


class LineSocket:
    """A connected blocking socket that speaks JSON lines; sends may come from any thread.

    Once `secure()` was called, sends are sealed and received messages that fail the
    session's check are dropped and reported to `on_reject`.
    """

    def __init__(self, sock: socket.socket, reader: LineReader | None = None) -> None:
        self.sock = sock
        self.reader = reader or LineReader()
        self.session: Session | None = None
        self.on_reject: Callable[[dict[str, Any], str], None] = lambda message, why: None
        self._answer_pending = False
        self._send_lock = threading.Lock()

    def secure(
        self,
        session: Session,
        on_reject: Callable[[dict[str, Any], str], None],
        *,
        answer_pending: bool = False,
    ) -> None:
        """From now on seal and check every message; `answer_pending`: one unsealed
        `accepted`/`refused` may still come (the client's side, right after its hello)."""
        self.session = session
        self.on_reject = on_reject
        self._answer_pending = answer_pending

    def send(self, message: dict[str, Any], timeout: float) -> None:
        """Raises OSError when the peer is gone or does not take the data within `timeout`."""
        with self._send_lock:
            if self.session is not None:
                message = self.session.seal(message)
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
        return self._authentic(self.reader.feed(data))

    def _authentic(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.session is None:
            return messages
        kept = []
        for message in messages:
            if self._answer_pending and message["type"] in UNSEALED_ANSWERS:
                self._answer_pending = False
                kept.append(message)
                continue
            problem = self.session.check(message)
            if problem is None:
                kept.append(message)
            else:
                self.on_reject(message, problem)
        return kept

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
