"""Uploader decisions, one file at a time, against a file:// store (a real folder): what
is uploaded again and what is not, when a file counts as settled, logs in parts.
The Syncer end to end (watching, scheduling, records) is test_sync_syncer.py."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tfbuild_agent.sync.layout import remote_key
from tfbuild_agent.sync.manifest import Manifest
from tfbuild_agent.sync.scheduler import Item
from tfbuild_agent.sync.store import open_store
from tfbuild_agent.sync.uploader import (
    EMPTY_SETTLE,
    FAILED,
    GONE,
    SKIPPED,
    UNSETTLED,
    UPLOADED,
    Outcome,
    Uploader,
    describe_error,
)

SETTLE, OUTPUT_SETTLE, SNAPSHOT = 5.0, 30.0, 60.0


class Setup:
    def __init__(self, tmp_path: Path, owns: bool = True, open_files: tuple[str, ...] = ()):
        self.workdir = tmp_path / "wd"
        (self.workdir / "outputs").mkdir(parents=True)
        (self.workdir / "logs").mkdir()
        self.dest = tmp_path / "store"
        self.store = open_store(f"file://{self.dest}").child("run-1")
        self.manifest_path = tmp_path / "manifest.jsonl"
        self.manifest = Manifest(self.manifest_path)
        self.open_files = set(open_files)
        self.uploader = Uploader(
            self.store, self.manifest, self.workdir,
            lambda rel: remote_key(rel, "worker-1", owns),
            settle=SETTLE, output_settle=OUTPUT_SETTLE, snapshot_after=SNAPSHOT,
            is_open=lambda rel: rel in self.open_files,
        )

    def write(self, rel: str, data: bytes, age: float = 5.0) -> Path:
        """Write `rel`, last modified `age` seconds ago (settled unless age is small)."""
        path = self.workdir / rel
        path.write_bytes(data)
        then = time.time() - age
        os.utime(path, (then, then))
        return path

    def upload(self, rel: str, *, closed: bool = True, final: bool = False,
               first_seen: float | None = None, now_wall: float | None = None) -> Outcome:
        now = time.monotonic()
        item = Item(rel, now, now, now if first_seen is None else first_seen, closed)
        wall = time.time() if now_wall is None else now_wall
        return self.uploader.upload(item, now_wall=wall, now_mono=now, final=final)

    def write_at(self, rel: str, data: bytes, mtime: int) -> Path:
        """Write `rel` with a whole-second mtime, for exact quiet times."""
        path = self.workdir / rel
        path.write_bytes(data)
        os.utime(path, (mtime, mtime))
        return path

    def stored(self, key: str) -> Path:
        return self.dest / "run-1" / key


@pytest.fixture
def s(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def test_a_closed_output_is_uploaded_once_and_then_skipped(s: Setup) -> None:
    s.write("outputs/model.h5", b"weights")
    assert s.upload("outputs/model.h5") == Outcome(UPLOADED, size=7)
    assert s.stored("outputs/model.h5").read_bytes() == b"weights"
    assert s.upload("outputs/model.h5").kind == SKIPPED


def test_a_touched_but_unchanged_file_is_not_uploaded_again(s: Setup) -> None:
    """A script that rewrites its checkpoint with the same bytes (or `touch`) must not
    cost an upload: the content hash matches, only the manifest learns the new mtime."""
    s.write("outputs/model.h5", b"weights", age=60)
    assert s.upload("outputs/model.h5").kind == UPLOADED
    before = s.stored("outputs/model.h5").stat()
    s.write("outputs/model.h5", b"weights", age=5)  # same bytes, newer mtime
    assert s.upload("outputs/model.h5").kind == SKIPPED
    after = s.stored("outputs/model.h5").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    # The manifest (also after a restart) knows the new mtime: the next look reads nothing.
    mtime = (s.workdir / "outputs/model.h5").stat().st_mtime_ns
    assert Manifest(s.manifest_path).get("outputs/model.h5").mtime_ns == mtime


def test_changed_content_of_the_same_size_is_uploaded_again(s: Setup) -> None:
    s.write("outputs/model.h5", b"weights", age=60)
    s.upload("outputs/model.h5")
    s.write("outputs/model.h5", b"WEIGHTS", age=5)
    assert s.upload("outputs/model.h5") == Outcome(UPLOADED, size=7)
    assert s.stored("outputs/model.h5").read_bytes() == b"WEIGHTS"


def test_a_file_of_another_task_goes_under_its_task_folder(tmp_path: Path) -> None:
    other = Setup(tmp_path, owns=False)
    other.write("outputs/model.h5", b"w1")
    assert other.upload("outputs/model.h5").kind == UPLOADED
    assert other.stored("tasks/worker-1/outputs/model.h5").read_bytes() == b"w1"
    assert not other.stored("outputs/model.h5").exists()


def test_a_file_deleted_before_its_upload_is_gone(s: Setup) -> None:
    assert s.upload("outputs/never.txt").kind == GONE


def test_an_unclosed_output_waits_until_it_has_been_quiet_for_the_settle_time(s: Setup) -> None:
    s.write("outputs/metrics.csv", b"a,b\n", age=0.2)
    out = s.upload("outputs/metrics.csv", closed=False)
    assert out.kind == UNSETTLED
    assert SETTLE - 0.2 - 0.5 < out.wait <= SETTLE - 0.2 + 0.01
    s.write("outputs/metrics.csv", b"a,b\n", age=SETTLE + 0.5)
    assert s.upload("outputs/metrics.csv", closed=False).kind == UPLOADED


def test_an_output_held_open_waits_for_the_output_settle_time(tmp_path: Path) -> None:
    held = Setup(tmp_path, open_files=("outputs/ckpt",))
    held.write("outputs/ckpt", b"half", age=SETTLE + 2)
    out = held.upload("outputs/ckpt", closed=False)
    assert out.kind == UNSETTLED and out.wait > SETTLE
    assert held.uploader.settle_for("outputs/ckpt") == OUTPUT_SETTLE
    assert held.uploader.settle_for("logs/ckpt") == SETTLE  # a log open for good is normal
    assert held.uploader.settle_for("outputs/other") == SETTLE


def test_only_logs_are_snapshotted_while_written_without_pause(s: Setup) -> None:
    assert s.uploader.max_wait_for("logs/train.log") == SNAPSHOT
    assert s.uploader.max_wait_for("outputs/model.h5") is None
    long_ago = time.monotonic() - SNAPSHOT - 1
    s.write("logs/train.log", b"step 1\n", age=0.0)
    assert s.upload("logs/train.log", closed=False, first_seen=long_ago).kind == UPLOADED
    s.write("outputs/busy.bin", b"x", age=0.0)
    assert s.upload("outputs/busy.bin", closed=False, first_seen=long_ago).kind == UNSETTLED
    recent = time.monotonic() - SNAPSHOT + 5
    s.write("logs/other.log", b"x", age=0.0)
    assert s.upload("logs/other.log", closed=False, first_seen=recent).kind == UNSETTLED


def test_a_growing_log_is_sent_as_appended_parts_then_whole_at_the_end(s: Setup) -> None:
    s.write("logs/train.log", b"line 1\n")
    assert s.upload("logs/train.log") == Outcome(UPLOADED, size=7)
    s.write("logs/train.log", b"line 1\nline 2\n")
    assert s.upload("logs/train.log") == Outcome(UPLOADED, size=7)  # only what was appended
    assert len(s.store.parts_of("logs/train.log")) == 2
    assert s.manifest.get("logs/train.log").parts == 2  # how many parts the store holds
    assert s.store.read("logs/train.log") == b"line 1\nline 2\n"
    s.write("logs/train.log", b"line 1\nline 2\n", age=1.0)  # touched, nothing appended
    assert s.upload("logs/train.log").kind == SKIPPED
    assert s.upload("logs/train.log", final=True) == Outcome(UPLOADED, size=14)
    assert s.store.parts_of("logs/train.log") == []
    assert s.stored("logs/train.log").read_bytes() == b"line 1\nline 2\n"
    assert s.upload("logs/train.log", final=True).kind == SKIPPED


def test_a_rewritten_log_starts_a_new_series(s: Setup) -> None:
    s.write("logs/train.log", b"epoch 1 of run A\n")
    s.upload("logs/train.log")
    s.write("logs/train.log", b"EPOCH 1 of run B, longer\n")
    assert s.upload("logs/train.log") == Outcome(UPLOADED, size=25)
    assert s.store.read("logs/train.log") == b"EPOCH 1 of run B, longer\n"
    assert len(s.store.parts_of("logs/train.log")) == 1


def test_a_log_uploaded_whole_then_appended_is_replaced_by_parts(s: Setup) -> None:
    s.write("logs/train.log", b"one\n")
    s.upload("logs/train.log", final=True)
    assert s.stored("logs/train.log").read_bytes() == b"one\n"
    s.write("logs/train.log", b"one\ntwo\n")
    assert s.upload("logs/train.log").kind == UPLOADED
    assert s.store.read("logs/train.log") == b"one\ntwo\n"


def test_error_descriptions_are_one_bounded_line() -> None:
    assert describe_error(OSError("disk\nfull")) == "OSError: disk full"
    long = describe_error(ValueError("x" * 1000))
    assert len(long) == 300 and long.endswith("...")
    assert describe_error(ValueError("x" * 288)) == "ValueError: " + "x" * 288  # 300: kept
    assert describe_error(ValueError("x" * 289)).endswith("x...")  # 301: cut to 300
    assert len(describe_error(ValueError("x" * 289))) == 300


def test_without_a_watcher_no_file_counts_as_held_open(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    bare = Uploader(s.store, s.manifest, s.workdir, lambda rel: rel,
                    settle=SETTLE, output_settle=OUTPUT_SETTLE, snapshot_after=SNAPSHOT)
    assert bare.settle_for("outputs/model.h5") == SETTLE


def test_a_log_is_snapshotted_from_exactly_snapshot_after_seconds(s: Setup) -> None:
    item = Item("logs/train.log", 0.0, 0.0, 100.0, False)
    assert s.uploader.may_snapshot(item, 100.0 + SNAPSHOT)
    assert not s.uploader.may_snapshot(item, 100.0 + SNAPSHOT - 0.001)


def test_settle_boundaries_are_exact(s: Setup) -> None:
    """Quiet for exactly the settle time counts as settled; an output reopened after its
    close waits until it has been quiet for output_settle, unless this is the final flush."""
    mtime = int(time.time()) - 100
    s.write_at("outputs/a.csv", b"a", mtime)
    out = s.upload("outputs/a.csv", closed=False, now_wall=mtime + SETTLE - 1)
    assert out == Outcome(UNSETTLED, wait=1.0)
    assert s.upload("outputs/a.csv", closed=False, now_wall=mtime + SETTLE).kind == UPLOADED
    # A clock behind the file's mtime: wait the whole settle time, not less.
    s.write_at("outputs/b.csv", b"b", mtime)
    assert s.upload("outputs/b.csv", closed=False, now_wall=mtime - 50) == Outcome(
        UNSETTLED, wait=SETTLE)


def test_an_output_opened_again_after_its_close_waits_unless_final(tmp_path: Path) -> None:
    held = Setup(tmp_path, open_files=("outputs/ckpt",))
    mtime = int(time.time()) - 100
    held.write_at("outputs/ckpt", b"v1", mtime)
    assert held.upload("outputs/ckpt", now_wall=mtime + 10) == Outcome(UNSETTLED, wait=SETTLE)
    assert held.upload("outputs/ckpt", now_wall=mtime + OUTPUT_SETTLE - 2) == Outcome(
        UNSETTLED, wait=2.0)
    assert held.upload("outputs/ckpt", now_wall=mtime + OUTPUT_SETTLE).kind == UPLOADED
    held.write_at("outputs/ckpt", b"v2", mtime + 1)
    assert held.upload("outputs/ckpt", now_wall=mtime + 10, final=True).kind == UPLOADED
    assert held.stored("outputs/ckpt").read_bytes() == b"v2"


def test_a_just_written_closed_output_is_uploaded_after_the_tick_check(s: Setup) -> None:
    s.write("outputs/fresh.bin", b"fresh", age=0.0)
    assert s.upload("outputs/fresh.bin").kind == UPLOADED


def test_a_write_between_the_settle_check_and_the_read_postpones_the_upload(
    tmp_path: Path,
) -> None:
    """The file changes after it was judged settled, before it is opened (the watcher is
    asked in between): nothing is stored and it is looked at again shortly."""
    rel = "outputs/race.bin"
    s = Setup(tmp_path)

    def write_meanwhile(asked: str) -> bool:
        if asked == rel:
            with open(s.workdir / rel, "ab") as f:
                f.write(b" and more")
        return False

    s.uploader.is_open = write_meanwhile
    s.write(rel, b"first", age=1.0)
    assert s.upload(rel) == Outcome(UNSETTLED, wait=0.2)
    assert not s.stored(rel).exists()


def test_a_file_deleted_between_the_settle_check_and_the_read_is_gone(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.uploader.is_open = lambda asked: (s.workdir / asked).unlink() or False
    s.write("outputs/tmp.bin", b"x", age=1.0)
    assert s.upload("outputs/tmp.bin").kind == GONE


def test_a_file_deleted_while_its_settle_time_is_checked_is_looked_at_again_soon(
    tmp_path: Path,
) -> None:
    s = Setup(tmp_path)
    s.uploader.is_open = lambda asked: (s.workdir / asked).unlink(missing_ok=True) or False
    s.write("outputs/tmp.bin", b"x", age=SETTLE + 1)
    assert s.upload("outputs/tmp.bin", closed=False) == Outcome(UNSETTLED, wait=0.2)
    assert s.upload("outputs/tmp.bin", closed=False).kind == GONE


def test_a_path_that_cannot_be_read_fails_with_the_reason(s: Setup) -> None:
    s.write("outputs/file", b"x")
    out = s.upload("outputs/file/inside")
    assert out.kind == FAILED and "cannot read" in out.error and "NotADirectoryError" in out.error


def test_a_log_in_one_part_is_put_whole_at_the_end(s: Setup) -> None:
    s.write("logs/train.log", b"only line\n")
    s.upload("logs/train.log")
    assert len(s.store.parts_of("logs/train.log")) == 1
    assert s.upload("logs/train.log", final=True) == Outcome(UPLOADED, size=10)
    assert s.store.parts_of("logs/train.log") == []
    assert s.stored("logs/train.log").read_bytes() == b"only line\n"


def test_a_rewritten_log_leaves_none_of_the_old_parts_behind(s: Setup) -> None:
    s.write("logs/train.log", b"run A line 1\n")
    s.upload("logs/train.log")
    s.write("logs/train.log", b"run A line 1\nrun A line 2\n")
    s.upload("logs/train.log")
    assert len(s.store.parts_of("logs/train.log")) == 2
    s.write("logs/train.log", b"run B, from the start, much longer than before\n")
    s.upload("logs/train.log")
    assert len(s.store.parts_of("logs/train.log")) == 1
    assert s.manifest.get("logs/train.log").parts == 1
    assert s.store.read("logs/train.log") == b"run B, from the start, much longer than before\n"


def test_an_output_that_just_became_empty_waits_for_its_writer(s: Setup) -> None:
    """open(path, "wb") empties the file before the writer's descriptor exists (no /proc
    entry, no inotify open yet: 15 ms under load in the rewrite test), so a just-emptied
    checkpoint must not replace the stored one; an empty file that stays empty goes up."""
    s.write("outputs/ckpt.bin", b"v1" * 100, age=60)
    assert s.upload("outputs/ckpt.bin").kind == UPLOADED
    s.write("outputs/ckpt.bin", b"", age=0.05)  # truncated for the next version
    waited = s.upload("outputs/ckpt.bin")
    assert waited.kind == UNSETTLED and 0 < waited.wait <= EMPTY_SETTLE
    assert s.stored("outputs/ckpt.bin").read_bytes() == b"v1" * 100
    s.write("outputs/ckpt.bin", b"", age=EMPTY_SETTLE + 0.5)  # really left empty
    assert s.upload("outputs/ckpt.bin").kind == UPLOADED
    assert s.stored("outputs/ckpt.bin").read_bytes() == b""
    s.write("outputs/late.bin", b"", age=0.05)
    assert s.upload("outputs/late.bin", final=True).kind == UPLOADED  # the writers are gone
