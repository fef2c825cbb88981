"""The job control channel as one node sees it, once the job has formed.

Every agent holds one `ControlChannel`: it reports how its tasks ended and learns
what happened elsewhere (`Event`s): the job finished, a task failed, a node was
lost, the serving node went away. A background thread sends heartbeats and turns
silence from the serving node into a `server_lost` event within a bound.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..discovery.membership import Membership
from .server import RendezvousServer
from .wire import LineSocket, ProtocolError

EVENT_KINDS = ("finished", "failed", "completed", "canceled", "lost", "rejoined", "server_lost")
JOB_ENDING = ("finished", "failed", "lost", "server_lost")
BYE_BOUND = 2.0
"""How long a leaving node waits for the server to answer its goodbye (it needs nothing
more from the server, so this only avoids a connection reset)."""
REPORT_STATUSES = ("completed", "failed", "canceled")
"""Run-record statuses a task can end with (any case)."""


@dataclass(frozen=True)
class Event:
    """Something another node (or the channel itself) says about the job.

    finished:    the decisive task succeeded; stop servers (ps) and exit 0.
    failed:      `task` failed with `exit_code`; stop and exit non-zero naming it.
    lost:        node `identity` (rank `rank`) vanished without a goodbye.
    server_lost: this node lost the channel (the serving node died, shut down, or
                 dropped this node). Expected, and harmless, after `finished`.
    completed, canceled, rejoined: for the log; the job goes on.
    """

    kind: str
    message: str
    task: str | None = None
    exit_code: int | None = None
    identity: str | None = None
    rank: int | None = None

    @property
    def ends_job(self) -> bool:
        return self.kind in JOB_ENDING


class ControlChannel:
    """This node's end of the channel; `link` is None for a single-node job."""

    def __init__(
        self,
        link: LineSocket | None,
        *,
        membership: Membership,
        identity: str,
        server_address: str,
        heartbeat_interval: float,
        loss_bound: float,
        log: Callable[[str], None],
        pending: Iterable[dict[str, Any]] = (),
        server: RendezvousServer | None = None,
        decisive_task: str | None = None,
    ) -> None:
        self.membership = membership
        self.identity = identity
        self.decisive_task = decisive_task
        """Task whose success finishes the job (Plan.decisive_task); set before reporting."""
        self.server_address = server_address
        self._link = link
        self._server = server
        self._interval = heartbeat_interval
        self._loss_bound = loss_bound
        self._log = log
        self._events: queue.Queue[Event] = queue.Queue()
        self._closing = threading.Event()
        """Set once this end stops using the link: close() was called or the link was lost."""
        self._closed = False
        self._leaving = threading.Event()
        """Set by close(): the watcher reads to the server's end of stream, judges nothing."""
        self._thread: threading.Thread | None = None
        for message in pending:
            self._dispatch(message)
        if link is not None:
            self._thread = threading.Thread(
                target=self._watch, name=f"tfbuild-control-{identity}", daemon=True
            )
            self._thread.start()

    @classmethod
    def solo(cls, membership: Membership, log: Callable[[str], None]) -> ControlChannel:
        """A channel with nobody to talk to: reports go nowhere, no event ever comes."""
        return cls(
            None,
            membership=membership,
            identity="local",
            server_address="",
            heartbeat_interval=1.0,
            loss_bound=1.0,
            log=log,
        )

    @property
    def serving(self) -> bool:
        return self._server is not None

    def report(self, task: str, status: str, exit_code: int | None) -> None:
        """Tell every other node how `task` ended (status as in the run record)."""
        status = status.lower()
        if status not in REPORT_STATUSES:
            raise ValueError(f"status {status!r} is not one of {', '.join(REPORT_STATUSES)}")
        kind = "finished" if status == "completed" and task == self.decisive_task else status
        if self._link is None or self._closing.is_set():
            return
        message = {"type": "report", "task": task, "kind": kind, "exit_code": exit_code}
        try:
            self._link.send(message, self._loss_bound)
        except OSError as e:
            # The watcher reports the lost channel itself; a report has no one to reach.
            self._log(f"control: could not report {task} {kind} to {self.server_address}: {e}")

    def next_event(self, timeout: float) -> Event | None:
        """The next event, waiting at most `timeout` seconds; None if nothing happened."""
        try:
            return self._events.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None

    def close(
        self, linger: float | None = None, stop: Callable[[], bool] = lambda: False
    ) -> None:
        """Say goodbye (so this node is not reported lost) and let go of the channel.

        On the serving node this also stops the server once every other member has
        finished, departed or was lost (see docs/rendezvous.md); `linger` bounds that
        wait when given, and `stop()` turning true (a user's SIGTERM) ends it at once.
        """
        if self._closed:
            return
        self._closed = True
        link_alive = not self._closing.is_set()
        if link_alive:
            self._leaving.set()  # before _closing: the watcher must drain, not just stop
        self._closing.set()
        if self._link is not None and link_alive:
            # Goodbye, then a graceful close: the server answers `bye` and closes its
            # side; reading to that end means no reset, so nothing in flight is lost.
            # This node needs nothing more from the server: the wait is short and bounded.
            try:
                self._link.send({"type": "bye"}, min(self._loss_bound, BYE_BOUND))
                self._link.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            if self._thread is not None:
                self._thread.join(BYE_BOUND)
            with contextlib.suppress(OSError):
                self._link.sock.shutdown(socket.SHUT_RDWR)  # wakes a watcher still polling
            if self._thread is not None:
                self._thread.join(1.0)
            self._link.close()
        if self._server is not None:
            self._server.stop(
                linger,
                reason=f"node {self.identity} finished its tasks",
                interrupted=stop,
            )

    # -- the watcher thread ---------------------------------------------------------

    def _watch(self) -> None:
        assert self._link is not None
        last_sent = last_heard = time.monotonic()
        while True:
            if self._leaving.is_set():
                self._drain_to_end()
                return
            if self._closing.is_set():
                return
            now = time.monotonic()
            if now - last_sent >= self._interval:
                try:
                    self._link.send({"type": "hb"}, self._loss_bound)
                except OSError as e:
                    self._lose(f"sending a heartbeat to it failed ({e})")
                    return
                last_sent = now
            wait = min(self._interval - (now - last_sent), self._loss_bound - (now - last_heard))
            try:
                messages = self._link.receive(max(wait, 0.01))
            except (OSError, ProtocolError) as e:
                if not self._leaving.is_set():
                    self._lose(f"the connection failed ({e})")
                return
            if self._leaving.is_set():
                continue
            if self._closing.is_set():
                return
            if messages is None:
                self._lose("it closed the connection without a goodbye")
                return
            now = time.monotonic()
            if messages:
                last_heard = now
            for message in messages:
                if not self._dispatch(message):
                    return
            if now - last_heard > self._loss_bound:
                self._lose(f"nothing heard from it for {now - last_heard:.1f} s")
                return

    def _drain_to_end(self) -> None:
        """After our goodbye: read (and drop) until the server's end of stream."""
        assert self._link is not None
        deadline = time.monotonic() + BYE_BOUND
        while time.monotonic() < deadline:
            try:
                if self._link.receive(deadline - time.monotonic()) is None:
                    return
            except (OSError, ProtocolError):
                return

    def _dispatch(self, message: dict[str, Any]) -> bool:
        """Handle one message; False once the channel is over."""
        kind = message["type"]
        if kind == "event" and message.get("kind") in EVENT_KINDS:
            self._events.put(
                Event(
                    kind=message["kind"],
                    message=str(message.get("message", "")),
                    task=message.get("task"),
                    exit_code=message.get("exit_code"),
                    identity=message.get("identity"),
                    rank=message.get("rank"),
                )
            )
        elif kind in ("closing", "superseded"):
            self._lose(str(message.get("reason", "")), orderly=True)
            return False
        return True

    def _lose(self, why: str, orderly: bool = False) -> None:
        if self._closing.is_set():
            return
        self._closing.set()
        what = "ended the job channel" if orderly else "is lost"
        text = f"the serving node at {self.server_address} {what}: {why}"
        self._log(f"control: {text}")
        self._events.put(Event(kind="server_lost", message=text))
        if self._link is not None:
            self._link.close()
