"""The one authenticated handshake of both agent channels (control and MPI launch).

    server -> client   {"type": "challenge", "protocol": P, "nonce": Ns}
    client -> server   {"type": HELLO, ...fields, "nonce": Nc, "mac": HMAC(token, Ns + fields)}
    server -> client   {"type": "accepted", "mac": HMAC(token, Ns + Nc), ...} or "refused"

Both ends then hold a `wire.Session` keyed by (token, Ns, Nc): every later message is
sealed with a sequence number and a MAC. The token never crosses the wire, a captured
hello cannot be replayed (fresh nonces), and a peer without the token can neither join
nor speak on a connection it did not open. Pure: building and checking messages only;
the sockets stay with the callers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .wire import (
    CLIENT_TO_SERVER,
    SERVER_TO_CLIENT,
    Session,
    accept_mac,
    join_mac,
    macs_equal,
    new_nonce,
    session_key,
)


def challenge(protocol: str) -> tuple[dict[str, Any], str]:
    """The server's opening message and the nonce it must remember."""
    nonce = new_nonce()
    return {"type": "challenge", "protocol": protocol, "nonce": nonce}, nonce


@dataclass(frozen=True)
class Hello:
    """A client's hello, with what it needs to check the answer."""

    message: dict[str, Any]
    fields: dict[str, Any]
    server_nonce: str

    def session(self, token: str | None, protocol: str) -> Session:
        key = session_key(token, protocol, self.server_nonce, str(self.fields["nonce"]))
        return Session(key, CLIENT_TO_SERVER, SERVER_TO_CLIENT)

    def accepted_by_token_holder(self, token: str | None, answer: dict[str, Any]) -> bool:
        """The `accepted` answer proves the server holds the same token."""
        expected = accept_mac(token, self.server_nonce, str(self.fields["nonce"]))
        return answer.get("type") == "accepted" and macs_equal(answer.get("mac"), expected)


def hello(
    token: str | None, kind: str, challenge_message: dict[str, Any], fields: dict[str, Any]
) -> Hello:
    """The client's answer to a challenge; `fields` must hold `protocol` (a nonce is added)."""
    signed = {**fields, "nonce": new_nonce()}
    server_nonce = str(challenge_message.get("nonce"))
    message = {"type": kind, **signed, "mac": join_mac(token, server_nonce, signed)}
    return Hello(message, signed, server_nonce)


@dataclass(frozen=True)
class Checked:
    """The server's verdict on a hello: `fields` when it passed, else a refusal."""

    fields: dict[str, Any] | None
    code: str = ""
    reason: str = ""
    fix: str = ""


def check_hello(
    token: str | None, protocol: str, kind: str, server_nonce: str, message: dict[str, Any]
) -> Checked:
    fields = {k: v for k, v in message.items() if k not in ("type", "mac")}
    if message.get("type") != kind or fields.get("protocol") != protocol:
        return Checked(
            None,
            "version",
            f"it speaks {fields.get('protocol')!r}, this node speaks {protocol!r}",
            "use the same tfbuild version on every node",
        )
    if not macs_equal(message.get("mac"), join_mac(token, server_nonce, fields)):
        what = "no credential" if "mac" not in message else "a wrong job token"
        return Checked(
            None,
            "bad_token",
            f"bad job token: it presented {what} (its MAC does not match this node's "
            "TFBUILD_JOB_TOKEN)",
            "every node must be started with the same TFBUILD_JOB_TOKEN "
            "(or all without one and with TFBUILD_TRUST_NETWORK=1)",
        )
    return Checked(fields)


def accepted(
    token: str | None, protocol: str, server_nonce: str, fields: dict[str, Any], **extra: Any
) -> tuple[dict[str, Any], Session]:
    """The server's `accepted` message and its side of the session."""
    client_nonce = str(fields.get("nonce"))
    message = {**extra, "type": "accepted", "mac": accept_mac(token, server_nonce, client_nonce)}
    key = session_key(token, protocol, server_nonce, client_nonce)
    return message, Session(key, SERVER_TO_CLIENT, CLIENT_TO_SERVER)
