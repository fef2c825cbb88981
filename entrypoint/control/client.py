"""Joining the job: serve if this node should, connect, authenticate, wait until formed.

`join_rendezvous` is what both the rendezvous discovery source and `open_control`
(control.source) call; it returns the formed `ControlChannel`. Protocol, variables
and security model: docs/rendezvous.md.
"""

from __future__ import annotations

import errno
import ipaddress
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ..discovery.membership import Membership
from ..errors import ConfigError, DiscoveryError, DiscoveryTimeout, RendezvousAuthError
from . import handshake
from .channel import ControlChannel
from .config import ChannelSettings
from .server import RendezvousServer
from .wire import PROTOCOL, LineSocket, ProtocolError

LISTEN_BACKLOG = 1024
FIRST_RETRY_DELAY = 0.1
MAX_RETRY_DELAY = 2.0
CONNECT_ATTEMPT_BOUND = 5.0
SHOWN_NAMES = 10

def join_rendezvous(
    settings: ChannelSettings,
    log: Callable[[str], None],
    *,
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    hosts: tuple[str, ...] | None = None,
) -> ControlChannel:
    """Serve if this node should, join, and wait (at most `timeout` s) until the job formed.

    `hosts`, when discovery already knows them, only make timeout messages name the
    addresses of missing ranks.
    """
    say = _as_log(log)
    listener = _listener_if_serving(settings)
    server = None
    connect_host, advertise = settings.host, settings.advertise
    if listener is not None:
        server = RendezvousServer(
            listener,
            node_count=settings.node_count,
            token=settings.token,
            log=say,
            heartbeat_interval=settings.heartbeat_interval,
            heartbeat_misses=settings.heartbeat_misses,
        )
        server.start()
        connect_host = _local_address(listener)
        advertise = advertise or settings.host  # what the others dial is this node's address
        say(f"rendezvous: serving {settings.address} on this node for {settings.node_count} nodes")
    joiner = _Joiner(
        replace(settings, advertise=advertise), connect_host, say, sleep, monotonic, hosts, server
    )
    try:
        return joiner.run(timeout)
    except BaseException as e:
        if server is not None:
            why = "its own timeout ran out" if isinstance(e, DiscoveryTimeout) else str(e)
            server.stop(0.0, reason=f"the serving node gave up waiting ({why})")
        raise


# -- serving ---------------------------------------------------------------------------


def _listener_if_serving(settings: ChannelSettings) -> socket.socket | None:
    """A listening socket if this node serves, else None (it only joins)."""
    if settings.serve is False:
        return None
    try:
        infos = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        infos = []
    in_use = False
    for family, _, _, _, sockaddr in infos:
        # Binding succeeds only on the node that owns the address.
        sock, error = _listen(family, sockaddr)
        if sock is None:
            in_use = in_use or _is_in_use(error)
            continue
        if _is_ip(settings.host):
            return sock
        # A name can resolve to 127.0.1.1 on its own host (Debian's /etc/hosts)
        # while the others reach a real interface: listen on all of them.
        sock.close()
        sock, error = _listen(family, _wildcard(family, settings.port))
        if sock is not None:
            return sock
        if settings.serve is None and _is_in_use(error):
            return None  # another agent on this host got there first
        raise ConfigError(_cannot_listen_message(settings, error))
    if settings.serve is None:
        return None  # not our address, or another agent on this host serves it
    if in_use:
        raise ConfigError(_cannot_listen_message(settings, OSError(errno.EADDRINUSE, "in use")))
    # Told to serve but the address is not local (docker run -p on a bridge network).
    family = infos[0][0] if infos else socket.AF_INET
    sock, error = _listen(family, _wildcard(family, settings.port))
    if sock is None:
        raise ConfigError(_cannot_listen_message(settings, error))
    return sock


def _listen(family: int, sockaddr: Any) -> tuple[socket.socket | None, OSError | None]:
    sock = socket.socket(family, socket.SOCK_STREAM)
    # Lets a restarted serving node bind again while old connections sit in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(sockaddr)
        # With SO_REUSEADDR two agents can both bind; only one listen() succeeds.
        sock.listen(LISTEN_BACKLOG)
    except OSError as e:
        sock.close()
        return None, e
    return sock, None


