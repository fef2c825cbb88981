"""The MPI launch channel: how mpirun on node 0 starts Open MPI's daemon (orted) on
the other nodes without ssh.

Every non-launcher agent serves this channel (`mpi_server.LaunchServer`, default port
control_port + 1). mpirun runs `tfbuild-agent mpi-rsh HOST CMD...` as its rsh agent
(`plm_rsh_agent`); that client (`remote_exec`) authenticates with the job token and
asks the agent on HOST to run CMD, whose output and exit code come back as if over
ssh. Node 0 also uses the channel to see that every agent is up (`ping`) and to tell
them how the job ended (`send_result`).

Wire: JSON lines (control.wire) and the same handshake as the control channel
(control.handshake): the client's `hello` carries an HMAC over the server's nonce and
every field (op, command, ...) made with the job token; the server answers with its
own proof; every later message is sealed with a sequence number and a MAC. The token
never crosses the wire, a captured hello cannot be replayed, and a wrong or missing
MAC is refused and logged before anything runs. docs/mpi.md has the long version.
"""

from __future__ import annotations

import base64
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ...control import handshake
from ...control.wire import LineSocket, ProtocolError
from ...errors import DiscoveryError, LaunchRefused

__all__ = ["JobResult", "LaunchRefused", "ping", "remote_exec", "send_result"]

PROTOCOL = "tfbuild-mpi-launch/1"
OPS = ("ping", "exec", "result")
HANDSHAKE_BOUND = 10.0
"""Seconds a peer gets to complete the handshake before it is dropped."""
HEARTBEAT_INTERVAL = 2.0
LOSS_BOUND = 15.0
"""Silence after which the client counts the serving agent as lost."""
KILL_GRACE = 5.0
"""SIGTERM -> SIGKILL delay when a launched command must stop."""
DAEMONS = ("orted", "prted")
"""Programs the channel launches: Open MPI's daemons, not a general remote shell."""
MAX_CONNECTIONS = 64
"""Connections served at once; more are closed at once (an unauthenticated flood gets
no more than this many threads, each gone within HANDSHAKE_BOUND)."""
LOST_EXIT = 255
"""ssh's exit code when the connection, not the command, failed: mpirun knows it."""




@dataclass(frozen=True)
class JobResult:
    code: int
    message: str


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Inbox:
    """Messages from one link, in order, across reads that return several at once."""

    def __init__(self, link: LineSocket) -> None:
        self.link = link
        self._pending: list[dict[str, Any]] = []

    def receive(self, timeout: float) -> list[dict[str, Any]] | None:
        """As LineSocket.receive, after whatever an earlier read left over."""
        if self._pending:
            out, self._pending = self._pending, []
            return out
        return self.link.receive(timeout)

    def next(self, deadline: float, who: str) -> dict[str, Any]:
        """The next message other than a heartbeat, waiting until `deadline`."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 and not self._pending:
                raise TimeoutError(f"{who} sent nothing within the bound")
            messages = self.receive(max(remaining, 0.0))
            if messages is None:
                raise ConnectionError(f"{who} closed the connection")
            while messages:
                message = messages.pop(0)
                if message["type"] != "hb":
                    self._pending = messages
                    return message


def _open(
    host: str, port: int, token: str | None, op: str, extra: dict[str, Any], bound: float
) -> tuple[Inbox, dict[str, Any]]:
    """Connect and authenticate; returns the inbox and the server's `accepted` message."""
    where = f"the agent at {host}:{port}"
    sock = socket.create_connection((host, port), timeout=bound)
    inbox = Inbox(LineSocket(sock))
    try:
        deadline = time.monotonic() + bound
        opening = inbox.next(deadline, where)
        if opening.get("protocol") != PROTOCOL:
            raise DiscoveryError(
                f"{where} speaks {opening.get('protocol')!r}, this node {PROTOCOL!r}; "
                "use the same tfbuild version on every node"
            )
        greeting = handshake.hello(
            token, "hello", opening, {"protocol": PROTOCOL, "op": op,
                                      "from": socket.gethostname(), **extra}
        )
        inbox.link.send(greeting.message, bound)
        inbox.link.secure(
            greeting.session(token, PROTOCOL),
            lambda m, why: print(f"mpi-rsh: ignored a {m.get('type')!r} message from {where} "
                                 f"that failed authentication: {why}", file=sys.stderr),
            answer_pending=True,
        )
        answer = inbox.next(deadline, where)
        if answer["type"] == "refused":
            raise LaunchRefused(
                f"{where} refused the MPI {op}: {answer.get('reason')}; {answer.get('fix')}"
            )
        if not greeting.accepted_by_token_holder(token, answer):
            raise LaunchRefused(
                f"{where} could not prove it holds the job token: it is not this job's agent "
                "or its TFBUILD_JOB_TOKEN differs; check the host list and TFBUILD_JOB_TOKEN"
            )
        return inbox, answer
    except BaseException:
        inbox.link.close()
        raise


