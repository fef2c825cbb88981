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


def test_same_content_needs_the_same_size_too() -> None:
    assert not same_content(Entry(10, "ab", 555), 11, "ab")
    assert not same_content(None, 10, "ab")


def test_a_manifest_from_before_parts_and_tails_reads_with_defaults(tmp_path) -> None:
    """Lines written by an older agent (no uploaded_at, parts, tail) still count."""
    path = tmp_path / "m.jsonl"
    path.write_text('{"path": "outputs/a", "size": 3, "sha256": "aa", "mtime_ns": 100}\n'
                    '{"path": "outputs/b", "size": "x", "sha256": "bb", "mtime_ns": 1}\n'
                    '{"size": 1, "sha256": "cc", "mtime_ns": 1}\n'
                    '["not", "an", "object"]\n')
    m = Manifest(path)
    assert m.get("outputs/a") == Entry(3, "aa", 100, 0.0, 0, "")
    assert m.paths() == ["outputs/a"]  # the broken lines are skipped, not fatal


def test_a_missing_manifest_is_empty_and_the_first_record_creates_it(tmp_path) -> None:
    path = tmp_path / "deep" / "state" / "m.jsonl"
    m = Manifest(path)
    assert m.paths() == []
    m.record("outputs/a", Entry(1, "aa", 1))
    assert path.exists() and Manifest(path).paths() == ["outputs/a"]


def test_tail_digest_of_a_short_prefix_covers_it_from_byte_0(tmp_path) -> None:
    f = tmp_path / "log"
    f.write_bytes(b"0123456789" * 500)
    fd = os.open(f, os.O_RDONLY)
    try:
        assert tail_digest(fd, 100) == hashlib.sha256(b"0123456789" * 10).hexdigest()
        assert tail_digest(fd, 4096) == hashlib.sha256(f.read_bytes()[:4096]).hexdigest()
        assert tail_digest(fd, 0) == hashlib.sha256(b"").hexdigest()
    finally:
        os.close(fd)


def test_records_after_a_torn_line_still_count(tmp_path) -> None:
    """A crash tore a line; the restarted agent appends after it. The first new record
    is glued to the torn one and lost (that file is uploaded once more); every later
    one is read back."""
    path = tmp_path / "m.jsonl"
    Manifest(path).record("outputs/a", Entry(1, "aa", 1))
    with open(path, "a") as f:
        f.write('{"path": "outputs/torn", "si')
    restarted = Manifest(path)
    restarted.record("outputs/b", Entry(2, "bb", 2))
    restarted.record("outputs/c", Entry(3, "cc", 3))
    assert Manifest(path).paths() == ["outputs/a", "outputs/c"]
