"""The built-in rendezvous: forming, ranks, restarts, authentication, timeouts.

Real sockets on 127.0.0.1 only; agents run as threads (and, where a process must
die or freeze, as subprocesses). Heartbeats are short so the file runs in seconds.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from types import SimpleNamespace

import pytest
from rendezvous_helpers import TOKEN, Logs, close_all, collect, form, free_port, settings

from tfbuild_agent.control import handshake
from tfbuild_agent.control.channel import ControlChannel
from tfbuild_agent.control.client import join_rendezvous
from tfbuild_agent.control.config import parse_address, settings_from_env
from tfbuild_agent.control.source import RendezvousSource, open_control
from tfbuild_agent.control.wire import PROTOCOL, LineSocket, encode, new_nonce
from tfbuild_agent.discovery.membership import Membership
from tfbuild_agent.errors import ConfigError, DiscoveryError, DiscoveryTimeout, RendezvousAuthError
from tfbuild_agent.jobspec import JobSpec

pytestmark = pytest.mark.timeout(60)

# -- forming ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [3, 16])
def test_members_form_with_ranks_from_sorted_identities(n: int) -> None:
    identities = [f"node-{i:02d}" for i in range(n)]
    random.Random(n).shuffle(identities)
    channels = form(free_port(), identities)
    try:
        assert len(channels) == n
        for identity, c in channels.items():
            m = c.membership
            assert m.source == "rendezvous"
            assert m.node_rank == int(identity.split("-")[1])
            assert m.hosts == ("127.0.0.1",) * n
            assert dict(m.evidence)["identity"] == identity
        assert sum(c.serving for c in channels.values()) == 1
    finally:
        close_all(channels)


def test_ranks_do_not_depend_on_arrival_order() -> None:
    names = ["delta", "alpha", "charlie", "bravo"]
    first = form(free_port(), names, stagger=0.05)
    second = form(free_port(), list(reversed(names)), stagger=0.05)
    try:
        ranks1 = {i: c.membership.node_rank for i, c in first.items()}
        ranks2 = {i: c.membership.node_rank for i, c in second.items()}
        assert ranks1 == ranks2 == {"alpha": 0, "bravo": 1, "charlie": 2, "delta": 3}
    finally:
        close_all(first)
        close_all(second)


def test_explicit_ranks_are_kept_and_the_rest_fill_the_gaps() -> None:
    port, log = free_port(), Logs()
    channels: dict[str, ControlChannel] = {}

    def run(identity: str, rank: int | None) -> None:
        channels[identity] = join_rendezvous(
            settings(port, identity, 3, node_rank=rank), log, timeout=10
        )

    threads = [
        threading.Thread(target=run, args=("zed", 0)),
        threading.Thread(target=run, args=("amy", None)),
        threading.Thread(target=run, args=("bob", None)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert {i: c.membership.node_rank for i, c in channels.items()} == {
            "zed": 0,
            "amy": 1,
            "bob": 2,
        }
    finally:
        close_all(channels)


def test_advertised_addresses_become_the_hosts_in_rank_order() -> None:
    port, log = free_port(), Logs()
    channels: dict[str, ControlChannel] = {}

    def run(identity: str, advertise: str | None) -> None:
        channels[identity] = join_rendezvous(
            settings(port, identity, 3, advertise=advertise, serve=identity == "c"),
            log,
            timeout=10,
        )

    # The serving node advertises the rendezvous host itself; b is what the server sees.
    threads = [
        threading.Thread(target=run, args=("c", None)),
        threading.Thread(target=run, args=("a", "worker-a.example")),
        threading.Thread(target=run, args=("b", None)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert channels["c"].serving
        assert channels["b"].membership.hosts == ("worker-a.example", "127.0.0.1", "127.0.0.1")
    finally:
        close_all(channels)


def test_rendezvous_source_reads_the_environment_and_keeps_its_channel_for_open_control() -> None:
    port, log = free_port(), Logs()
    job = JobSpec(node_count=2, control_port=port)
    found: dict[str, Membership | None] = {}
    sources = {"n0": RendezvousSource(), "n1": RendezvousSource()}

    def run(node_id: str) -> None:
        env = {
            "TFBUILD_RENDEZVOUS": "127.0.0.1",  # no port: job.control_port
            "TFBUILD_JOB_TOKEN": TOKEN,
            "TFBUILD_NODE_ID": node_id,
            "TFBUILD_HEARTBEAT_INTERVAL": "0.2",
        }
        ctx = SimpleNamespace(
            env=env,
            job=job,
            hostname="same-host-name",
            timeout=10.0,
            log=log,
            sleep=time.sleep,
            monotonic=time.monotonic,
        )
        found[node_id] = sources[node_id](ctx)

    threads = [threading.Thread(target=run, args=(i,)) for i in ("n1", "n0")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    m0, m1 = found["n0"], found["n1"]
    assert m0 is not None and m1 is not None
    assert (m0.node_rank, m1.node_rank) == (0, 1)
    assert dict(m0.evidence)["TFBUILD_RENDEZVOUS"] == f"127.0.0.1:{port}"
    c0 = open_control(m0, job, {}, log, timeout=1, decisive_task="worker-0",
                      formed=sources["n0"].channel)
    c1 = open_control(m1, job, {}, log, timeout=1, decisive_task="worker-0",
                      formed=sources["n1"].channel)
    try:
        assert c0.membership is m0 and c1.membership is m1
        with pytest.raises(DiscoveryError, match="needs the channel its join opened"):
            open_control(m0, job, {}, log, timeout=1)
        c0.report("worker-0", "Completed", 0)
        event = c1.next_event(5)
        assert event is not None and event.kind == "finished" and event.task == "worker-0"
    finally:
        close_all({"n0": c0, "n1": c1})


def test_rendezvous_source_does_not_apply_without_the_variable() -> None:
    ctx = SimpleNamespace(env={}, job=JobSpec(node_count=3), hostname="h", timeout=1.0)
    assert RendezvousSource()(ctx) is None


# -- restarts --------------------------------------------------------------------------


def test_a_restarted_member_gets_its_old_rank_and_the_others_hear_of_it() -> None:
    port = free_port()
    channels = form(port, ["a", "b", "c"], server="a")
    try:
        old = channels["b"]
        rank = old.membership.node_rank
        old.close()  # said goodbye: not a loss
        again = join_rendezvous(settings(port, "b", 3, advertise="127.0.0.1"), Logs(), timeout=5)
        channels["b"] = again
        assert again.membership.node_rank == rank == 1
        assert again.membership.hosts == ("127.0.0.1",) * 3
        others = [c for i, c in channels.items() if i != "b"]
        for c in others:
            events = collect(c, 0.3)
            assert [e.kind for e in events] == ["rejoined"], events
            assert events[0].identity == "b" and events[0].rank == 1
    finally:
        close_all(channels)


def test_a_rejoin_while_the_old_connection_lingers_takes_over_its_rank() -> None:
    """A container restarted before its old TCP connection timed out."""
    port = free_port()
    channels = form(port, ["a", "b", "c"], server="a")
    try:
        old = channels["b"]
        channels["b"] = join_rendezvous(settings(port, "b", 3), Logs(), timeout=5)
        assert channels["b"].membership.node_rank == 1
        event = old.next_event(3)
        assert event is not None and event.kind == "server_lost"
        assert "another agent joined as 'b'" in event.message
    finally:
        close_all(channels)


def test_an_unknown_identity_is_refused_once_the_job_is_full() -> None:
    port, log = free_port(), Logs()
    channels = form(port, ["a", "b", "c"], log=log)
    try:
        with pytest.raises(DiscoveryError) as err:
            join_rendezvous(settings(port, "intruder", 3), Logs(), timeout=5)
        message = str(err.value)
        assert "already formed with 3 nodes (a, b, c)" in message
        assert "'intruder' is not one of them" in message
        assert log.matching("refused join from 127.0.0.1: the job already formed")
    finally:
        close_all(channels)


def test_a_node_joining_after_the_job_failed_learns_it_at_once() -> None:
    port = free_port()
    channels = form(port, ["a", "b", "c"], server="a")
    try:
        channels["a"].report("worker-0", "Failed", 7)
        assert channels["c"].next_event(3).kind == "failed"
        channels["b"].close()
        channels["b"] = join_rendezvous(settings(port, "b", 3), Logs(), timeout=5)
        event = channels["b"].next_event(3)
        assert event is not None and event.kind == "failed" and event.exit_code == 7
    finally:
        close_all(channels)


# -- authentication and configuration --------------------------------------------------


class FirstNode:
    """Node "a" of a 2-node job serves from a thread; on exit the real "b" completes the
    job, which shows that the refused attempts in between did not disturb it."""

    def __init__(self, port: int) -> None:
        self.port, self.log, self.result = port, Logs(), {}
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        self.result["a"] = join_rendezvous(settings(self.port, "a", 2), self.log, timeout=10)

    def __enter__(self) -> FirstNode:
        self.thread.start()
        time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        b = join_rendezvous(settings(self.port, "b", 2), Logs(), timeout=10)
        self.thread.join()
        close_all({"b": b, "a": self.result["a"]})
        assert b.membership.node_rank == 1


def test_a_wrong_token_is_refused_on_both_sides() -> None:
    with FirstNode(free_port()) as first, pytest.raises(RendezvousAuthError) as err:
        join_rendezvous(settings(first.port, "b", 2, token="wrong"), Logs(), timeout=3)
    assert "refused this node ('b'): bad job token" in str(err.value)
    assert "TFBUILD_JOB_TOKEN" in str(err.value)
    assert first.log.matching("refused join from 127.0.0.1: bad job token")


def test_a_node_without_token_cannot_join_a_job_with_one() -> None:
    with FirstNode(free_port()) as first, pytest.raises(RendezvousAuthError):
        join_rendezvous(settings(first.port, "b", 2, token=None), Logs(), timeout=3)


def test_a_server_that_cannot_prove_the_token_is_not_trusted() -> None:
    """An impostor accepts anything; the client checks the server's own HMAC."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def impostor() -> None:
        conn, _ = listener.accept()
        link = LineSocket(conn)
        link.send({"type": "challenge", "protocol": PROTOCOL, "nonce": new_nonce()}, 2)
        link.receive(2)
        link.send({"type": "accepted", "mac": "00" * 32}, 2)
        link.receive(2)
        link.close()

    t = threading.Thread(target=impostor)
    t.start()
    try:
        with pytest.raises(RendezvousAuthError) as err:
            join_rendezvous(settings(port, "b", 2, serve=False), Logs(), timeout=3)
        assert "could not prove it holds the job token" in str(err.value)
    finally:
        t.join()
        listener.close()


