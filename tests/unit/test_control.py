"""The job control channel: failure propagation, goodbyes, lost nodes, lost server.

Real sockets on 127.0.0.1. A node that must die (kill -9) or freeze (SIGSTOP) runs
as a subprocess; the others are threads of this test.
"""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from rendezvous_helpers import HB, TOKEN, Logs, close_all, collect, form, free_port, settings

from tfbuild_agent.control.channel import ControlChannel
from tfbuild_agent.control.client import join_rendezvous
from tfbuild_agent.control.source import open_control
from tfbuild_agent.control.wire import (
    PROTOCOL,
    LineSocket,
    join_mac,
    new_nonce,
)
from tfbuild_agent.discovery.membership import Membership
from tfbuild_agent.errors import DiscoveryTimeout
from tfbuild_agent.jobspec import JobSpec

pytestmark = pytest.mark.timeout(60)

LOSS_BOUND = HB["heartbeat_interval"] * HB["heartbeat_misses"]
SLACK = 1.0  # scheduling on a shared 2-core machine

NODE_SCRIPT = textwrap.dedent(
    """
    import sys
    from tfbuild_agent.control.client import join_rendezvous
    from tfbuild_agent.control.config import ChannelSettings

    port, identity, n, serve = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    s = ChannelSettings(host="127.0.0.1", port=port, node_count=n, identity=identity,
                        token=sys.argv[5], serve=serve == "serve" or None,
                        heartbeat_interval=float(sys.argv[6]), heartbeat_misses=int(sys.argv[7]))
    channel = join_rendezvous(s, lambda line: None, timeout=15)
    print("formed", channel.membership.node_rank, flush=True)
    while True:
        channel.next_event(1.0)
    """
)


class NodeProcess:
    """One agent in its own process, so it can be killed or frozen like a container."""

    def __init__(self, port: int, identity: str, n: int, *, serve: bool = False) -> None:
        args = [str(port), identity, str(n), "serve" if serve else "auto", TOKEN]
        args += [str(HB["heartbeat_interval"]), str(HB["heartbeat_misses"])]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", NODE_SCRIPT, *args], stdout=subprocess.PIPE, text=True
        )

    def wait_formed(self) -> int:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("formed"), line
        return int(line.split()[1])

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(5)
        self.proc.stdout.close()  # type: ignore[union-attr]


def first_event(channel: ControlChannel, within: float) -> tuple[object, float]:
    started = time.monotonic()
    event = channel.next_event(within)
    return event, time.monotonic() - started


def assert_silence_reported(channel: ControlChannel, kind: str, phrase: str,
                            identity: str | None = None) -> None:
    """A frozen peer (connection open, nothing sent) is reported once the loss bound
    has passed, not before, and the message says why."""
    event, waited = first_event(channel, LOSS_BOUND + SLACK)
    assert event is not None and event.kind == kind
    assert identity is None or event.identity == identity
    assert phrase in event.message
    assert LOSS_BOUND - 0.3 < waited <= LOSS_BOUND + SLACK


# -- reports ---------------------------------------------------------------------------


def test_a_failure_report_reaches_every_other_node() -> None:
    channels = form(free_port(), ["a", "b", "c", "d"])
    try:
        channels["b"].report("worker-1", "Failed", 3)
        for identity in ("a", "c", "d"):
            event = channels[identity].next_event(3)
            assert event is not None and event.ends_job
            assert (event.kind, event.task, event.exit_code) == ("failed", "worker-1", 3)
            assert event.message == "task worker-1 failed with exit code 3 on node b (rank 1)"
        assert channels["b"].next_event(0.3) is None  # the reporter already knows
    finally:
        close_all(channels)


def test_the_decisive_task_finishes_the_job_and_other_reports_are_news() -> None:
    channels = form(free_port(), ["a", "b", "c"])
    for c in channels.values():
        c.decisive_task = "chief-0"
    try:
        channels["c"].report("ps-0", "Canceled", 143)
        channels["b"].report("worker-0", "Completed", 0)
        channels["a"].report("chief-0", "Completed", 0)
        kinds = [(e.kind, e.task, e.ends_job) for e in collect(channels["c"], 0.5)]
        assert kinds == [("completed", "worker-0", False), ("finished", "chief-0", True)]
        finished = [e for e in collect(channels["b"], 0.3) if e.kind == "finished"]
        assert (
            finished[0].message == "task chief-0 succeeded on node a (rank 0): the job is finished"
        )
    finally:
        close_all(channels)


