"""Both authenticated channels, both ends: a wrong token, a replayed message, a field
changed after its MAC and an impostor peer are each refused and logged.

The control (rendezvous) channel and the MPI launch channel share one handshake
(control.handshake) and one per-message MAC (control.wire.Session), but each end is its
own code path, so each is attacked here on its own: the real server against a raw
client that speaks the protocol by hand, the real client against a raw server. Real
sockets on 127.0.0.1. `bench/security_breaks.py` checks that every test here fails when
the handshake is deliberately broken (a MAC that skips a field, no server proof, ...).

test_control_auth.py, test_rendezvous.py and test_mpi_channel.py already cover: a wrong
token at the control server and the MPI server, an impostor control server answering
with a zero MAC, unsealed and replayed messages sent to a control client, unsealed
messages sent to the control server.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from launch_servers import Lines, launch_servers
from rendezvous_helpers import TOKEN, Logs, close_all, collect, free_port, settings

from tfbuild_agent.control import handshake
from tfbuild_agent.control.client import join_rendezvous
from tfbuild_agent.control.wire import PROTOCOL, LineSocket, encode
from tfbuild_agent.errors import LaunchRefused, RendezvousAuthError
from tfbuild_agent.launch.mpi import channel as mpi_channel
from tfbuild_agent.launch.mpi.channel import JobResult, ping, remote_exec, send_result
from tfbuild_agent.launch.mpi.server import LaunchServer

pytestmark = pytest.mark.timeout(60)

MPI = mpi_channel.PROTOCOL
OTHER_TOKEN = "a-different-job-token"


def _first(link: LineSocket, timeout: float = 5.0) -> dict[str, Any]:
    messages = link.receive(timeout)
    assert messages, "the peer sent nothing"
    return messages[0]


def _join_fields(identity: str = "b", **kw: Any) -> dict[str, Any]:
    return {"protocol": PROTOCOL, "identity": identity, "node_rank": None, "node_count": 2,
            "advertise": None, **kw}


# -- control channel, server side ---------------------------------------------------------


@contextmanager
def serving_node(port: int, n: int = 2, **kw: Any) -> Iterator[tuple[Logs, dict]]:
    """Node 'a' serving the rendezvous in a thread; the test makes the job form."""
    log, result = Logs(), {}

    def run() -> None:
        result["a"] = join_rendezvous(settings(port, "a", n, serve=True, **kw), log, timeout=20)

    t = threading.Thread(target=run)
    t.start()
    try:
        assert _wait_listening(port)
        yield log, result
    finally:
        t.join(25)


def _wait_listening(port: int) -> bool:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def _raw_join(port: int, tamper: Callable[[dict[str, Any]], None] = lambda m: None,
              fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """Join by hand with the right token, let `tamper` change the hello after its MAC."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        link = LineSocket(sock)
        opening = _first(link)
        greeting = handshake.hello(TOKEN, "join", opening, fields or _join_fields())
        tamper(greeting.message)
        link.send(greeting.message, 5)
        return _first(link)


@pytest.mark.parametrize(
    ("field", "value"),
    [("node_rank", 0), ("advertise", "203.0.113.9"), ("identity", "a"), ("node_count", 3)],
)
def test_control_server_refuses_a_join_changed_after_its_mac(field: str, value: Any) -> None:
    """Whoever can alter a join in flight must not pick its rank or redirect its peers."""
    port = free_port()
    fields = _join_fields("b", node_rank=1, advertise="198.51.100.7")
    with serving_node(port, node_rank=0) as (log, result):
        answer = _raw_join(port, lambda m: m.__setitem__(field, value), fields)
        assert answer["type"] == "refused" and answer["code"] == "bad_token", answer
        assert log.matching("refused join from 127.0.0.1: bad job token"), log.lines
        b = join_rendezvous(settings(port, "b", 2, node_rank=1), Logs(), timeout=10)
    close_all({"a": result["a"], "b": b})
    assert b.membership.hosts[1] != value and "203.0.113.9" not in b.membership.hosts


