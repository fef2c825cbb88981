"""The MPI launch channel: how mpirun on node 0 starts Open MPI's daemon (orted) on
the other nodes without ssh.

Every non-launcher agent serves this channel (`LaunchServer`, default port
control_port + 1). mpirun runs `tfbuild-agent mpi-rsh HOST CMD...` as its rsh agent
(`plm_rsh_agent`); that client (`remote_exec`) authenticates with the job token and
asks the agent on HOST to run CMD, whose output and exit code come back as if over
ssh. Node 0 also uses the channel to see that every agent is up (`ping`) and to tell
them how the job ended (`send_result`).

Wire: JSON lines (rendezvous_wire). The server opens with a challenge nonce; the
client's `hello` carries its own nonce and an HMAC over the server's nonce and every
field (op, command, ...) made with the job token (rendezvous_wire.join_mac); the
server answers with its own proof (accept_mac). The token never crosses the wire, a
captured hello cannot be replayed (fresh nonce per connection), and a wrong or
missing MAC is refused and logged before anything runs. docs/mpi.md has the long
version.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import DiscoveryError, RendezvousAuthError
from ..rendezvous_wire import (
    MAX_LINE,
    MAX_UNAUTHENTICATED_LINE,
    LineReader,
    LineSocket,
    ProtocolError,
    accept_mac,
    join_mac,
    macs_equal,
    new_nonce,
)

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
LOST_EXIT = 255
"""ssh's exit code when the connection, not the command, failed: mpirun knows it."""


class LaunchRefused(RendezvousAuthError):
    """The serving agent refused us (wrong token, or a request it does not serve)."""


@dataclass(frozen=True)
class JobResult:
    code: int
    message: str


