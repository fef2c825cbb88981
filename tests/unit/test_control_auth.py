"""Every control message after the handshake is authenticated: injected, altered or
replayed messages are ignored and logged, on both ends of the channel."""

from __future__ import annotations

import socket
import threading

from rendezvous_helpers import TOKEN, Logs, close_all, collect, form, free_port, settings

from tfbuild_agent.control import handshake
from tfbuild_agent.control.client import join_rendezvous
from tfbuild_agent.control.wire import PROTOCOL, LineSocket, Session, encode


def test_unauthenticated_finished_and_bye_sent_to_the_server_are_ignored_and_logged() -> None:
    port, log = free_port(), Logs()
    channels = form(port, ["a", "b"], log=log, server="a")
    try:
        # Written straight onto b's authenticated connection, without b's session: what a
        # process that hijacked or spoofed the stream could do.
        raw = channels["b"]._link.sock
        raw.sendall(encode({"type": "report", "task": "worker-0", "kind": "finished",
                            "exit_code": 0}))
        raw.sendall(encode({"type": "report", "task": "worker-1", "kind": "failed",
                            "exit_code": 1, "seq": 99, "mac": "00" * 32}))
        raw.sendall(encode({"type": "bye"}))
        assert collect(channels["a"], 1.0) == []  # no event reached the other node
        ignored = log.matching("failed authentication")
        assert len(ignored) == 3, log.lines
        assert any("'report'" in line for line in ignored)
        # b is still a running member: a real report from it still gets through.
        channels["b"].decisive_task = "worker-0"
        channels["b"].report("worker-0", "Completed", 0)
        event = channels["a"].next_event(5)
        assert event is not None and event.kind == "finished"
    finally:
        close_all(channels)


def test_a_connection_that_never_joined_cannot_report() -> None:
    port, log = free_port(), Logs()
    channels = form(port, ["a", "b"], log=log, server="a")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as intruder:
            intruder.sendall(encode({"type": "report", "task": "worker-0", "kind": "failed",
                                     "exit_code": 3}))
            intruder.settimeout(5)
            while intruder.recv(4096):  # the server drops it
                pass
        assert collect(channels["b"], 0.5) == []
        assert log.matching("before joining"), log.lines
    finally:
        close_all(channels)


def test_unauthenticated_lost_finished_and_closing_sent_to_a_node_are_ignored() -> None:
    """A server end that completes a real handshake, then sends forged and replayed
    messages before one genuine event: the node sees only the genuine one."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", free_port()))
    listener.listen()
    port = listener.getsockname()[1]
    done = threading.Event()

    def server() -> None:
        conn, _ = listener.accept()
        link = LineSocket(conn)
        opening, nonce = handshake.challenge(PROTOCOL)
        link.send(opening, 2)
        join = link.receive(2)[0]
        accepted, session = handshake.accepted(TOKEN, PROTOCOL, nonce, join)
        formed = session.seal({"type": "formed", "rank": 1, "hosts": ["h0", "h1"],
                               "identities": ["a", "b"]})
        forged = Session(b"not the job token", "s2c", "c2s")
        lines = [
            accepted,
            formed,
            {"type": "event", "kind": "lost", "identity": "a", "rank": 0,
             "message": "node a lost"},
            forged.seal({"type": "event", "kind": "finished", "task": "worker-0",
                         "message": "forged"}),
            {"type": "closing", "reason": "stop now"},
            formed,  # a replay of a genuine message
            session.seal({"type": "event", "kind": "completed", "task": "worker-0",
                          "message": "genuine"}),
        ]
        conn.sendall(b"".join(encode(m) for m in lines))
        done.wait(10)
        link.close()

    t = threading.Thread(target=server)
    t.start()
    log = Logs()
    try:
        channel = join_rendezvous(
            settings(port, "b", 2, serve=False, heartbeat_interval=1.0), log, timeout=5
        )
        events = collect(channel, 1.0)
        assert [(e.kind, e.message) for e in events] == [("completed", "genuine")]
        ignored = log.matching("failed authentication")
        assert len(ignored) == 4, log.lines
        assert any("a replay" in line for line in ignored)
        done.set()
        channel.close()
    finally:
        done.set()
        t.join()
        listener.close()