def test_an_unknown_status_is_a_programming_error() -> None:
    channels = form(free_port(), ["a", "b"])
    try:
        with pytest.raises(ValueError, match="'done' is not one of completed, failed, canceled"):
            channels["a"].report("worker-0", "done", 0)
    finally:
        close_all(channels)


# -- goodbyes and lost nodes -----------------------------------------------------------


def test_a_node_that_says_goodbye_is_not_reported_lost() -> None:
    channels = form(free_port(), ["a", "b", "c"])
    try:
        member = next(i for i, c in channels.items() if not c.serving)
        channels[member].close()
        time.sleep(LOSS_BOUND + 0.4)
        for identity, c in channels.items():
            if identity != member:
                assert c.next_event(0) is None
    finally:
        close_all(channels)


def test_kill_9_of_a_member_is_reported_lost_to_the_others() -> None:
    port = free_port()
    node = NodeProcess(port, "b", 3)
    try:
        channels = form(port, ["a", "c"], n=3)
        assert node.wait_formed() == 1
        node.signal(signal.SIGKILL)
        for c in channels.values():
            event, _ = first_event(c, LOSS_BOUND + SLACK)
            assert event is not None, "no event within the bound"
            assert (event.kind, event.identity, event.rank) == ("lost", "b", 1)
            assert event.message.startswith("node b (rank 1) lost: ")
        close_all(channels)
    finally:
        node.stop()


def test_a_frozen_member_is_reported_lost_within_the_heartbeat_bound() -> None:
    port = free_port()
    node = NodeProcess(port, "b", 3)
    try:
        channels = form(port, ["a", "c"], n=3)
        node.wait_formed()
        node.signal(signal.SIGSTOP)  # connection stays open, heartbeats stop
        assert_silence_reported(channels["a"], "lost", "sent nothing for", identity="b")
        close_all(channels)
    finally:
        node.stop()


def test_an_abruptly_reset_connection_is_reported_lost() -> None:
    """A hand-written member: joins by the protocol, then resets its socket."""
    port = free_port()
    channels: dict[str, ControlChannel] = {}
    t = threading.Thread(target=lambda: channels.update(form(port, ["a", "b"], n=3)))
    t.start()
    time.sleep(0.3)
    link = LineSocket(socket.create_connection(("127.0.0.1", port), timeout=5))
    challenge = link.receive(2)[0]
    fields = {
        "protocol": PROTOCOL,
        "identity": "raw",
        "node_rank": None,
        "node_count": 3,
        "advertise": None,
        "nonce": new_nonce(),
    }
    mac = join_mac(TOKEN, challenge["nonce"], fields)
    link.send({"type": "join", **fields, "mac": mac}, 2)
    seen: list[str] = []
    while "formed" not in seen:
        seen += [m["type"] for m in link.receive(2) or []]
    t.join()
    try:
        link.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        link.close()  # RST, as when a host's network drops a container
        event, _ = first_event(channels["a"], LOSS_BOUND + SLACK)
        assert event is not None and (event.kind, event.identity, event.rank) == ("lost", "raw", 2)
    finally:
        close_all(channels)


# -- the serving node ------------------------------------------------------------------


@contextmanager
def two_clients_of_a_serving_process() -> Iterator[tuple[int, NodeProcess, dict]]:
    """A job of 3 formed around a serving node in its own process (so it can be
    killed or frozen), and the two clients' channels."""
    port = free_port()
    server = NodeProcess(port, "a", 3, serve=True)
    try:
        time.sleep(0.3)
        channels = form(port, ["b", "c"], n=3, serve=False)
        server.wait_formed()
        yield port, server, channels
        close_all(channels)
    finally:
        server.stop()


def test_kill_9_of_the_serving_node_is_noticed_by_every_client() -> None:
    with two_clients_of_a_serving_process() as (port, server, channels):
        server.signal(signal.SIGKILL)
        for c in channels.values():
            event, _ = first_event(c, LOSS_BOUND + SLACK)
            assert event is not None and event.kind == "server_lost" and event.ends_job
            assert f"the serving node at 127.0.0.1:{port} is lost" in event.message