def test_control_server_refuses_a_join_replayed_on_a_new_connection() -> None:
    """A captured join carries the MAC over the first connection's nonce only."""
    port = free_port()
    with serving_node(port) as (log, result):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as first:
            captured = handshake.hello(TOKEN, "join", _first(LineSocket(first)),
                                       _join_fields()).message
        with socket.create_connection(("127.0.0.1", port), timeout=5) as second:
            link = LineSocket(second)
            _first(link)  # a fresh challenge
            link.send(captured, 5)
            answer = _first(link)
        assert answer["type"] == "refused" and answer["code"] == "bad_token", answer
        assert log.matching("refused join from 127.0.0.1: bad job token"), log.lines
        b = join_rendezvous(settings(port, "b", 2), Logs(), timeout=10)
    close_all({"a": result["a"], "b": b})


def test_control_server_ignores_replayed_and_altered_reports_and_logs_them() -> None:
    """After a genuine join, only the genuine report reaches the other node."""
    port = free_port()
    # Heartbeats every 2 s: this hand-made member sends none, and must not be judged lost.
    with serving_node(port, heartbeat_interval=2.0) as (log, result), \
            socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        link = LineSocket(sock)
        greeting = handshake.hello(TOKEN, "join", _first(link), _join_fields())
        link.send(greeting.message, 5)
        session = greeting.session(TOKEN, PROTOCOL)
        link.secure(session, lambda m, why: None, answer_pending=True)
        assert greeting.accepted_by_token_holder(TOKEN, _first(link))
        while not any(m["type"] == "formed" for m in link.receive(5) or []):
            pass
        link.session = None  # from here on, write raw lines
        report = session.seal({"type": "report", "task": "worker-1", "kind": "completed",
                               "exit_code": 0})
        altered = {**session.seal({"type": "report", "task": "worker-1",
                                   "kind": "completed", "exit_code": 0}), "kind": "failed"}
        sock.sendall(encode(report) + encode(report) + encode(altered))
        events = collect(result_channel(result), 1.5)
    assert [(e.kind, e.task) for e in events] == [("completed", "worker-1")]
    ignored = log.matching("that failed authentication")
    assert any("a replay" in line for line in ignored), log.lines
    assert any("MAC does not match" in line for line in ignored), log.lines
    result["a"].close()


def result_channel(result: dict) -> Any:
    for _ in range(100):
        if "a" in result:
            return result["a"]
        time.sleep(0.05)
    raise AssertionError("the serving node never formed")


# -- control channel, client side ---------------------------------------------------------


