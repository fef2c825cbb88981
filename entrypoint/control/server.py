"""The serving side of the rendezvous and job control channel.

One thread, one selector, non-blocking sockets: it authenticates joins, waits until
the expected number of nodes is there, assigns ranks from stable identities, then
relays task reports, watches heartbeats and tells everyone when a node is lost.
All state below is touched by the server thread only; `stop()` just wakes it.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import handshake
from .state import DEPART, FORGET, LOSE, Ledger
from .wire import (
    MAX_UNAUTHENTICATED_LINE,
    PROTOCOL,
    LineReader,
    ProtocolError,
    Session,
    encode,
)

REPORT_KINDS = ("finished", "failed", "completed", "canceled")
"""What a member may report; `finished` = the decisive task succeeded."""
FLUSH_BOUND = 2.0
"""How long a closing server keeps trying to deliver its last messages."""
PROGRESS_PUSH_INTERVAL = 0.25
"""While forming, waiting nodes hear who is there at most this often (not per join:
with hundreds of nodes that would be quadratic)."""
SHOWN_NAMES = 10


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    peer: str
    nonce: str
    opened: float
    last_recv: float
    reader: LineReader = field(default_factory=lambda: LineReader(MAX_UNAUTHENTICATED_LINE))
    outbuf: bytearray = field(default_factory=bytearray)
    member: _Member | None = None
    session: Session | None = None
    """Set once the join passed: from then on every message both ways is sealed."""
    broken: str = ""
    """Sending to it failed (why): nothing more is sent, but what it already sent is still
    read until its connection ends, so a goodbye in flight still counts."""
    finishing: bool = False
    """Its last message is queued: once sent, shut down writing and wait for the peer's EOF
    (closing straight away could reset the connection before the peer reads it)."""


@dataclass(eq=False)
class _Member:
    key: str
    """`rank:N` for an explicit rank, else `id:<identity>`: what a rejoin must match."""
    identity: str
    explicit_rank: int | None
    address: str
    conn: _Conn | None
    rank: int | None = None
    left: bool = False
    """Said goodbye: its tasks ended cleanly, so a dropped connection is not a loss."""

    def label(self) -> str:
        if self.rank is None:
            return f"node {self.identity}"
        return f"node {self.identity} (rank {self.rank})"


class RendezvousServer:
    """Serves one job on an already bound listening socket."""

    def __init__(
        self,
        listener: socket.socket,
        *,
        node_count: int,
        token: str | None,
        log: Callable[[str], None],
        heartbeat_interval: float,
        heartbeat_misses: int,
    ) -> None:
        self.node_count = node_count
        self._listener = listener
        self._token = token
        self._log = log
        self._interval = heartbeat_interval
        self._loss_bound = heartbeat_interval * heartbeat_misses
        self._handshake_bound = max(2 * self._loss_bound, 10.0)
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._conns: dict[socket.socket, _Conn] = {}
        self._members: dict[str, _Member] = {}
        self._by_rank: list[_Member] = []
        self._ended: dict[str, Any] | None = None
        self._ledger = Ledger()
        self._last_heartbeat = 0.0
        self._last_progress = 0.0
        self._progress_dirty = False
        self._stop_at: float | None = None
        self._stop_reason = ""
        self._stop_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="tfbuild-rendezvous", daemon=True)

    @property
    def formed(self) -> bool:
        return bool(self._by_rank)

    def start(self) -> None:
        self._listener.setblocking(False)
        self._sel.register(self._listener, selectors.EVENT_READ)
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self._thread.start()

    def stop(
        self,
        linger: float | None = 0.0,
        reason: str = "the serving node shut down",
        interrupted: Callable[[], bool] = lambda: False,
    ) -> None:
        """Close once no member is still joined or running (each either finished, departed
        or was lost: liveness bounds that), or after `linger` seconds if given, or as soon
        as `interrupted()` turns true."""
        deadline = float("inf") if linger is None else time.monotonic() + max(linger, 0.0)
        with self._stop_lock:
            if self._stop_at is None:
                self._stop_at = deadline
                self._stop_reason = reason
        self._wake()
        if linger is not None:
            self._thread.join(linger + FLUSH_BOUND + 1.0)
            return
        waiting_since, next_note = time.monotonic(), time.monotonic() + 10.0
        while self._thread.is_alive():
            self._thread.join(0.25)
            if interrupted():
                with self._stop_lock:
                    self._stop_at = time.monotonic()
                self._wake()
                self._thread.join(FLUSH_BOUND + 1.0)
                return
            if time.monotonic() >= next_note:
                next_note += 30.0
                self._log(
                    f"rendezvous: this node's tasks ended {time.monotonic() - waiting_since:.0f}"
                    f" s ago; serving until the other nodes finish "
                    f"({self._ledger.count('running')} still running)"
                )

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # the thread may have ended and closed it
            self._wake_w.send(b"x")

    # -- the loop -------------------------------------------------------------------

    def _run(self) -> None:
        tick = min(self._interval / 2, PROGRESS_PUSH_INTERVAL)
        next_housekeeping = 0.0
        try:
            while not self._should_close():
                for key, events in self._sel.select(tick):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.fileobj is self._wake_r:
                        self._drain_wakeups()
                    else:
                        self._service(key.fileobj, events)
                # Once per tick, not per wakeup: a burst of joins wakes the loop
                # hundreds of times, and each housekeeping pass visits every connection.
                if time.monotonic() >= next_housekeeping:
                    self._housekeeping()
                    next_housekeeping = time.monotonic() + tick
        finally:
            self._close_all()

    def _should_close(self) -> bool:
        if self._stop_at is None:
            return False
        if time.monotonic() >= self._stop_at:
            return True
        return self._ledger.may_close()

    def _accept(self) -> None:
        while True:
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # out of file descriptors and the like: keep serving
                self._log(f"rendezvous: could not accept a connection: {e}")
                return
            sock.setblocking(False)
            now = time.monotonic()
            opening, nonce = handshake.challenge(PROTOCOL)
            conn = _Conn(sock=sock, peer=addr[0], nonce=nonce, opened=now, last_recv=now)
            self._conns[sock] = conn
            self._sel.register(sock, selectors.EVENT_READ)
            self._send(conn, opening)

    def _drain_wakeups(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_r.recv(4096)

    def _service(self, sock: Any, events: int) -> None:
        conn = self._conns.get(sock)
        if conn is None:
            return
        if events & selectors.EVENT_WRITE:
            self._flush(conn)
        if events & selectors.EVENT_READ and sock in self._conns:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self._drop(conn, f"its connection failed ({e.strerror or e})")
                return
            if not data:
                self._drop(conn, conn.broken or "its connection closed without a goodbye")
                return
            conn.last_recv = time.monotonic()
            if conn.finishing:
                return  # nothing it says matters any more; wait for its EOF
            try:
                messages = conn.reader.feed(data)
            except ProtocolError as e:
                self._drop(conn, f"it sent {e}")
                return
            for message in messages:
                if sock not in self._conns:
                    return
                if conn.session is not None:
                    problem = conn.session.check(message)
                    if problem is not None:
                        self._log(
                            f"rendezvous: ignored a {message['type']!r} message from "
                            f"{conn.peer} that failed authentication: {problem}"
                        )
                        continue
                self._handle(conn, message)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        send_heartbeat = now - self._last_heartbeat >= self._interval
        if send_heartbeat:
            self._last_heartbeat = now
        for conn in list(self._conns.values()):
            if conn.member is None:
                if now - conn.opened > self._handshake_bound:
                    self._drop(
                        conn, f"it did not finish the handshake in {self._handshake_bound:g} s"
                    )
            elif now - conn.last_recv > self._loss_bound:
                # Read what is already waiting before judging silence: this thread may
                # have been starved of CPU while the member kept talking.
                self._service(conn.sock, selectors.EVENT_READ)
                silent = time.monotonic() - conn.last_recv
                if conn.sock in self._conns and silent > self._loss_bound:
                    self._drop(conn, f"it sent nothing for {silent:.1f} s")
            elif send_heartbeat:
                self._send(conn, {"type": "hb"})
        if self._progress_dirty and now - self._last_progress >= PROGRESS_PUSH_INTERVAL:
            self._progress_dirty = False
            self._last_progress = now
            if not self.formed:
                self._broadcast(self._progress(), skip=None)

    def _progress(self) -> dict[str, Any]:
        members = list(self._members.values())
        message: dict[str, Any] = {
            "type": "progress",
            "have": len(members),
            "names": sorted(m.identity for m in members)[:SHOWN_NAMES],
        }
        if members and all(m.explicit_rank is not None for m in members):
            taken = {m.explicit_rank for m in members}
            message["missing_ranks"] = [r for r in range(self.node_count) if r not in taken]
        return message

    # -- messages -------------------------------------------------------------------

    def _handle(self, conn: _Conn, message: dict[str, Any]) -> None:
        kind = message["type"]
        if conn.member is None:
            if kind == "join":
                self._join(conn, message)
            else:
                self._log(f"rendezvous: dropped {conn.peer}: it sent {kind!r} before joining")
                self._drop(conn, f"it sent {kind!r} before joining")
        elif kind == "hb":
            pass
        elif kind == "report":
            self._report(conn.member, message)
        elif kind == "bye":
            conn.member.left = True
            self._ledger.goodbye(conn.member.key)
            # Answer, then half-close: the member reads to our EOF and closes without a
            # reset, so nothing it sent before is lost and nothing is judged a loss.
            self._finish(conn, {"type": "bye"})
        else:
            self._log(f"rendezvous: ignored unknown message {kind!r} from {conn.member.label()}")

    def _join(self, conn: _Conn, message: dict[str, Any]) -> None:
        checked = handshake.check_hello(self._token, PROTOCOL, "join", conn.nonce, message)
        if checked.fields is None:
            self._refuse(conn, checked.code, checked.reason, checked.fix)
            return
        fields = checked.fields
        problem = self._join_problem(fields)
        if problem:
            self._refuse(conn, "config", *problem)
            return
        identity, rank = fields["identity"], fields.get("node_rank")
        address = fields.get("advertise") or conn.peer
        key = f"rank:{rank}" if rank is not None else f"id:{identity}"
        if self.formed:
            self._rejoin(conn, key, identity, address, fields)
            return
        self._accept_join(conn, fields)
        old = self._members.get(key)
        if old is not None and old.conn is not None:
            self._supersede(old, conn)
        self._members[key] = _Member(key, identity, rank, address, conn)
        conn.member = self._members[key]
        self._ledger.join(key)
        self._progress_dirty = True
        if len(self._members) == self.node_count:
            self._form()

    def _accept_join(self, conn: _Conn, fields: dict[str, Any]) -> None:
        conn.reader.limit = LineReader().limit  # authenticated: allow full-size lines
        extra = self._progress() if not self.formed else {}
        extra.pop("type", None)
        message, conn.session = handshake.accepted(
            self._token, PROTOCOL, conn.nonce, fields, **extra
        )
        self._send_bytes(conn, encode(message))  # the one unsealed answer: it has its own MAC

    def _join_problem(self, fields: dict[str, Any]) -> tuple[str, str] | None:
        identity, rank, count = (
            fields.get("identity"),
            fields.get("node_rank"),
            fields.get("node_count"),
        )
        if not isinstance(identity, str) or not identity or len(identity) > 256:
            return (
                "its node identity is empty or longer than 256 characters",
                "set TFBUILD_NODE_ID to a short unique name",
            )
        if count != self.node_count:
            return (
                f"it expects {count} nodes but this job has {self.node_count}",
                "set TFBUILD_NODES to the same number on every node",
            )
        if rank is not None and (not isinstance(rank, int) or not 0 <= rank < self.node_count):
            return (
                f"its node rank {rank!r} is outside 0..{self.node_count - 1}",
                "fix TFBUILD_NODE_RANK on that node",
            )
        return None

    def _rejoin(
        self, conn: _Conn, key: str, identity: str, address: str, fields: dict[str, Any]
    ) -> None:
        member = self._members.get(key)
        if member is None:  # e.g. it formed without an explicit rank and now has one
            member = next((m for m in self._by_rank if m.identity == identity), None)
            if member is not None and key != f"rank:{member.rank}" and key.startswith("rank:"):
                member = None
        if member is None:
            known = ", ".join(m.identity for m in self._by_rank)
            self._refuse(
                conn,
                "unknown_node",
                f"the job already formed with {self.node_count} nodes ({known}) "
                f"and {identity!r} is not one of them",
                "a restarted node must keep its TFBUILD_NODE_ID (or hostname); "
                "a new node needs a new job",
            )
            return
        self._accept_join(conn, fields)
        if member.conn is not None:
            self._supersede(member, conn)
        member.conn, member.identity, member.address, member.left = conn, identity, address, False
        conn.member = member
        self._ledger.join(member.key)
        self._log(f"rendezvous: {member.label()} rejoined from {address}")
        self._send(conn, self._formed_message(member))
        if self._ended is not None:
            self._send(conn, self._ended)
        self._broadcast(
            {
                "type": "event",
                "kind": "rejoined",
                "identity": identity,
                "rank": member.rank,
                "host": address,
                "message": f"{member.label()} rejoined from {address}",
            },
            skip=member,
        )

    def _form(self) -> None:
        members = list(self._members.values())
        slots: list[_Member | None] = [None] * self.node_count
        for m in members:
            if m.explicit_rank is not None:
                slots[m.explicit_rank] = m
        # Ranks follow sorted identities, not arrival order, so a restarted node
        # that keeps its identity lands on the same rank.
        free = iter(i for i, m in enumerate(slots) if m is None)
        for m in sorted((m for m in members if m.explicit_rank is None), key=lambda m: m.identity):
            slots[next(free)] = m
        self._by_rank = [m for m in slots if m is not None]
        self._ledger.form()
        for rank, m in enumerate(self._by_rank):
            m.rank = rank
        self._log(
            f"rendezvous: job formed with {self.node_count} nodes: "
            + ", ".join(f"{m.identity}={m.address}" for m in self._by_rank[:16])
            + (f" and {self.node_count - 16} more" if self.node_count > 16 else "")
        )
        for m in self._by_rank:
            if m.conn is not None:
                self._send(m.conn, self._formed_message(m))

    def _formed_message(self, member: _Member) -> dict[str, Any]:
        return {
            "type": "formed",
            "rank": member.rank,
            "hosts": [m.address for m in self._by_rank],
            "identities": [m.identity for m in self._by_rank],
        }

    def _report(self, member: _Member, message: dict[str, Any]) -> None:
        kind = message.get("kind")
        if kind not in REPORT_KINDS:
            self._log(f"rendezvous: ignored report {kind!r} from {member.label()}")
            return
        task, code = str(message.get("task")), message.get("exit_code")
        where = f"on {member.label()}"
        text = {
            "finished": f"task {task} succeeded {where}: the job is finished",
            "failed": f"task {task} failed with exit code {code} {where}",
            "completed": f"task {task} completed {where}",
            "canceled": f"task {task} was canceled {where}",
        }[kind]
        event = {
            "type": "event",
            "kind": kind,
            "task": task,
            "exit_code": code,
            "identity": member.identity,
            "rank": member.rank,
            "message": text,
        }
        if self._ledger.report(member.key, kind):
            self._log(f"rendezvous: {text}")
            self._ended = event
        self._broadcast(event, skip=member)

    # -- connections ----------------------------------------------------------------

    def _refuse(self, conn: _Conn, code: str, reason: str, fix: str) -> None:
        self._log(f"rendezvous: refused join from {conn.peer}: {reason}")
        self._finish(conn, {"type": "refused", "code": code, "reason": reason, "fix": fix})

    def _supersede(self, old: _Member, new: _Conn) -> None:
        assert old.conn is not None
        self._log(
            f"rendezvous: {old.label()} joined again from {new.peer}; "
            f"dropping its previous connection from {old.conn.peer}"
        )
        conn, old.conn = old.conn, None
        conn.member = None
        self._finish(
            conn,
            {
                "type": "superseded",
                "reason": f"another agent joined as {old.identity!r} from {new.peer}; if that is a "
                "different node, give every node its own TFBUILD_NODE_ID",
            },
        )

    def _finish(self, conn: _Conn, last: dict[str, Any]) -> None:
        conn.finishing = True
        conn.opened = time.monotonic()  # the handshake bound now limits the wait for its EOF
        self._send(conn, last)

    def _drop(self, conn: _Conn, why: str) -> None:
        """A connection ended or went silent; if it was a member, decide what that means."""
        member = conn.member
        self._close(conn)
        if member is None or member.conn is not conn:
            return
        member.conn = None
        verdict = self._ledger.connection_ended(member.key)
        if verdict == FORGET:
            del self._members[member.key]
            self._progress_dirty = True
            self._log(f"rendezvous: {member.label()} went away before the job formed: {why}")
            return
        if verdict == DEPART:
            return
        if verdict != LOSE:
            return
        text = f"{member.label()} lost: {why}"
        self._log(f"rendezvous: {text}")
        self._broadcast(
            {
                "type": "event",
                "kind": "lost",
                "identity": member.identity,
                "rank": member.rank,
                "message": text,
            },
            skip=member,
        )

    def _broadcast(self, message: dict[str, Any], skip: _Member | None) -> None:
        for m in self._members.values():
            if m is not skip and m.conn is not None:
                self._send(m.conn, message)

    def _send(self, conn: _Conn, message: dict[str, Any]) -> None:
        if conn.session is not None:
            message = conn.session.seal(message)
        self._send_bytes(conn, encode(message))

    def _send_bytes(self, conn: _Conn, data: bytes) -> None:
        if conn.broken:
            return
        was_empty = not conn.outbuf
        conn.outbuf += data
        if was_empty:
            self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        try:
            while conn.outbuf:
                sent = conn.sock.send(conn.outbuf)
                del conn.outbuf[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as e:
            # Not a verdict yet: a member that said goodbye and closed makes sends fail
            # too. Stop sending, keep reading; its connection's end decides.
            conn.broken = f"sending to it failed ({e.strerror or e})"
            conn.outbuf.clear()
            if conn.sock in self._conns:
                self._sel.modify(conn.sock, selectors.EVENT_READ)
            return
        if conn.sock not in self._conns:
            return
        if not conn.outbuf and conn.finishing:
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                self._close(conn)
                return
        wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outbuf else 0)
        if self._sel.get_key(conn.sock).events != wanted:
            self._sel.modify(conn.sock, wanted)

    def _close(self, conn: _Conn) -> None:
        if self._conns.pop(conn.sock, None) is None:
            return
        self._sel.unregister(conn.sock)
        conn.sock.close()

    def _close_all(self) -> None:
        """Tell whoever is still connected why the channel ends, then close everything."""
        for sock in (self._listener, self._wake_r):
            self._sel.unregister(sock)
            sock.close()
        self._wake_w.close()
        closing = {"type": "closing", "reason": self._stop_reason or "the server stopped"}
        for conn in list(self._conns.values()):
            if not conn.finishing:
                conn.member = None  # what happens now is no loss: the server is going away
                self._finish(conn, closing)
        # Clients close on `closing`; their EOF tells us the message arrived.
        deadline = time.monotonic() + FLUSH_BOUND
        while self._conns and time.monotonic() < deadline:
            for key, events in self._sel.select(0.05):
                self._service(key.fileobj, events)
        for conn in list(self._conns.values()):
            self._close(conn)
        self._sel.close()