def _stop_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class LaunchServer:
    """One node's end: authenticates requests, runs one daemon, keeps the job result.

    Children are reaped by the owner (`reaped`), never here: the agent is PID 1 and
    reaps everything in one place, so a Popen.wait here would race it.
    """

    def __init__(
        self,
        port: int,
        token: str | None,
        log: Callable[[str], None],
        *,
        env: Mapping[str, str],
        workdir: str,
        host: str = "0.0.0.0",
        programs: Sequence[str] = DAEMONS,
    ) -> None:
        self.token = token
        self.log = log
        self.env = dict(env)
        self.workdir = workdir
        self.programs = tuple(programs)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
            self._sock.listen(64)
        except OSError as e:
            self._sock.close()
            raise DiscoveryError(
                f"cannot serve the MPI launch channel on port {port} ({e.strerror}); free the "
                "port or set TFBUILD_MPI_LAUNCH_PORT to another one on every node"
            ) from None
        self.port = self._sock.getsockname()[1]
        self._cond = threading.Condition()
        self._closed = False
        self.launched = False
        """A daemon was (or is being) launched: any further launch is refused."""
        self.pid: int | None = None
        """The launched daemon's pid (its own process group)."""
        self.exit_code: int | None = None
        self.result: JobResult | None = None
        self.refusals = 0

    # -- owner's side ------------------------------------------------------------------

    def start(self) -> None:
        threading.Thread(target=self._accept_loop, name="tfbuild-mpi-launch", daemon=True).start()

    def reaped(self, pid: int, code: int) -> None:
        """The owner reaped `pid`: if it is the daemon, its connection may finish."""
        with self._cond:
            if pid == self.pid:
                self.exit_code = code
                self._cond.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def stop_daemon(self, sig: int = signal.SIGTERM) -> None:
        with self._cond:
            pid, running = self.pid, self.exit_code is None
        if pid is not None and pid > 0 and running:
            _stop_group(pid, sig)

    def close(self) -> None:
        with self._cond:
            self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()

    # -- connections -------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, addr = self._sock.accept()
            except OSError:
                return  # closed
            peer = f"{addr[0]}:{addr[1]}"
            threading.Thread(
                target=self._serve, args=(conn, peer), name=f"tfbuild-mpi-{peer}", daemon=True
            ).start()

    def _serve(self, conn: socket.socket, peer: str) -> None:
        link = LineSocket(conn, LineReader(MAX_UNAUTHENTICATED_LINE))
        try:
            hello, server_nonce = self._handshake(link, peer)
            if hello is not None:
                self._dispatch(link, peer, hello, server_nonce)
        except (OSError, ProtocolError, ValueError, TypeError) as e:
            self.log(f"mpi launch: dropped {peer}: {e or type(e).__name__}")
        finally:
            link.close()

    def _handshake(self, link: LineSocket, peer: str) -> tuple[dict[str, Any] | None, str]:
        nonce = new_nonce()
        link.send({"type": "challenge", "protocol": PROTOCOL, "nonce": nonce}, HANDSHAKE_BOUND)
        hello = _Inbox(link).next(time.monotonic() + HANDSHAKE_BOUND, f"peer {peer}")
        fields = {k: v for k, v in hello.items() if k not in ("type", "mac")}
        op = fields.get("op")
        if hello["type"] != "hello" or fields.get("protocol") != PROTOCOL:
            self._refuse(link, peer, op, "protocol", f"it does not speak {PROTOCOL}",
                         "use the same tfbuild version on every node")
            return None, nonce
        if not macs_equal(hello.get("mac"), join_mac(self.token, nonce, fields)):
            what = "no credential" if "mac" not in hello else "a wrong job token"
            self._refuse(link, peer, op, "bad_token",
                         f"it presented {what} (its MAC does not match this node's "
                         "TFBUILD_JOB_TOKEN)",
                         "give every node of the job the same TFBUILD_JOB_TOKEN")
            return None, nonce
        if op not in OPS:
            self._refuse(link, peer, op, "op", f"operation {op!r} is unknown",
                         f"use one of {', '.join(OPS)}")
            return None, nonce
        link.reader.limit = MAX_LINE
        return hello, nonce

    def _dispatch(self, link: LineSocket, peer: str, hello: dict[str, Any], nonce: str) -> None:
        accepted = {"type": "accepted", "mac": accept_mac(self.token, nonce, str(hello["nonce"]))}
        op = hello["op"]
        if op == "ping":
            with self._cond:
                state = "done" if self.exit_code is not None else (
                    "running" if self.launched else "waiting")
            link.send({**accepted, "state": state}, HANDSHAKE_BOUND)
        elif op == "result":
            result = JobResult(int(hello.get("code", 1)), str(hello.get("message", "")))
            with self._cond:
                self.result = result
                self._cond.notify_all()
            link.send(accepted, HANDSHAKE_BOUND)
        else:
            self._exec(link, peer, hello, accepted)

    def _exec(self, link: LineSocket, peer: str, hello: dict[str, Any], accepted: dict) -> None:
        command = hello.get("command")
        if not (isinstance(command, list) and command and all(isinstance(a, str) for a in command)):
            self._refuse(link, peer, "exec", "command", "the command is not a list of strings",
                         "this is a client bug; report it")
            return
        line = " ".join(command)
        problem = self._command_problem(line)
        if problem:
            self._refuse(link, peer, "exec", "command", problem,
                         f"the channel only starts Open MPI's daemon ({', '.join(self.programs)})")
            return
        with self._cond:
            busy = self.launched or self._closed
            self.launched = True
        if busy:
            self._refuse(link, peer, "exec", "busy", "a daemon was already launched on this node",
                         "start one job per set of containers")
            return
        link.send(accepted, HANDSHAKE_BOUND)
        self.log(f"mpi launch: {peer} starts {line[:200]}")
        self._run(link, line)

    def _command_problem(self, line: str) -> str | None:
        try:
            words = shlex.split(line)
        except ValueError as e:
            return f"the command does not parse ({e})"
        if not any(os.path.basename(w) in self.programs for w in words):
            return f"the command runs none of {', '.join(self.programs)}"
        return None

    def _run(self, link: LineSocket, line: str) -> None:
        # The rsh contract (what sshd does): the arguments form one shell command line,
        # quoting included, e.g. `orted -mca orte_hnp_uri "123.0;tcp://..."`.
        env = {k: v for k, v in self.env.items() if k != "TFBUILD_JOB_TOKEN"}
        try:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", line],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as e:
            with self._cond:
                self.exit_code = 127
                self._cond.notify_all()
            link.send({"type": "out", "fd": 2, "data": _b64(f"tfbuild-agent: {e}\n".encode())},
                      HANDSHAKE_BOUND)
            link.send({"type": "exit", "code": 127}, HANDSHAKE_BOUND)
            return
        with self._cond:
            self.pid = proc.pid
            self._cond.notify_all()
        pumps = [
            threading.Thread(target=self._pump, args=(pipe, fd, link), daemon=True)
            for fd, pipe in ((1, proc.stdout), (2, proc.stderr))
        ]
        for t in pumps:
            t.start()
        self._watch(link, proc.pid)
        for t in pumps:
            t.join(KILL_GRACE)
        with self._cond:
            code = self.exit_code
        with contextlib.suppress(OSError):
            link.send({"type": "exit", "code": LOST_EXIT if code is None else code},
                      HANDSHAKE_BOUND)

    def _watch(self, link: LineSocket, pid: int) -> None:
        """Heartbeats while the daemon runs; if the client goes away, stop the daemon."""
        kill_at: float | None = None
        while True:
            if self.wait(lambda: self.exit_code is not None, HEARTBEAT_INTERVAL):
                return
            gone = False
            try:
                link.send({"type": "hb"}, HANDSHAKE_BOUND)
                gone = link.receive(0.0) is None
            except (OSError, ProtocolError):
                gone = True
            if gone and kill_at is None:
                self.log("mpi launch: the launching side went away; stopping the daemon")
                _stop_group(pid, signal.SIGTERM)
                kill_at = time.monotonic() + KILL_GRACE
            if kill_at is not None and time.monotonic() >= kill_at:
                _stop_group(pid, signal.SIGKILL)
                kill_at = float("inf")

    def _pump(self, pipe: Any, fd: int, link: LineSocket) -> None:
        sink = sys.stdout if fd == 1 else sys.stderr
        broken = False
        for chunk in iter(lambda: pipe.read1(65536), b""):
            sink.buffer.write(chunk)  # also in this container's log
            sink.buffer.flush()
            if not broken:
                try:
                    link.send({"type": "out", "fd": fd, "data": _b64(chunk)}, HANDSHAKE_BOUND)
                except OSError:
                    broken = True
        pipe.close()

    def _refuse(
        self, link: LineSocket, peer: str, op: object, code: str, reason: str, fix: str
    ) -> None:
        with self._cond:
            self.refusals += 1
        self.log(f"mpi launch: refused {op or 'a request'} from {peer}: {reason}")
        with contextlib.suppress(OSError):
            link.send({"type": "refused", "code": code, "reason": reason, "fix": fix},
                      HANDSHAKE_BOUND)