@contextmanager
def raw_server(
    protocol: str, answer: Callable[[LineSocket, str, dict[str, Any]], None],
) -> Iterator[int]:
    """A server end of `protocol` that sends a genuine challenge, then lets `answer`
    reply to the client's join or hello."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    done = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        link = LineSocket(conn)
        opening, nonce = handshake.challenge(protocol)
        link.send(opening, 2)
        answer(link, nonce, _first(link))
        done.wait(10)
        link.close()

    t = threading.Thread(target=serve)
    t.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        t.join()
        listener.close()


def raw_control_server(answer: Callable[[LineSocket, str, dict[str, Any]], None]):
    return raw_server(PROTOCOL, answer)


def _fields(join: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in join.items() if k not in ("type", "mac")}


def test_control_client_refuses_a_server_with_another_token() -> None:
    """A server that answers with a real MAC, but made with another token."""

    def wrong(link: LineSocket, nonce: str, join: dict[str, Any]) -> None:
        accepted, _ = handshake.accepted(OTHER_TOKEN, PROTOCOL, nonce, _fields(join))
        link.send(accepted, 2)

    log = Logs()
    with raw_control_server(wrong) as port, pytest.raises(RendezvousAuthError) as err:
        join_rendezvous(settings(port, "b", 2, serve=False), log, timeout=3)
    assert "could not prove it holds the job token" in str(err.value)
    assert "TFBUILD_JOB_TOKEN" in str(err.value)


def test_control_client_refuses_an_impostor_replaying_a_genuine_accepted() -> None:
    """An impostor that relays a real server's `accepted` from another connection: the
    MAC is genuine but covers other nonces, so the client still refuses it."""
    genuine_nonce = handshake.challenge(PROTOCOL)[1]
    captured, _ = handshake.accepted(TOKEN, PROTOCOL, genuine_nonce, {"nonce": "elsewhere"})

    def replay(link: LineSocket, nonce: str, join: dict[str, Any]) -> None:
        link.send(captured, 2)

    with raw_control_server(replay) as port, pytest.raises(RendezvousAuthError) as err:
        join_rendezvous(settings(port, "b", 2, serve=False), Logs(), timeout=3)
    assert "could not prove it holds the job token" in str(err.value)


def test_control_client_ignores_a_formed_changed_after_its_mac_and_logs_it() -> None:
    """A `formed` whose rank and hosts were changed in flight is dropped; the genuine
    one that follows decides this node's rank."""

    def tampering(link: LineSocket, nonce: str, join: dict[str, Any]) -> None:
        accepted, session = handshake.accepted(TOKEN, PROTOCOL, nonce, _fields(join))
        genuine = {"type": "formed", "rank": 1, "hosts": ["h0", "h1"], "identities": ["a", "b"]}
        # Sealed with the same sequence number as the genuine one, so only its MAC stops it.
        altered = {**handshake.accepted(TOKEN, PROTOCOL, nonce, _fields(join))[1].seal(
            genuine), "rank": 0, "hosts": ["h0", "evil"]}
        link.sock.sendall(encode(accepted) + encode(altered) + encode(session.seal(genuine)))

    log = Logs()
    with raw_control_server(tampering) as port:
        channel = join_rendezvous(settings(port, "b", 2, serve=False), log, timeout=5)
        try:
            assert channel.membership.node_rank == 1
            assert list(channel.membership.hosts) == ["h0", "h1"]
        finally:
            channel.close()
    ignored = log.matching("that failed authentication")
    assert len(ignored) == 1 and "'formed'" in ignored[0], log.lines
    assert "MAC does not match" in ignored[0]


# -- MPI launch channel, server side ------------------------------------------------------


@pytest.fixture
def launch_server(tmp_path: Path) -> Iterator[Callable[..., tuple[LaunchServer, Lines]]]:
    with launch_servers(tmp_path, TOKEN) as make:
        yield make


def _mpi_hello(port: int, fields: dict[str, Any],
               tamper: Callable[[dict[str, Any]], None] = lambda m: None,
               captured_from: dict[str, Any] | None = None) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        link = LineSocket(sock)
        opening = _first(link)
        message = captured_from or handshake.hello(TOKEN, "hello", opening,
                                                   {"protocol": MPI, **fields}).message
        tamper(message)
        link.send(message, 5)
        return _first(link)


@pytest.mark.parametrize(
    ("fields", "field", "value"),
    [
        ({"op": "exec", "command": ["orted", "--help"]}, "command",
         ["orted", "--mca", "injected", "1"]),
        ({"op": "result", "code": 3, "message": "rank 1 failed"}, "code", 0),
        ({"op": "ping"}, "op", "result"),
    ],
)
def test_mpi_server_refuses_a_hello_changed_after_its_mac(
    launch_server, fields: dict[str, Any], field: str, value: Any
) -> None:
    server, logs = launch_server()
    answer = _mpi_hello(server.port, fields, lambda m: m.__setitem__(field, value))
    assert answer["type"] == "refused" and answer["code"] == "bad_token", answer
    assert any("refused" in line and "wrong job token" in line for line in logs), logs
    assert server.refusals == 1
    assert not server.launched and server.result is None


def test_mpi_server_refuses_a_hello_replayed_on_a_new_connection(launch_server) -> None:
    server, logs = launch_server()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        captured = handshake.hello(TOKEN, "hello", _first(LineSocket(sock)),
                                   {"protocol": MPI, "op": "result", "code": 0,
                                    "message": "all fine"}).message
    answer = _mpi_hello(server.port, {}, captured_from=captured)
    assert answer["type"] == "refused" and answer["code"] == "bad_token", answer
    assert any("refused result" in line and "wrong job token" in line for line in logs), logs
    assert server.result is None


