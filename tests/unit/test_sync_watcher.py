"""The watchdog observer on a real folder: closed, changing, renamed and moved-in files."""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tfbuild_agent.sync.watcher import FolderWatcher, walk_files


@pytest.fixture
def watcher(tmp_path: Path) -> Iterator[tuple[FolderWatcher, queue.Queue]]:
    events: queue.Queue = queue.Queue()
    w = FolderWatcher(tmp_path, lambda rel, closed: events.put((rel, closed)))
    w.start()
    try:
        yield w, events
    finally:
        w.stop()


@pytest.fixture
def watched(watcher, tmp_path: Path) -> tuple[Path, queue.Queue]:
    return tmp_path, watcher[1]


def wait_event(events: queue.Queue, wanted: tuple[str, bool], timeout: float = 5.0) -> list:
    """Collect events until `wanted` shows up; fail after `timeout` seconds."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            event = events.get(timeout=0.05)
        except queue.Empty:
            continue
        seen.append(event)
        if event == wanted:
            return seen
    pytest.fail(f"no {wanted} within {timeout}s; saw {seen}")


def drain(events: queue.Queue, quiet: float = 0.3) -> list:
    out = []
    while True:
        try:
            out.append(events.get(timeout=quiet))
        except queue.Empty:
            return out


def test_start_creates_both_folders(watched) -> None:
    root, _ = watched
    assert (root / "outputs").is_dir() and (root / "logs").is_dir()


def test_a_closed_file_is_reported_closed(watched) -> None:
    root, events = watched
    (root / "outputs" / "model.h5").write_bytes(b"weights")
    wait_event(events, ("outputs/model.h5", True))


def test_a_file_kept_open_is_only_reported_as_changing(watched) -> None:
    root, events = watched
    f = open(root / "logs" / "train.log", "w")  # noqa: SIM115 - stays open on purpose
    try:
        f.write("step 1\n")
        f.flush()
        wait_event(events, ("logs/train.log", False))
        assert ("logs/train.log", True) not in drain(events)
    finally:
        f.close()
    wait_event(events, ("logs/train.log", True))


def test_is_open_follows_open_and_close_events(watcher, tmp_path) -> None:
    w, events = watcher
    f = open(tmp_path / "outputs" / "big.bin", "wb")  # noqa: SIM115 - a slow writer
    try:
        f.write(b"part")
        f.flush()
        wait_event(events, ("outputs/big.bin", False))
        assert w.is_open("outputs/big.bin")
        (tmp_path / "outputs" / "big.bin").read_bytes()  # a reader comes and goes
        drain(events, 0.2)
        assert w.is_open("outputs/big.bin")
    finally:
        f.close()
    wait_event(events, ("outputs/big.bin", True))
    assert not w.is_open("outputs/big.bin")


def test_rename_into_place_counts_as_closed(watched) -> None:
    root, events = watched
    tmp = root / "outputs" / "ckpt.tmp"
    tmp.write_bytes(b"x")
    os.replace(tmp, root / "outputs" / "ckpt")
    wait_event(events, ("outputs/ckpt", True))


def test_a_folder_moved_in_reports_its_files(watched, tmp_path_factory) -> None:
    root, events = watched
    outside = tmp_path_factory.mktemp("elsewhere") / "saved_model"
    (outside / "variables").mkdir(parents=True)
    (outside / "saved_model.pb").write_bytes(b"pb")
    (outside / "variables" / "variables.index").write_bytes(b"idx")
    os.rename(outside, root / "outputs" / "saved_model")
    got = wait_event(events, ("outputs/saved_model/variables/variables.index", True))
    got += drain(events)
    assert ("outputs/saved_model/saved_model.pb", True) in got


def test_the_agent_folder_and_other_files_are_ignored(watched) -> None:
    root, events = watched
    (root / "logs" / ".tfbuild").mkdir()
    (root / "logs" / ".tfbuild" / "manifest.jsonl").write_text("{}")
    (root / "train.py").write_text("print(1)")
    (root / "outputs" / "marker").write_text("m")
    got = wait_event(events, ("outputs/marker", True))
    got += drain(events)
    assert {rel for rel, _ in got} == {"outputs/marker"}


def test_walk_files_lists_synced_files_only(tmp_path) -> None:
    for rel in ("outputs/a", "outputs/sub/b", "logs/c", "logs/.tfbuild/state", "other/d"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    assert sorted(rel for rel, _ in walk_files(tmp_path)) == ["logs/c", "outputs/a",
                                                               "outputs/sub/b"]