def test_messages_that_arrive_in_one_read_are_all_handled() -> None:
    """The last node to join often gets `accepted` and `formed` in one segment."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", free_port()))
    listener.listen()
    port = listener.getsockname()[1]

    def server() -> None:
        conn, _ = listener.accept()
        link = LineSocket(conn)
        nonce = new_nonce()
        link.send({"type": "challenge", "protocol": PROTOCOL, "nonce": nonce}, 2)
        join = link.receive(2)[0]
        accepted, session = handshake.accepted(TOKEN, PROTOCOL, nonce, join)
        together = [
            accepted,
            session.seal(
                {"type": "formed", "rank": 1, "hosts": ["h0", "h1"], "identities": ["a", "b"]}
            ),
            session.seal({
                "type": "event",
                "kind": "failed",
                "task": "worker-0",
                "exit_code": 2,
                "message": "task worker-0 failed",
            }),
        ]
        conn.sendall(b"".join(encode(m) for m in together))
        link.receive(2)  # the client's goodbye
        link.close()

    t = threading.Thread(target=server)
    t.start()
    try:
        channel = join_rendezvous(settings(port, "b", 2, serve=False), Logs(), timeout=3)
        assert channel.membership.hosts == ("h0", "h1") and channel.membership.node_rank == 1
        event = channel.next_event(1)
        assert event is not None and (event.kind, event.exit_code) == ("failed", 2)
        channel.close()
    finally:
        t.join()
        listener.close()


def test_multi_node_without_token_refuses_to_start_unless_trusted() -> None:
    env = {"TFBUILD_NODE_ID": "a"}
    with pytest.raises(ConfigError) as err:
        settings_from_env(env, host="127.0.0.1", port=1, node_count=3, hostname="h")
    assert "TFBUILD_JOB_TOKEN is not set" in str(err.value)
    assert "TFBUILD_TRUST_NETWORK=1" in str(err.value)
    trusted = settings_from_env(
        {**env, "TFBUILD_TRUST_NETWORK": "1"}, host="127.0.0.1", port=1, node_count=3, hostname="h"
    )
    assert trusted.token is None
    single = settings_from_env({}, host="127.0.0.1", port=1, node_count=1, hostname="h")
    assert single.token is None and single.identity == "h"


def test_the_rendezvous_source_refuses_a_tokenless_multi_node_job() -> None:
    ctx = SimpleNamespace(
        env={"TFBUILD_RENDEZVOUS": "127.0.0.1:1"}, job=JobSpec(node_count=2), hostname="h"
    )
    with pytest.raises(ConfigError, match="TFBUILD_TRUST_NETWORK=1"):
        RendezvousSource()(ctx)


def test_trusted_nodes_form_without_a_token() -> None:
    channels = form(free_port(), ["a", "b"], token=None)
    close_all(channels)
    assert {c.membership.node_rank for c in channels.values()} == {0, 1}


def test_a_node_count_mismatch_is_refused_with_the_fix() -> None:
    with FirstNode(free_port()) as first, pytest.raises(DiscoveryError) as err:
        join_rendezvous(settings(first.port, "b", 3), Logs(), timeout=3)
    assert "it expects 3 nodes but this job has 2" in str(err.value)
    assert "set TFBUILD_NODES to the same number on every node" in str(err.value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TFBUILD_NODE_RANK": "3"}, "node rank 3 does not fit a 3-node job"),
        ({"TFBUILD_NODE_RANK": "x"}, "TFBUILD_NODE_RANK='x' is not a whole number"),
        ({"TFBUILD_HEARTBEAT_INTERVAL": "0"}, "must be more than 0 seconds"),
        ({"TFBUILD_RENDEZVOUS_SERVE": "maybe"}, "not a yes/no value"),
    ],
)
def test_bad_settings_say_what_to_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from_env(
            {"TFBUILD_JOB_TOKEN": "t", **env}, host="h", port=1, node_count=3, hostname="h"
        )


def test_settings_from_env() -> None:
    s = settings_from_env(
        {
            "TFBUILD_JOB_TOKEN": "t",
            "TFBUILD_NODE_ID": "box-7",
            "TFBUILD_NODE_RANK": "2",
            "TFBUILD_ADVERTISE_ADDR": "10.1.2.3",
            "TFBUILD_HEARTBEAT_INTERVAL": "0.5",
            "TFBUILD_HEARTBEAT_MISSES": "4",
        },
        host="10.0.0.1",
        port=29400,
        node_count=3,
        hostname="ignored",
    )
    assert (s.identity, s.node_rank, s.advertise, s.serve) == ("box-7", 2, "10.1.2.3", False)
    assert s.loss_bound == 2.0 and s.address == "10.0.0.1:29400"
    rank0 = settings_from_env(
        {"TFBUILD_JOB_TOKEN": "t", "TFBUILD_NODE_RANK": "0"},
        host="h",
        port=1,
        node_count=2,
        hostname="h",
    )
    assert rank0.serve is True


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.0.1:2000", ("10.0.0.1", 2000)),
        ("head-node", ("head-node", 29400)),
        ("[fd00::1]:2000", ("fd00::1", 2000)),
        ("fd00::1", ("fd00::1", 29400)),
    ],
)
def test_parse_address(value: str, expected: tuple[str, int]) -> None:
    assert parse_address(value, 29400) == expected


@pytest.mark.parametrize("value", [":2000", "h:0", "h:port", "h:70000"])
def test_parse_address_rejects_nonsense(value: str) -> None:
    with pytest.raises(ConfigError, match="TFBUILD_RENDEZVOUS"):
        parse_address(value, 29400)


# -- bounded waits ---------------------------------------------------------------------


def test_timeout_names_who_joined_and_how_many_are_missing() -> None:
    log = Logs()
    with pytest.raises(DiscoveryTimeout) as err:
        form(free_port(), ["alpha", "bravo"], n=3, timeout=1.0, log=log, progress_interval=0.3)
    progress = log.matching("of 3 nodes joined 127.0.0.1:")
    assert progress and "rendezvous: after " in progress[0]
    assert any("2 of 3 nodes joined" in line and "(alpha, bravo)" in line for line in progress)
    message = str(err.value)
    assert "did not form within 1 s" in message
    assert "2 of 3 nodes joined 127.0.0.1:" in message
    assert "(alpha, bravo)" in message and "waiting for 1 more" in message
    assert "TFBUILD_NODES=3" in message


def test_timeout_without_a_server_names_the_address_it_tried() -> None:
    port = free_port()
    log = Logs()
    started = time.monotonic()
    with pytest.raises(DiscoveryTimeout) as err:
        join_rendezvous(
            settings(port, "b", 2, serve=False, progress_interval=0.3), log, timeout=1.0
        )
    assert time.monotonic() - started < 3
    message = str(err.value)
    assert f"no rendezvous server answered at 127.0.0.1:{port} within 1 s" in message
    assert "connection refused" in message
    assert log.matching(f"127.0.0.1:{port} not ready yet (cannot connect: connection refused)")


def test_when_the_serving_node_gives_up_the_others_say_why_at_their_own_timeout() -> None:
    port = free_port()
    server_side: dict[str, BaseException] = {}

    def serving() -> None:
        try:
            join_rendezvous(settings(port, "a", 3, serve=True), Logs(), timeout=1.0)
        except DiscoveryTimeout as e:
            server_side["error"] = e

    t = threading.Thread(target=serving)
    t.start()
    time.sleep(0.2)
    with pytest.raises(DiscoveryTimeout) as err:
        join_rendezvous(settings(port, "b", 3, serve=False), Logs(), timeout=2.0)
    t.join()
    assert "of 3 nodes joined" in str(server_side["error"])
    message = str(err.value)
    assert message.startswith("the job did not form within 2 s: ")
    assert "of 3 nodes joined" in message
    assert "(the serving node stopped: the serving node gave up waiting (its own timeout" in message
    assert "last attempt: cannot connect: connection refused)" in message


def test_a_client_that_starts_before_the_server_retries_until_it_is_up() -> None:
    port = free_port()
    result: dict[str, ControlChannel] = {}
    t = threading.Thread(
        target=lambda: result.setdefault(
            "b", join_rendezvous(settings(port, "b", 2, serve=False), Logs(), timeout=10)
        )
    )
    t.start()
    time.sleep(0.7)  # several refused attempts
    a = join_rendezvous(settings(port, "a", 2, serve=True), Logs(), timeout=10)
    t.join()
    close_all({"b": result["b"], "a": a})
    assert result["b"].membership.node_rank == 1


def test_timeout_with_explicit_ranks_names_the_missing_ranks_and_hosts() -> None:
    """The open_control case: discovery already knows every node's address."""
    port = free_port()
    membership = Membership(
        source="explicit", hosts=("127.0.0.1", "127.0.0.1", "127.0.0.1"), node_rank=0
    )
    env = {"TFBUILD_JOB_TOKEN": TOKEN, "TFBUILD_HEARTBEAT_INTERVAL": "0.2"}
    job = JobSpec(node_count=3, control_port=port)
    other: dict[str, BaseException] = {}

    def node1() -> None:
        try:
            open_control(
                Membership("explicit", membership.hosts, 1),
                job,
                env,
                Logs(),
                timeout=1.0,
                hostname="n1",
            )
        except DiscoveryTimeout as e:
            other["error"] = e

    t = threading.Thread(target=node1)
    t.start()
    with pytest.raises(DiscoveryTimeout) as err:
        open_control(membership, job, env, Logs(), timeout=1.0, hostname="n0")
    t.join()
    assert "waiting for 1 more: rank 2 (127.0.0.1)" in str(other["error"])
    assert "2 of 3 nodes joined" in str(err.value)
    assert "rank 2 (127.0.0.1)" in str(err.value)


# -- scale -----------------------------------------------------------------------------


def test_512_nodes_form_on_loopback(record_property) -> None:
    """The number for the report; no timed assertion (the machine is shared)."""
    n = 512
    started = time.monotonic()
    channels = form(
        free_port(), [f"n{i:03d}" for i in range(n)], timeout=30, **{"heartbeat_interval": 2.0}
    )
    formed = time.monotonic() - started
    try:
        assert sorted(c.membership.node_rank for c in channels.values()) == list(range(n))
        assert all(c.membership.node_rank == int(i[1:]) for i, c in channels.items())
    finally:
        close_all(channels)
    record_property("form_seconds_512", round(formed, 2))
    print(f"512 nodes formed in {formed:.2f} s")