def test_mpi_server_ignores_replayed_and_altered_messages_after_the_handshake(
    launch_server,
) -> None:
    """Once a daemon runs, what the launching side sends is checked like every sealed
    message: a replay and an altered message are ignored and logged."""
    server, logs = launch_server(programs=("sleep",))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        link = LineSocket(sock)
        greeting = handshake.hello(TOKEN, "hello", _first(link),
                                   {"protocol": MPI, "op": "exec", "command": ["sleep", "3"]})
        link.send(greeting.message, 5)
        assert greeting.accepted_by_token_holder(TOKEN, _first(link))
        session = greeting.session(TOKEN, MPI)
        beat = session.seal({"type": "hb"})
        altered = {**session.seal({"type": "hb"}), "type": "bye"}
        sock.sendall(encode(beat) + encode(beat) + encode(altered))
        assert server.wait(lambda: server.pid is not None, 10)
        _, status = os.waitpid(server.pid, 0)
        server.reaped(server.pid, os.waitstatus_to_exitcode(status))
        assert server.wait(lambda: sum("failed authentication" in x for x in logs) >= 2, 10), logs
    ignored = [line for line in logs if "failed authentication" in line]
    assert any("a replay" in line for line in ignored), logs
    assert any("MAC does not match" in line for line in ignored), logs


# -- MPI launch channel, client side ------------------------------------------------------


def raw_launch_server(answer: Callable[[LineSocket, str, dict[str, Any]], None]):
    return raw_server(MPI, answer)


@pytest.mark.parametrize("op", ["ping", "result", "exec"])
def test_mpi_client_refuses_a_server_that_cannot_prove_the_token(op: str) -> None:
    """A server with another token accepts anything: no op may trust it, and mpi-rsh must
    not run its 'daemon' output or exit code as if it were the job's agent."""

    def impostor(link: LineSocket, nonce: str, hello: dict[str, Any]) -> None:
        accepted, _ = handshake.accepted(OTHER_TOKEN, MPI, nonce, _fields(hello))
        link.send({**accepted, "state": "done"}, 2)

    with raw_launch_server(impostor) as port, pytest.raises(LaunchRefused) as err:
        if op == "ping":
            ping("127.0.0.1", port, TOKEN, bound=3)
        elif op == "result":
            send_result("127.0.0.1", port, TOKEN, JobResult(0, "fine"), bound=3)
        else:
            remote_exec("127.0.0.1", port, TOKEN, ["orted"], print, connect_bound=3)
    assert "could not prove it holds the job token" in str(err.value)
    assert "TFBUILD_JOB_TOKEN" in str(err.value)


def test_mpi_client_ignores_replayed_and_altered_output_and_exit_and_logs_them(capfd) -> None:
    """mpi-rsh prints the daemon's output once and returns its real exit code, whatever a
    man in the middle replays or alters; it says on stderr what it ignored."""

    def tampering(link: LineSocket, nonce: str, hello: dict[str, Any]) -> None:
        accepted, session = handshake.accepted(TOKEN, MPI, nonce, _fields(hello))
        out = session.seal({"type": "out", "fd": 1, "data": mpi_channel.b64(b"genuine\n")})
        exit_sealed = session.seal({"type": "exit", "code": 3})
        altered_exit = {**exit_sealed, "code": 0}
        link.sock.sendall(b"".join(encode(m) for m in
                                   (accepted, out, out, altered_exit, exit_sealed)))

    with raw_launch_server(tampering) as port:
        code = remote_exec("127.0.0.1", port, TOKEN, ["orted"], print, connect_bound=3)
    captured = capfd.readouterr()
    assert code == 3
    assert captured.out.count("genuine") == 1
    ignored = [x for x in captured.err.splitlines() if "failed authentication" in x]
    assert any("'out'" in x and "a replay" in x for x in ignored), captured.err
    assert any("'exit'" in x and "MAC does not match" in x for x in ignored), captured.err
