"""The upload manifest (persisted, torn-line tolerant) and copy-aside hashing."""

from __future__ import annotations

import hashlib
import os

from tfbuild_agent.sync.manifest import Entry, Manifest, same_content, tail_digest, unchanged


def test_record_survives_a_restart_and_the_last_line_wins(tmp_path) -> None:
    path = tmp_path / "state" / "manifest.jsonl"
    m = Manifest(path)
    m.record("outputs/a", Entry(3, "aa", 100))
    m.record("outputs/a", Entry(4, "bb", 200))
    m.record("logs/x", Entry(1, "cc", 300))
    again = Manifest(path)
    assert again.get("outputs/a") == Entry(4, "bb", 200)
    assert again.paths() == ["logs/x", "outputs/a"]
    assert again.get("outputs/none") is None


def test_a_torn_last_line_is_ignored(tmp_path) -> None:
    path = tmp_path / "manifest.jsonl"
    Manifest(path).record("outputs/a", Entry(3, "aa", 100))
    with open(path, "a") as f:
        f.write('{"path": "outputs/b", "size": 5, "sha')  # crash mid-write
    m = Manifest(path)
    assert m.get("outputs/a") == Entry(3, "aa", 100)
    assert m.get("outputs/b") is None


def test_unchanged_and_same_content() -> None:
    e = Entry(10, "ab", 555)
    assert unchanged(e, 10, 555)
    assert not unchanged(e, 10, 556) and not unchanged(e, 11, 555) and not unchanged(None, 1, 1)
    assert same_content(e, 10, "ab") and not same_content(e, 10, "cd")


def test_a_content_hash_that_was_never_computed_never_matches() -> None:
    assert not same_content(Entry(10, "", 555), 10, "")


def test_log_parts_and_tail_survive_a_restart(tmp_path) -> None:
    path = tmp_path / "m.jsonl"
    Manifest(path).record("logs/x", Entry(5, "", 7, 1.0, parts=3, tail="t"))
    assert Manifest(path).get("logs/x") == Entry(5, "", 7, 1.0, 3, "t")


def test_tail_digest_looks_only_at_the_bytes_before_the_offset(tmp_path) -> None:
    f = tmp_path / "log"
    f.write_bytes(os.urandom(10000))
    fd = os.open(f, os.O_RDONLY)
    try:
        first = tail_digest(fd, 6000)
        with open(f, "ab") as out:
            out.write(b"more")
        assert tail_digest(fd, 6000) == first
        assert first == hashlib.sha256(f.read_bytes()[6000 - 4096:6000]).hexdigest()
    finally:
        os.close(fd)
