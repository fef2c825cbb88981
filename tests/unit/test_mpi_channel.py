"""The MPI launch channel: authentication, refusals, running a command like ssh would,
and stopping it when the launching side goes away. Real sockets on 127.0.0.1 and real
child processes; the test plays the agent's reaper (os.waitpid on the daemon)."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
from launch_servers import launch_servers

from tfbuild_agent.control.wire import LineReader, LineSocket
from tfbuild_agent.launch.mpi.channel import (
    JobResult,
    LaunchRefused,
    ping,
    remote_exec,
    send_result,
)
from tfbuild_agent.launch.mpi.server import LaunchServer

pytestmark = pytest.mark.timeout(60)

TOKEN = "right-token"


@pytest.fixture
def serve(tmp_path: Path):
    with launch_servers(tmp_path, TOKEN) as make:
        yield make


def reap_daemon(server: LaunchServer) -> threading.Thread:
    """What the agent's reaper does for the daemon: wait for it, report its exit code."""

    def run() -> None:
        assert server.wait(lambda: server.pid is not None, 20)
        _, status = os.waitpid(server.pid, 0)
        server.reaped(server.pid, os.waitstatus_to_exitcode(status))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_ping_with_the_job_token_answers_waiting(serve) -> None:
    server, _logs = serve()
    assert ping("127.0.0.1", server.port, TOKEN) == "waiting"
    assert server.refusals == 0


def test_wrong_token_is_refused_and_logged(serve) -> None:
    server, logs = serve()
    with pytest.raises(LaunchRefused, match="wrong job token"):
        remote_exec("127.0.0.1", server.port, "not-the-token", ["orted", "--help"], print)
    assert server.refusals == 1
    assert not server.launched and server.pid is None
    assert any("refused exec from 127.0.0.1:" in line and "wrong job token" in line
               for line in logs), logs


def test_missing_credential_is_refused_and_logged(serve) -> None:
    server, logs = serve()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        link = LineSocket(sock, LineReader())
        challenge = link.receive(5)[0]
        assert challenge["type"] == "challenge" and challenge["nonce"]
        link.send({"type": "hello", "protocol": "tfbuild-mpi-launch/1", "op": "exec",
                   "nonce": "n", "command": ["orted"]}, 5)
        answer = link.receive(5)[0]
    assert answer["type"] == "refused" and answer["code"] == "bad_token"
    assert "no credential" in answer["reason"]
    assert any("refused exec" in line and "no credential" in line for line in logs), logs
    assert not server.launched


def test_garbage_before_the_handshake_is_dropped(serve) -> None:
    server, logs = serve()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.recv(4096)
        sock.sendall(b"x" * 20000)
        time.sleep(0.3)
    assert server.wait(lambda: any("dropped" in line for line in logs), 5), logs
    assert ping("127.0.0.1", server.port, TOKEN) == "waiting"  # still serving


def test_a_client_without_any_token_is_refused(serve) -> None:
    server, _ = serve()
    with pytest.raises(LaunchRefused):
        ping("127.0.0.1", server.port, None)


def test_exec_runs_the_command_like_ssh_and_returns_its_code(serve, capfdbinary) -> None:
    server, _logs = serve(programs=("printf",))
    reaper = reap_daemon(server)
    # One shell command line, quotes and `;` included, as Open MPI hands it to ssh.
    code = remote_exec("127.0.0.1", server.port, TOKEN,
                       ["printf", "'%s|%s\\n'", '"a b"', "${TFBUILD_JOB_TOKEN:-unset};",
                        "printf", "err", ">&2;", "exit", "7"], print)
    reaper.join(5)
    out = capfdbinary.readouterr()
    assert code == 7
    assert b"a b|unset\n" in out.out  # the token never reaches the launched command
    assert b"err" in out.err
    assert server.exit_code == 7


def test_only_open_mpi_daemons_are_launched(serve) -> None:
    server, logs = serve()
    with pytest.raises(LaunchRefused, match="runs none of orted, prted"):
        remote_exec("127.0.0.1", server.port, TOKEN, ["touch", "/tmp/tfbuild-pwned"], print)
    assert not server.launched
    assert any("refused exec" in line for line in logs)


def test_a_second_launch_is_refused(serve) -> None:
    server, _ = serve(programs=("sleep",))
    reaper = reap_daemon(server)
    first = threading.Thread(
        target=remote_exec, args=("127.0.0.1", server.port, TOKEN, ["sleep", "3"], print),
        daemon=True)
    first.start()
    assert server.wait(lambda: server.pid is not None, 10)
    assert ping("127.0.0.1", server.port, TOKEN) == "running"
    with pytest.raises(LaunchRefused, match="already launched"):
        remote_exec("127.0.0.1", server.port, TOKEN, ["sleep", "1"], print)
    first.join(10)
    reaper.join(5)
    assert server.exit_code == 0
    assert ping("127.0.0.1", server.port, TOKEN) == "done"


def test_the_daemon_is_stopped_when_the_launching_side_goes_away(serve) -> None:
    server, logs = serve(programs=("sleep",))
    reaper = reap_daemon(server)
    from tfbuild_agent.launch.mpi import channel as mpi_channel

    inbox, _ = mpi_channel._open("127.0.0.1", server.port, TOKEN, "exec",
                                 {"command": ["sleep", "60"]}, 5)
    assert server.wait(lambda: server.pid is not None, 10)
    started = time.monotonic()
    inbox.link.close()  # mpirun killed its rsh agent
    reaper.join(15)
    assert server.exit_code is not None and server.exit_code != 0
    assert time.monotonic() - started < mpi_channel.HEARTBEAT_INTERVAL + 3
    assert any("went away" in line for line in logs), logs


def test_result_is_kept_for_the_node(serve) -> None:
    server, _ = serve()
    send_result("127.0.0.1", server.port, TOKEN, JobResult(3, "rank 1 failed"))
    assert server.result == JobResult(3, "rank 1 failed")


def test_a_result_with_the_wrong_token_is_ignored(serve) -> None:
    server, _logs = serve()
    with pytest.raises(LaunchRefused):
        send_result("127.0.0.1", server.port, "forged", JobResult(0, "all fine"))
    assert server.result is None
    assert server.refusals == 1


def test_unreachable_agent_gives_ssh_connection_failure_code(capfd) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = remote_exec("127.0.0.1", port, TOKEN, ["orted"], print, connect_bound=1.0)
    assert code == 255
    assert f"cannot reach the agent at 127.0.0.1:{port}" in capfd.readouterr().out


def test_port_in_use_is_reported_with_the_fix() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        from tfbuild_agent.errors import DiscoveryError

        with pytest.raises(DiscoveryError, match="TFBUILD_MPI_LAUNCH_PORT"):
            LaunchServer(port, TOKEN, print, env={}, workdir="/", host="127.0.0.1")