def ping(host: str, port: int, token: str | None, bound: float = HANDSHAKE_BOUND) -> str:
    """The serving agent's state (waiting, running, done). Raises OSError while it is
    unreachable, LaunchRefused when it does not accept our token."""
    inbox, answer = _open(host, port, token, "ping", {}, bound)
    inbox.link.close()
    return str(answer.get("state"))


def send_result(
    host: str, port: int, token: str | None, result: JobResult, bound: float = HANDSHAKE_BOUND
) -> None:
    """Tell the agent at host:port how the job ended (it then exits with result.code)."""
    inbox, _ = _open(host, port, token, "result",
                     {"code": result.code, "message": result.message}, bound)
    inbox.link.close()


def remote_exec(
    host: str,
    port: int,
    token: str | None,
    command: Sequence[str],
    log: Callable[[str], None],
    *,
    connect_bound: float = 30.0,
) -> int:
    """Run `command` on the agent at host:port like ssh would: its output on ours, its
    exit code returned; LOST_EXIT when the connection fails or goes silent.
    Raises LaunchRefused when the agent refuses (wrong token, not a daemon command)."""
    deadline = time.monotonic() + connect_bound
    while True:
        try:
            inbox, _ = _open(host, port, token, "exec", {"command": list(command)},
                             HANDSHAKE_BOUND)
            break
        except LaunchRefused:
            raise
        except (OSError, ProtocolError) as e:
            if time.monotonic() >= deadline:
                log(f"mpi-rsh: cannot reach the agent at {host}:{port} within "
                    f"{connect_bound:g} s ({e}); is that node's container running?")
                return LOST_EXIT
            time.sleep(0.5)
    try:
        return _stream(inbox, host, port, log)
    finally:
        inbox.link.close()


def _stream(inbox: Inbox, host: str, port: int, log: Callable[[str], None]) -> int:
    last_heard = time.monotonic()
    while True:
        try:
            messages = inbox.receive(HEARTBEAT_INTERVAL)
        except (OSError, ProtocolError) as e:
            log(f"mpi-rsh: the connection to {host}:{port} failed ({e})")
            return LOST_EXIT
        if messages is None:
            log(f"mpi-rsh: {host}:{port} closed the connection before the command ended")
            return LOST_EXIT
        now = time.monotonic()
        if messages:
            last_heard = now
        elif now - last_heard > LOSS_BOUND:
            log(f"mpi-rsh: nothing heard from {host}:{port} for {LOSS_BOUND:g} s; giving up")
            return LOST_EXIT
        for message in messages:
            if message["type"] == "out":
                sink = sys.stdout if message.get("fd") == 1 else sys.stderr
                sink.buffer.write(base64.b64decode(str(message.get("data", ""))))
                sink.buffer.flush()
            elif message["type"] == "exit":
                return int(message.get("code", LOST_EXIT))