# -- clients -----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class _Inbox:
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
) -> tuple[_Inbox, dict[str, Any]]:
    """Connect and authenticate; returns the inbox and the server's `accepted` message."""
    where = f"the agent at {host}:{port}"
    sock = socket.create_connection((host, port), timeout=bound)
    inbox = _Inbox(LineSocket(sock))
    try:
        deadline = time.monotonic() + bound
        challenge = inbox.next(deadline, where)
        if challenge.get("protocol") != PROTOCOL:
            raise DiscoveryError(
                f"{where} speaks {challenge.get('protocol')!r}, this node {PROTOCOL!r}; "
                "use the same tfbuild version on every node"
            )
        fields = {"protocol": PROTOCOL, "op": op, "nonce": new_nonce(),
                  "from": socket.gethostname(), **extra}
        mac = join_mac(token, str(challenge.get("nonce")), fields)
        inbox.link.send({"type": "hello", **fields, "mac": mac}, bound)
        answer = inbox.next(deadline, where)
        if answer["type"] == "refused":
            raise LaunchRefused(
                f"{where} refused the MPI {op}: {answer.get('reason')}; {answer.get('fix')}"
            )
        expected = accept_mac(token, str(challenge.get("nonce")), fields["nonce"])
        if answer["type"] != "accepted" or not macs_equal(answer.get("mac"), expected):
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


def _stream(inbox: _Inbox, host: str, port: int, log: Callable[[str], None]) -> int:
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
