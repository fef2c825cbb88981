"""The wire format and the handshake both channels share, without sockets where none are
needed: framing limits, what each MAC covers, and the per-message session rules. The
channels' ends under attack are in test_channel_security.py."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tfbuild_agent.control import handshake, wire
from tfbuild_agent.control.wire import (
    CLIENT_TO_SERVER,
    MAX_LINE,
    MAX_UNAUTHENTICATED_LINE,
    PROTOCOL,
    LineReader,
    LineSocket,
    ProtocolError,
    Session,
    encode,
)

TOKEN = "the-job-token"
JOIN = {"protocol": PROTOCOL, "identity": "b", "node_rank": 1, "node_count": 2,
        "advertise": "10.0.0.2", "nonce": "c" * 32}


# -- framing ----------------------------------------------------------------------------


def test_encode_is_one_compact_json_line() -> None:
    assert encode({"type": "hb", "n": [1, 2]}) == b'{"type":"hb","n":[1,2]}\n'


def test_lines_split_across_reads_and_several_in_one_read_are_all_decoded() -> None:
    reader = LineReader()
    assert reader.feed(b'{"type":"a"}\n{"ty') == [{"type": "a"}]
    assert reader.feed(b'pe":"b"}\n\n  \n{"type":"c"}\n') == [{"type": "b"}, {"type": "c"}]
    assert reader.feed(b"") == []


@pytest.mark.parametrize(("limit", "size"), [(MAX_UNAUTHENTICATED_LINE, 8 * 1024),
                                             (MAX_LINE, 4 * 1024 * 1024)])
def test_the_documented_line_limits_hold(limit: int, size: int) -> None:
    """docs/rendezvous.md: 8 KiB from an unauthenticated peer, afterwards 4 MiB (a
    512-node `formed` message is ~40 KB)."""
    reader = LineReader(limit)
    assert reader.feed(b"x" * size) == []
    with pytest.raises(ProtocolError, match=f"longer than {size} bytes"):
        reader.feed(b"x")


def test_a_line_longer_than_the_limit_is_refused_and_one_at_the_limit_is_not() -> None:
    assert LineReader().limit == MAX_LINE
    assert MAX_UNAUTHENTICATED_LINE < MAX_LINE
    reader = LineReader(limit=16)
    assert reader.feed(b"x" * 16) == []  # still waiting for its end
    with pytest.raises(ProtocolError, match="longer than 16 bytes"):
        reader.feed(b"x")


@pytest.mark.parametrize(
    "line", [b"not json\n", b"\xff\xfe\n", b"[1, 2]\n", b'{"kind": "x"}\n', b'{"type": 3}\n']
)
def test_anything_but_a_typed_json_object_is_a_protocol_error(line: bytes) -> None:
    with pytest.raises(ProtocolError, match="not a"):
        LineReader().feed(line)


# -- what the MACs cover ------------------------------------------------------------------


@pytest.mark.parametrize("field", sorted(JOIN))
def test_the_join_mac_covers_every_field(field: str) -> None:
    mac = wire.join_mac(TOKEN, "s" * 32, JOIN)
    changed = {**JOIN, field: "changed"}
    assert wire.join_mac(TOKEN, "s" * 32, changed) != mac
    assert wire.join_mac(TOKEN, "s" * 32, {k: v for k, v in JOIN.items() if k != field}) != mac


def test_the_join_mac_covers_the_server_nonce_and_the_token_not_the_field_order() -> None:
    mac = wire.join_mac(TOKEN, "s" * 32, JOIN)
    assert wire.join_mac(TOKEN, "t" * 32, JOIN) != mac
    assert wire.join_mac("other", "s" * 32, JOIN) != mac
    assert wire.join_mac(TOKEN, "s" * 32, dict(reversed(JOIN.items()))) == mac
    assert len(mac) == 64 and int(mac, 16) >= 0


def test_the_accept_mac_covers_both_nonces_and_the_token() -> None:
    mac = wire.accept_mac(TOKEN, "s", "c")
    assert {wire.accept_mac(TOKEN, "x", "c"), wire.accept_mac(TOKEN, "s", "x"),
            wire.accept_mac("other", "s", "c")}.isdisjoint({mac})
    # A join proof is never an accept proof, even over the same values.
    assert wire.join_mac(TOKEN, "s", {"nonce": "c"}) != mac


def test_without_a_token_both_ends_agree_and_differ_from_any_token() -> None:
    assert wire.accept_mac(None, "s", "c") == wire.accept_mac("", "s", "c")
    assert wire.accept_mac(None, "s", "c") != wire.accept_mac(TOKEN, "s", "c")


def test_macs_equal_takes_only_the_same_string() -> None:
    mac = wire.accept_mac(TOKEN, "s", "c")
    assert wire.macs_equal(mac, mac)
    assert not wire.macs_equal(mac.upper(), mac)
    assert not wire.macs_equal(None, mac)
    assert not wire.macs_equal(list(mac), mac)


def test_the_session_key_depends_on_token_protocol_and_both_nonces() -> None:
    key = wire.session_key(TOKEN, PROTOCOL, "s", "c")
    others = {wire.session_key("x", PROTOCOL, "s", "c"),
              wire.session_key(TOKEN, "p/2", "s", "c"),
              wire.session_key(TOKEN, PROTOCOL, "x", "c"),
              wire.session_key(TOKEN, PROTOCOL, "s", "x")}
    assert key not in others and len(others) == 4
    assert len(key) == 32


def test_nonces_are_fresh_and_long() -> None:
    nonces = {wire.new_nonce() for _ in range(50)}
    assert len(nonces) == 50 and all(len(n) == 32 for n in nonces)


# -- sessions ----------------------------------------------------------------------------


def pair() -> tuple[Session, Session]:
    key = wire.session_key(TOKEN, PROTOCOL, "s", "c")
    return Session(key, "c2s", "s2c"), Session(key, "s2c", "c2s")


def test_sealed_messages_are_numbered_and_accepted_in_order() -> None:
    client, server = pair()
    first, second = client.seal({"type": "hb"}), client.seal({"type": "report", "x": 1})
    assert (first["seq"], second["seq"]) == (1, 2)
    assert first["type"] == "hb" and len(first["mac"]) == 64
    assert server.check(first) is None
    assert server.check(second) is None
    assert server.check(client.seal({"type": "hb"})) is None


def test_a_replayed_or_skipped_message_is_refused_and_the_next_genuine_one_accepted() -> None:
    client, server = pair()
    first, second, third = (client.seal({"type": "hb"}) for _ in range(3))
    assert server.check(first) is None
    assert "sequence number is 1, expected 2 (a replay?)" in server.check(first)
    assert "sequence number is 3, expected 2" in server.check(third)
    assert server.check(second) is None
    assert server.check(third) is None


def test_an_altered_unsigned_or_reflected_message_is_refused() -> None:
    client, server = pair()
    sealed = client.seal({"type": "report", "exit_code": 0})
    assert "does not match" in server.check({**sealed, "exit_code": 1})
    assert "does not match" in server.check({**sealed, "seq": 2})
    assert server.check({k: v for k, v in sealed.items() if k != "mac"}) == "it carries no MAC"
    # A message sent back to its sender fails: the direction is inside the MAC.
    assert "does not match" in client.check(sealed)
    other = Session(wire.session_key("other", PROTOCOL, "s", "c"), "s2c", "c2s")
    assert "does not match" in other.check(sealed)
    assert server.check(sealed) is None  # the refusals did not advance the count


def test_the_mac_does_not_depend_on_the_order_of_keys_on_the_wire() -> None:
    """JSON objects are unordered: a peer (or proxy) that writes keys in another order
    sends the same message."""
    client, server = pair()
    sealed = client.seal({"type": "report", "task": "worker-0", "kind": "completed"})
    assert server.check(dict(reversed(sealed.items()))) is None


def test_seal_replaces_a_mac_the_caller_left_in() -> None:
    client, server = pair()
    assert server.check(client.seal({"type": "hb", "mac": "forged"})) is None


# -- LineSocket ----------------------------------------------------------------------------


@pytest.fixture
def link_pair():
    a, b = socket.socketpair()
    left, right = LineSocket(a), LineSocket(b)
    yield left, right
    left.close()
    right.close()


def test_a_line_socket_sends_and_receives_and_sees_the_end(link_pair) -> None:
    left, right = link_pair
    assert right.receive(0.0) == []
    left.send({"type": "hb"}, 1)
    assert right.receive(1) == [{"type": "hb"}]
    left.close()
    assert right.receive(1) is None


def test_receive_waits_no_longer_than_asked_and_not_at_all_for_a_past_deadline(
    link_pair,
) -> None:
    _, right = link_pair
    for timeout in (0.0, -1.0, 0.05):
        started = time.monotonic()
        assert right.receive(timeout) == []
        assert time.monotonic() - started < 0.5, timeout


def test_once_secured_sends_are_sealed_and_bad_messages_go_to_on_reject(link_pair) -> None:
    left, right = link_pair
    client, server = pair()
    rejected: list[tuple[str, str]] = []
    left.secure(client, lambda m, why: None)
    right.secure(server, lambda m, why: rejected.append((m["type"], why)))
    left.send({"type": "report"}, 1)
    left.sock.sendall(encode({"type": "forged"}))
    [report] = right.receive(1)
    assert (report["type"], report["seq"]) == ("report", 1)  # sealed by left, checked by right
    assert right.receive(0.2) == []
    assert rejected == [("forged", "it carries no MAC")]


def test_only_one_unsealed_answer_passes_after_a_hello(link_pair) -> None:
    left, right = link_pair
    rejected: list[str] = []
    right.secure(pair()[0], lambda m, why: rejected.append(m["type"]), answer_pending=True)
    left.sock.sendall(encode({"type": "accepted"}) + encode({"type": "refused"})
                      + encode({"type": "formed"}))
    assert right.receive(1) == [{"type": "accepted"}]
    assert rejected == ["refused", "formed"]


def test_an_unsealed_answer_is_not_let_through_unless_one_is_pending(link_pair) -> None:
    left, right = link_pair
    rejected: list[str] = []
    right.secure(pair()[0], lambda m, why: rejected.append(m["type"]))
    left.sock.sendall(encode({"type": "accepted"}))
    assert right.receive(1) == []
    assert rejected == ["accepted"]


# -- the handshake ------------------------------------------------------------------------


def test_a_challenge_names_the_protocol_and_a_fresh_nonce() -> None:
    (first, n1), (second, n2) = handshake.challenge("p/1"), handshake.challenge("p/1")
    assert first == {"type": "challenge", "protocol": "p/1", "nonce": n1}
    assert n1 != n2 and second["nonce"] == n2


def _hello(token: str | None = TOKEN, kind: str = "join", protocol: str = PROTOCOL):
    opening, nonce = handshake.challenge(protocol)
    fields = {"protocol": protocol, "identity": "b", "node_rank": 1}
    return handshake.hello(token, kind, opening, fields), nonce


def test_a_hello_from_the_token_holder_passes_with_its_fields() -> None:
    greeting, nonce = _hello()
    assert greeting.message["type"] == "join" and greeting.server_nonce == nonce
    assert greeting.message["nonce"] == greeting.fields["nonce"]
    checked = handshake.check_hello(TOKEN, PROTOCOL, "join", nonce, greeting.message)
    assert checked.fields == greeting.fields
    assert "type" not in checked.fields and "mac" not in checked.fields
    assert (checked.code, checked.reason) == ("", "")


@pytest.mark.parametrize(("kind", "protocol"), [("hello", PROTOCOL), ("join", "other/9")])
def test_another_message_or_protocol_is_refused_as_a_version_mismatch(kind, protocol) -> None:
    greeting, nonce = _hello(kind=kind, protocol=protocol)
    checked = handshake.check_hello(TOKEN, PROTOCOL, "join", nonce, greeting.message)
    assert checked.fields is None and checked.code == "version"
    assert repr(PROTOCOL) in checked.reason
    assert "same tfbuild version" in checked.fix


def test_a_wrong_or_missing_credential_is_refused_saying_which() -> None:
    greeting, nonce = _hello(token="wrong")
    wrong = handshake.check_hello(TOKEN, PROTOCOL, "join", nonce, greeting.message)
    assert wrong.fields is None and wrong.code == "bad_token"
    assert "a wrong job token" in wrong.reason and "TFBUILD_JOB_TOKEN" in wrong.fix
    bare = {k: v for k, v in greeting.message.items() if k != "mac"}
    missing = handshake.check_hello(TOKEN, PROTOCOL, "join", nonce, bare)
    assert missing.code == "bad_token" and "no credential" in missing.reason


def test_the_accepted_answer_proves_the_token_and_both_sessions_talk() -> None:
    greeting, nonce = _hello()
    fields = handshake.check_hello(TOKEN, PROTOCOL, "join", nonce, greeting.message).fields
    answer, server = handshake.accepted(TOKEN, PROTOCOL, nonce, fields, have=1, type="x")
    assert answer["type"] == "accepted" and answer["have"] == 1
    assert greeting.accepted_by_token_holder(TOKEN, answer)
    assert not greeting.accepted_by_token_holder(TOKEN, {**answer, "type": "refused"})
    assert not greeting.accepted_by_token_holder("other", answer)
    client = greeting.session(TOKEN, PROTOCOL)
    assert server.check(client.seal({"type": "hb"})) is None
    assert client.check(server.seal({"type": "formed"})) is None
    # Another protocol over the same nonces gets another key: the channels never mix.
    assert "does not match" in greeting.session(TOKEN, "tfbuild-mpi-launch/1").check(
        server.seal({"type": "formed"}))
    json.dumps(answer)  # goes on the wire as is
    assert CLIENT_TO_SERVER == "c2s"


def test_an_answer_from_another_token_holder_is_not_proof() -> None:
    greeting, nonce = _hello()
    answer, _ = handshake.accepted("other", PROTOCOL, nonce, greeting.fields)
    assert not greeting.accepted_by_token_holder(TOKEN, answer)
    assert not greeting.accepted_by_token_holder(TOKEN, {"type": "accepted"})
