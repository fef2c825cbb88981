"""The upload manifest (persisted, torn-line tolerant) and copy-aside hashing."""

from __future__ import annotations

import hashlib
import os

from tfbuild_agent.sync.manifest import Entry, Manifest, copy_aside, same_content, unchanged


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


def test_copy_aside_copies_and_hashes_in_one_pass(tmp_path) -> None:
    src = tmp_path / "big.bin"
    data = os.urandom(9 * 2**20 + 13)  # several chunks and a ragged end
    src.write_bytes(data)
    snap = copy_aside(src, tmp_path / "staging" / "copy")
    assert snap.path.read_bytes() == data
    assert snap.sha256 == hashlib.sha256(data).hexdigest()
    assert snap.size == len(data)
    assert snap.mtime_ns == src.stat().st_mtime_ns
    assert not snap.changed_while_copying
