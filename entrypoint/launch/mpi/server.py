"""The serving end of the MPI launch channel (mpi_channel has the protocol and the
clients): authenticate every request, run Open MPI's daemon once, keep the job result."""

from __future__ import annotations

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
from typing import Any

from ...control import handshake
from ...control.wire import (
    MAX_LINE,
    MAX_UNAUTHENTICATED_LINE,
    LineReader,
    LineSocket,
    ProtocolError,
    Session,
)
from ...errors import DiscoveryError
from .channel import (
    DAEMONS,
    HANDSHAKE_BOUND,
    HEARTBEAT_INTERVAL,
    KILL_GRACE,
    LOST_EXIT,
    MAX_CONNECTIONS,
    OPS,
    PROTOCOL,
    Inbox,
    JobResult,
    b64,
)


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
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

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
            if not self._slots.acquire(blocking=False):
                self.log(f"mpi launch: dropped {peer}: {MAX_CONNECTIONS} connections are open")
                conn.close()
                continue
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
            self._slots.release()

    def _handshake(self, link: LineSocket, peer: str) -> tuple[dict[str, Any] | None, str]:
        opening, nonce = handshake.challenge(PROTOCOL)
        link.send(opening, HANDSHAKE_BOUND)
        hello = Inbox(link).next(time.monotonic() + HANDSHAKE_BOUND, f"peer {peer}")
        op = hello.get("op")
        checked = handshake.check_hello(self.token, PROTOCOL, "hello", nonce, hello)
        if checked.fields is None:
            self._refuse(link, peer, op, checked.code, checked.reason, checked.fix)
            return None, nonce
        if op not in OPS:
            self._refuse(link, peer, op, "op", f"operation {op!r} is unknown",
                         f"use one of {', '.join(OPS)}")
            return None, nonce
        link.reader.limit = MAX_LINE
        return hello, nonce

    def _dispatch(self, link: LineSocket, peer: str, hello: dict[str, Any], nonce: str) -> None:
        fields = {k: v for k, v in hello.items() if k not in ("type", "mac")}
        accepted, session = handshake.accepted(self.token, PROTOCOL, nonce, fields)
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
            self._exec(link, peer, hello, accepted, session)

    def _secure(self, link: LineSocket, peer: str, session: Session) -> None:
        def rejected(message: dict[str, Any], why: str) -> None:
            self.log(f"mpi launch: ignored a {message.get('type')!r} message from {peer} "
                     f"that failed authentication: {why}")

        link.secure(session, rejected)

    def _exec(
        self,
        link: LineSocket,
        peer: str,
        hello: dict[str, Any],
        accepted: dict[str, Any],
        session: Session,
    ) -> None:
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
        self._secure(link, peer, session)  # the daemon's output and exit code are sealed
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
            link.send({"type": "out", "fd": 2, "data": b64(f"tfbuild-agent: {e}\n".encode())},
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
                    link.send({"type": "out", "fd": fd, "data": b64(chunk)}, HANDSHAKE_BOUND)
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