def _wildcard(family: int, port: int) -> tuple[str, int]:
    return ("::" if family == socket.AF_INET6 else "0.0.0.0", port)


def _is_in_use(error: OSError | None) -> bool:
    return error is not None and error.errno == errno.EADDRINUSE


def _cannot_listen_message(settings: ChannelSettings, error: OSError | None) -> str:
    if _is_in_use(error):
        return (
            f"this node should serve the rendezvous at {settings.address} but port "
            f"{settings.port} is already in use here (another job's agent?); stop it or pick "
            "another port in TFBUILD_RENDEZVOUS=host:port (or TFBUILD_CONTROL_PORT) on every node"
        )
    why = (error.strerror if error is not None else None) or "unknown error"
    return (
        f"this node should serve the rendezvous at {settings.address} but cannot listen on "
        f"port {settings.port} ({why}); choose another port in TFBUILD_RENDEZVOUS / "
        "TFBUILD_CONTROL_PORT on every node"
    )


def _local_address(listener: socket.socket) -> str:
    host = listener.getsockname()[0]
    if host == "0.0.0.0":
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# -- joining ---------------------------------------------------------------------------


class _Retry(Exception):
    """This attempt failed in a way a later attempt may not (server not up, restarting)."""


@dataclass
class _Progress:
    have: int = 0
    names: list[str] = field(default_factory=list)
    missing_ranks: list[int] = field(default_factory=list)
    connected: bool = False


