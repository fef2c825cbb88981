"""Shared by test_rendezvous.py and test_control.py: form jobs of agent threads on 127.0.0.1."""

from __future__ import annotations

import random
import socket
import threading
import time

from tfbuild_agent.control.channel import ControlChannel, Event
from tfbuild_agent.control.client import join_rendezvous
from tfbuild_agent.control.config import ChannelSettings

HB = {"heartbeat_interval": 0.2, "heartbeat_misses": 3}  # loss bound 0.6 s
TOKEN = f"job-token-{random.getrandbits(64):x}"
"""Per test run, so a concurrent run of these tests elsewhere on the machine never mixes in."""


def free_port() -> int:
    """A free port below Linux's ephemeral range (32768+): a port from the ephemeral range
    can be taken by some client socket before the server binds it, and a client retrying
    against an ephemeral port can even connect to itself."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 32000 on 127.0.0.1")


class Logs:
    """Collects every node's log lines, thread-safe."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self._lock:
            self.lines.append(line)

    def matching(self, text: str) -> list[str]:
        with self._lock:
            return [line for line in self.lines if text in line]


def settings(port: int, identity: str, n: int, **kw) -> ChannelSettings:
    kw.setdefault("token", TOKEN)
    return ChannelSettings(
        host="127.0.0.1", port=port, node_count=n, identity=identity, **{**HB, **kw}
    )


def form(
    port: int,
    identities: list[str],
    n: int | None = None,
    *,
    timeout: float = 15.0,
    stagger: float = 0.0,
    log: Logs | None = None,
    server: str | None = None,
    **kw,
) -> dict[str, ControlChannel]:
    """Join every identity from its own thread, in the order given; raise the first error.

    `server` names the node that serves; by default whichever binds the port first.
    """
    n = n or len(identities)
    channels: dict[str, ControlChannel] = {}
    errors: list[BaseException] = []
    log = log or Logs()

    def run(identity: str) -> None:
        mine = dict(kw, serve=identity == server) if server is not None else kw
        try:
            channels[identity] = join_rendezvous(
                settings(port, identity, n, **mine),
                lambda line: log(f"[{identity}] {line}"),
                timeout=timeout,
            )
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in identities]
    for t in threads:
        t.start()
        time.sleep(stagger)
    for t in threads:
        t.join()
    if errors:
        close_all(channels)
        print("\n".join(log.lines))  # shown by pytest when the test fails
        for e in errors[1:]:
            print(f"also: {type(e).__name__}: {e}")
        raise errors[0]
    return channels


def close_all(channels: dict[str, ControlChannel]) -> None:
    # Members first, the serving node last, as agents do when a job ends cleanly.
    for c in channels.values():
        if not c.serving:
            c.close()
    for c in channels.values():
        c.close()


def collect(channel: ControlChannel, within: float) -> list[Event]:
    events, deadline = [], time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        event = channel.next_event(left)
        if event is not None:
            events.append(event)
    return events