def test_a_frozen_serving_node_is_noticed_within_the_heartbeat_bound() -> None:
    with two_clients_of_a_serving_process() as (_, server, channels):
        server.signal(signal.SIGSTOP)
        assert_silence_reported(channels["b"], "server_lost", "nothing heard from it for")


def test_the_serving_node_waits_for_goodbyes_then_tells_stragglers() -> None:
    channels = form(free_port(), ["a", "b", "c"])
    serving = next(i for i, c in channels.items() if c.serving)
    members = [i for i in channels if i != serving]
    channels[members[0]].close()
    started = time.monotonic()
    channels[serving].close(linger=0.5)  # members[1] never says goodbye
    assert 0.4 < time.monotonic() - started < 0.5 + 3.5
    event = channels[members[1]].next_event(2)
    assert event is not None and event.kind == "server_lost"
    assert f"ended the job channel: node {serving} finished its tasks" in event.message
    channels[members[1]].close()


def test_the_serving_node_closes_at_once_when_everyone_said_goodbye() -> None:
    channels = form(free_port(), ["a", "b", "c"])
    serving = next(c for c in channels.values() if c.serving)
    for c in channels.values():
        if c is not serving:
            c.close()
    started = time.monotonic()
    serving.close(linger=10)
    assert time.monotonic() - started < 2


def test_reports_after_the_server_is_gone_do_not_raise() -> None:
    logs = Logs()
    port = free_port()
    server = NodeProcess(port, "a", 2, serve=True)
    try:
        time.sleep(0.3)
        b = join_rendezvous(settings(port, "b", 2, serve=False), logs, timeout=10)
        server.wait_formed()
        server.signal(signal.SIGKILL)
        assert b.next_event(LOSS_BOUND + SLACK).kind == "server_lost"
        b.report("worker-1", "Failed", 1)  # nobody to tell; must not raise
        b.close()
    finally:
        server.stop()


# -- open_control without a rendezvous -------------------------------------------------


def test_open_control_after_explicit_discovery_serves_on_node_0() -> None:
    port = free_port()
    hosts = ("127.0.0.1",) * 3
    job = JobSpec(node_count=3, control_port=port)
    env = {"TFBUILD_JOB_TOKEN": TOKEN, "TFBUILD_HEARTBEAT_INTERVAL": "0.2"}
    channels: dict[int, ControlChannel] = {}

    def node(rank: int) -> None:
        membership = Membership(source="explicit", hosts=hosts, node_rank=rank)
        channels[rank] = open_control(
            membership,
            job,
            env,
            Logs(),
            timeout=10,
            decisive_task="worker-0",
            hostname="same-host",  # ranks, not hostnames, tell the nodes apart here
        )

    threads = [threading.Thread(target=node, args=(r,)) for r in (2, 1, 0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert [channels[r].serving for r in range(3)] == [True, False, False]
        assert all(channels[r].membership.source == "explicit" for r in range(3))
        channels[2].report("worker-2", "Failed", 9)
        for r in (0, 1):
            event = channels[r].next_event(3)
            assert event is not None and (event.kind, event.task, event.rank) == (
                "failed",
                "worker-2",
                2,
            )
    finally:
        close_all({str(r): c for r, c in channels.items()})


def test_open_control_on_a_single_node_has_no_peers() -> None:
    membership = Membership(source="single", hosts=("localhost",), node_rank=0)
    channel = open_control(membership, JobSpec(), {}, Logs(), timeout=1)
    channel.report("worker-0", "Failed", 1)
    assert channel.next_event(0.05) is None
    channel.close()


def test_open_control_timeout_says_which_port_node_0_should_serve() -> None:
    port = free_port()
    membership = Membership(source="dns", hosts=("127.0.0.1", "127.0.0.1"), node_rank=1)
    env = {"TFBUILD_JOB_TOKEN": TOKEN}
    with pytest.raises(DiscoveryTimeout) as err:
        open_control(membership, JobSpec(node_count=2, control_port=port), env, Logs(), timeout=0.5)
    assert f"no rendezvous server answered at 127.0.0.1:{port}" in str(err.value)