class _Joiner:
    """One node's bounded, retrying join; `run` returns the formed channel."""

    def __init__(
        self,
        settings: ChannelSettings,
        connect_host: str,
        say: Callable[[str], None],
        sleep: Callable[[float], None],
        monotonic: Callable[[], float],
        hosts: tuple[str, ...] | None,
        server: RendezvousServer | None,
    ) -> None:
        self.s = settings
        self.connect_host = connect_host
        self.say = say
        self.sleep = sleep
        self.monotonic = monotonic
        self.hosts = hosts
        self.server = server
        self.progress = _Progress()
        self.last_problem = "no attempt yet"
        self.in_session = False
        """True while connected and accepted: a timeout then needs no `last attempt` note."""
        self.server_stopped = ""
        """Why the serving node shut its server down, if it did while we waited."""
        self.start = 0.0
        self.next_log = 0.0
        self._pending: list[dict[str, Any]] = []
        """Messages read but not handled yet (they arrived with the one `_expect` wanted)."""

    def run(self, timeout: float) -> ControlChannel:
        self.start = self.monotonic()
        self.next_log = self.start + self.s.progress_interval
        deadline = self.start + timeout
        self.say(
            f"rendezvous: joining {self.s.address} as {self.s.identity!r} "
            f"({self.s.node_count} nodes expected, waiting up to {timeout:g} s)"
        )
        delay = FIRST_RETRY_DELAY
        while True:
            remaining = deadline - self.monotonic()
            if remaining <= 0:
                raise DiscoveryTimeout(self._timeout_message(timeout))
            try:
                return self._attempt(deadline)
            except _Retry as e:
                self.last_problem = str(e)
                self.in_session = False
            self._maybe_log(f"{self.s.address} not ready yet ({self.last_problem}); still trying")
            # Jitter spreads hundreds of retrying nodes over time instead of in waves.
            self.sleep(min(delay * random.uniform(0.5, 1.0), max(deadline - self.monotonic(), 0)))
            delay = min(delay * 1.6, MAX_RETRY_DELAY)

    def _attempt(self, deadline: float) -> ControlChannel:
        self._pending = []
        bound = max(min(deadline - self.monotonic(), CONNECT_ATTEMPT_BOUND), 0.05)
        try:
            sock = socket.create_connection((self.connect_host, self.s.port), timeout=bound)
        except OSError as e:
            raise _Retry(f"cannot connect: {_why(e)}") from None
        link = LineSocket(sock)
        try:
            return self._handshake(link, deadline)
        except (OSError, ProtocolError) as e:
            link.close()
            raise _Retry(f"connection failed: {_why(e)}") from None
        except BaseException:
            link.close()
            raise

    def _handshake(self, link: LineSocket, deadline: float) -> ControlChannel:
        opening = self._expect(link, deadline, ("challenge",))
        if opening.get("protocol") != PROTOCOL:
            raise DiscoveryError(
                f"the rendezvous server at {self.s.address} speaks "
                f"{opening.get('protocol')!r}, this node {PROTOCOL!r}; "
                "use the same tfbuild version on every node"
            )
        greeting = handshake.hello(
            self.s.token,
            "join",
            opening,
            {
                "protocol": PROTOCOL,
                "identity": self.s.identity,
                "node_rank": self.s.node_rank,
                "node_count": self.s.node_count,
                "advertise": self.s.advertise,
            },
        )
        link.send(greeting.message, self.s.loss_bound)
        link.secure(greeting.session(self.s.token, PROTOCOL), self._rejected, answer_pending=True)
        answer = self._expect(link, deadline, ("accepted", "refused"))
        if answer["type"] == "refused":
            raise self._refusal(answer)
        if not greeting.accepted_by_token_holder(self.s.token, answer):
            raise RendezvousAuthError(
                f"the server at {self.s.address} accepted this node but could not prove it "
                "holds the job token: it is not this job's rendezvous or its "
                "TFBUILD_JOB_TOKEN differs; check TFBUILD_RENDEZVOUS and TFBUILD_JOB_TOKEN"
            )
        self.progress.connected = self.in_session = True
        if "have" in answer:
            self._note_progress(answer)
        formed = self._expect(link, deadline, ("formed",), heartbeat=True)
        return self._channel(link, formed)

    def _rejected(self, message: dict[str, Any], why: str) -> None:
        self.say(
            f"rendezvous: ignored a {message.get('type')!r} message on the connection to "
            f"{self.s.address} that failed authentication: {why}"
        )

    def _expect(
        self, link: LineSocket, deadline: float, wanted: tuple[str, ...], heartbeat: bool = False
    ) -> dict:
        """Read until a message of a wanted type; heartbeats and progress pass by.

        With `heartbeat`, keep sending heartbeats: a joined node may wait a long time
        for the others, and the server drops members it does not hear from.
        """
        last_heard = last_sent = self.monotonic()
        while True:
            # One read can bring several messages (`accepted` and `formed` together):
            # what the previous call did not use comes first.
            messages, self._pending = self._pending, []
            if not messages:
                now = self.monotonic()
                if heartbeat and now - last_sent >= self.s.heartbeat_interval:
                    link.send({"type": "hb"}, self.s.loss_bound)
                    last_sent = now
                if now >= deadline:
                    raise DiscoveryTimeout(self._timeout_message(deadline - self.start))
                wait = self.s.heartbeat_interval - (now - last_sent if heartbeat else 0.0)
                # Read first, judge silence after: what is already in the socket counts
                # even when this thread was starved of CPU past the silence bound.
                received = link.receive(max(min(deadline - now, wait), 0.0))
                if received is None:
                    raise _Retry("the server closed the connection")
                if received:
                    last_heard = self.monotonic()
                elif self.monotonic() - last_heard > self.s.loss_bound:
                    silent = self.monotonic() - last_heard
                    raise _Retry(f"the server went silent for {silent:.1f} s")
                messages = received
            while messages:
                message = messages.pop(0)
                kind = message["type"]
                if kind in wanted:
                    self._pending = messages
                    return message
                if kind == "progress":
                    self._note_progress(message)
                elif kind == "closing":
                    self.server_stopped = str(message.get("reason"))
                    raise _Retry(f"the serving node stopped: {self.server_stopped}")
                elif kind == "superseded":
                    raise DiscoveryError(
                        f"the rendezvous at {self.s.address} dropped this node: "
                        f"{message.get('reason')}"
                    )
            if heartbeat:  # i.e. joined, waiting for the others
                self._maybe_log(self._waiting_text())

    def _channel(self, link: LineSocket, formed: dict[str, Any]) -> ControlChannel:
        hosts, rank = tuple(formed["hosts"]), formed["rank"]
        served = "served here" if self.server is not None else f"joined {self.s.address}"
        membership = Membership(
            source="rendezvous",
            hosts=hosts,
            node_rank=rank,
            evidence=(
                ("TFBUILD_RENDEZVOUS", self.s.address),
                ("identity", self.s.identity),
                ("role", served),
            ),
        )
        self.say(
            f"rendezvous: job formed after {self.monotonic() - self.start:.1f} s; "
            f"this node {self.s.identity!r} is rank {rank} of {len(hosts)}"
        )
        return ControlChannel(
            link,
            membership=membership,
            identity=self.s.identity,
            server_address=self.s.address,
            heartbeat_interval=self.s.heartbeat_interval,
            loss_bound=self.s.loss_bound,
            log=self.say,
            pending=self._pending,
            server=self.server,
        )

    def _refusal(self, answer: dict[str, Any]) -> Exception:
        reason, fix = answer.get("reason", "no reason given"), answer.get("fix", "")
        text = (
            f"the rendezvous server at {self.s.address} refused this node "
            f"({self.s.identity!r}): {reason}" + (f"; {fix}" if fix else "")
        )
        if answer.get("code") == "bad_token":
            return RendezvousAuthError(text)
        return DiscoveryError(text)

    def _note_progress(self, message: dict[str, Any]) -> None:
        self.progress.have = int(message.get("have", 0))
        self.progress.names = [str(n) for n in message.get("names", [])]
        self.progress.missing_ranks = [int(r) for r in message.get("missing_ranks", [])]

    def _waiting_text(self) -> str:
        p, n = self.progress, self.s.node_count
        return (
            f"{p.have} of {n} nodes joined {self.s.address} ({_names(p.names, p.have)}); "
            f"waiting for {n - p.have} more{self._missing_ranks_text()}"
        )

    def _missing_ranks_text(self) -> str:
        ranks = self.progress.missing_ranks
        if not ranks:
            return ""
        shown = [
            f"{r} ({self.hosts[r]})" if self.hosts and r < len(self.hosts) else str(r)
            for r in ranks[:SHOWN_NAMES]
        ]
        more = f" and {len(ranks) - SHOWN_NAMES} more" if len(ranks) > SHOWN_NAMES else ""
        return f": rank {', '.join(shown)}{more}"

    def _maybe_log(self, text: str) -> None:
        now = self.monotonic()
        if now >= self.next_log:
            self.say(f"rendezvous: after {now - self.start:.0f} s, {text}")
            self.next_log = now + self.s.progress_interval

    def _timeout_message(self, waited: float) -> str:
        if not self.progress.connected:
            return (
                f"no rendezvous server answered at {self.s.address} within {waited:g} s "
                f"(last attempt: {self.last_problem}). Start the serving node (the one that "
                f"owns {self.s.host}, or the one with TFBUILD_NODE_RANK=0 or "
                f"TFBUILD_RENDEZVOUS_SERVE=1), check that port {self.s.port} is reachable "
                "from this node, or allow more time"
            )
        last = "" if self.in_session else f" (last attempt: {self.last_problem})"
        if self.server_stopped and not self.in_session:
            last = (
                f" (the serving node stopped: {self.server_stopped}; last attempt: "
                f"{self.last_problem})"
            )
        return (
            f"the job did not form within {waited:g} s: {self._waiting_text()}{last}. Start the "
            f"missing nodes with TFBUILD_RENDEZVOUS={self.s.address}, "
            f"TFBUILD_NODES={self.s.node_count} and the same TFBUILD_JOB_TOKEN, "
            "or allow more time"
        )


def _names(names: list[str], have: int) -> str:
    if not names:
        return "none yet"
    more = f" and {have - len(names)} more" if have > len(names) else ""
    return ", ".join(names) + more


def _why(e: BaseException) -> str:
    if isinstance(e, socket.timeout):
        return "timed out"
    if isinstance(e, socket.gaierror):
        return f"cannot resolve the name ({e.strerror})"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return str(e) or type(e).__name__


def _as_log(log: Any) -> Callable[[str], None]:
    """Accepts a logging.Logger as well as a plain callable taking one string."""
    return getattr(log, "info", log)
