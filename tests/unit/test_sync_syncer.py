"""The Syncer end to end against a file:// store (a real folder): what arrives when,
the layout per task, run records, restarts, and the bounded final flush."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for

from tfbuild_agent.errors import ConfigError
from tfbuild_agent.runrecord import (
    COMPLETED,
    FAILED,
    RUNNING,
    local_record_path,
    new_record,
    read_record,
    transition,
)
from tfbuild_agent.sync.store import open_store
from tfbuild_agent.sync.syncer import Syncer


class Env:
    def __init__(self, tmp_path: Path) -> None:
        self.workdir = tmp_path / "wd"
        self.dest = tmp_path / "store"
        self.uri = f"file://{self.dest}"
        self.logs: list[str] = []
        self.syncers: list[Syncer] = []

    def syncer(self, run_id: str = "run-1", task: str = "chief-0", owns: bool = True,
               **kw: Any) -> Syncer:
        kw.setdefault("flush_timeout", 10.0)
        s = Syncer(self.uri, run_id, task, owns, self.workdir, log=self.logs.append, **kw)
        self.syncers.append(s)
        return s

    def stored(self, key: str, run_id: str = "run-1") -> Path:
        return self.dest / run_id / key

    def read(self, key: str, run_id: str = "run-1") -> bytes | None:
        """The file as readers see it (a log still in parts is joined); None if absent."""
        try:
            return open_store(self.uri).child(run_id).read(key)
        except FileNotFoundError:
            return None


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    for s in e.syncers:
        s.close()


def test_a_closed_output_arrives_and_a_held_open_one_waits_for_its_close(env: Env) -> None:
    s = env.syncer()
    s.start()
    (env.workdir / "outputs" / "metrics.json").write_text('{"acc": 0.9}')
    wait_for(lambda: env.stored("outputs/metrics.json").exists(), what="closed file uploaded")
    assert env.stored("outputs/metrics.json").read_text() == '{"acc": 0.9}'

    f = open(env.workdir / "outputs" / "model.bin", "wb")  # noqa: SIM115 - a slow writer
    f.write(b"first half")
    f.flush()
    time.sleep(1.8)  # quiet for longer than `settle`, but still open: no half file
    assert not env.stored("outputs/model.bin").exists()
    f.write(b" second half")
    f.close()
    wait_for(lambda: env.stored("outputs/model.bin").exists(), what="model after close")
    assert env.stored("outputs/model.bin").read_bytes() == b"first half second half"


def test_an_open_log_appears_once_quiet_and_again_when_it_grows(env: Env) -> None:
    s = env.syncer(settle=0.3)
    s.start()
    log = open(env.workdir / "logs" / "train.log", "w")  # noqa: SIM115 - kept open like a log
    try:
        log.write("epoch 1\n")
        log.flush()
        wait_for(lambda: env.read("logs/train.log") == b"epoch 1\n", what="open log uploaded")
        log.write("epoch 2\n")
        log.flush()
        wait_for(lambda: env.read("logs/train.log") == b"epoch 1\nepoch 2\n",
                 what="grown log uploaded")
    finally:
        log.close()


def test_a_log_written_without_pause_is_uploaded_as_a_snapshot(env: Env) -> None:
    s = env.syncer(settle=1.0, log_snapshot_after=0.5)
    s.start()
    stop = threading.Event()

    def chatter() -> None:
        with open(env.workdir / "logs" / "busy.log", "w") as f:
            while not stop.is_set():
                f.write("tick\n")
                f.flush()
                time.sleep(0.05)

    t = threading.Thread(target=chatter)
    t.start()
    try:
        wait_for(lambda: env.read("logs/busy.log"), 4.0, "snapshot of a busy log")
        assert t.is_alive()
    finally:
        stop.set()
        t.join(2)


def test_files_moved_in_and_rewritten_end_up_as_their_last_version(env: Env, tmp_path) -> None:
    s = env.syncer()
    s.start()
    staged = tmp_path / "ckpt.tmp"
    staged.write_bytes(b"v1")
    staged.rename(env.workdir / "outputs" / "ckpt")
    wait_for(lambda: env.stored("outputs/ckpt").exists(), what="renamed-in file")
    (env.workdir / "outputs" / "ckpt").write_bytes(b"v2 longer")
    wait_for(lambda: env.stored("outputs/ckpt").read_bytes() == b"v2 longer", what="rewrite")


def test_other_tasks_write_under_tasks_and_never_the_job_record(env: Env) -> None:
    s = env.syncer(task="worker-1", owns=False)
    s.start()
    record = new_record("run-1", "worker-1", "worker", 1, tasks=["chief-0", "worker-1"])
    s.publish_record(transition(record, RUNNING))
    (env.workdir / "outputs" / "part.txt").write_text("w1")
    (env.workdir / "logs" / "w1.log").write_text("hello")
    wait_for(lambda: env.stored("tasks/worker-1/outputs/part.txt").exists(), what="task output")
    wait_for(lambda: env.read("tasks/worker-1/logs/w1.log") is not None, what="task log")
    wait_for(lambda: env.stored("tasks/worker-1/run.json").exists(), what="task record")
    assert not env.stored("outputs").exists()
    assert not env.stored("run.json").exists()


def test_records_are_published_and_a_final_one_only_after_the_last_files(env: Env) -> None:
    s = env.syncer()
    s.start()
    record = new_record("run-1", "chief-0", "chief", 0)
    s.publish_record(record)
    record = transition(record, RUNNING)
    s.publish_record(record)
    wait_for(lambda: env.stored("run.json").exists()
             and json.loads(env.stored("run.json").read_text())["status"] == RUNNING,
             what="Running record in the store")
    assert json.loads(env.stored("tasks/chief-0/run.json").read_text())["status"] == RUNNING
    record = transition(record, FAILED, exit_code=1, stderr_tail="boom")
    s.publish_record(record)
    assert read_record(local_record_path(env.workdir, "chief-0"))["status"] == FAILED
    time.sleep(0.3)
    assert json.loads(env.stored("run.json").read_text())["status"] == RUNNING  # held back
    report = s.close()
    assert report.complete
    final = json.loads(env.stored("run.json").read_text())
    assert (final["status"], final["exit_code"], final["stderr_tail"]) == (FAILED, 1, "boom")


def test_a_final_record_waits_for_close_even_when_an_older_one_is_retrying(env: Env) -> None:
    env.dest.parent.mkdir(parents=True, exist_ok=True)
    env.dest.write_text("the store is down")
    s = env.syncer()
    s.start()
    record = transition(new_record("run-1", "chief-0", "chief", 0), RUNNING)
    s.publish_record(record)
    wait_for(lambda: any("failed" in line for line in env.logs), what="record upload failing")
    s.publish_record(transition(record, COMPLETED))
    env.dest.unlink()  # back: the pending upload goes out, with the Running record
    wait_for(lambda: env.stored("run.json").exists(), what="record after the outage")
    assert json.loads(env.stored("run.json").read_text())["status"] == RUNNING
    assert s.close().complete
    assert json.loads(env.stored("run.json").read_text())["status"] == COMPLETED
    assert any("work again" in line for line in env.logs)


def test_one_syncer_carries_the_records_of_every_process_on_its_node(env: Env) -> None:
    s = env.syncer(task="worker-0", owns=True)
    s.start()
    tasks = ["worker-0", "worker-1"]
    w0 = transition(new_record("run-1", "worker-0", "worker", 0, tasks=tasks), RUNNING)
    w1 = transition(new_record("run-1", "worker-1", "worker", 1, tasks=tasks), RUNNING)
    s.publish_record(w0)
    s.publish_record(w1)
    s.publish_record(transition(w1, FAILED, exit_code=1))
    s.publish_record(transition(w0, COMPLETED))
    report = s.close()
    assert report.complete

    def stored(key: str) -> dict:
        return json.loads(env.stored(key).read_text())

    assert (stored("tasks/worker-0/run.json")["status"], stored("run.json")["task"]) == (
        COMPLETED, "worker-0")
    assert (stored("tasks/worker-1/run.json")["status"],
            stored("tasks/worker-1/run.json")["exit_code"]) == (FAILED, 1)
    assert read_record(local_record_path(env.workdir, "worker-1"))["status"] == FAILED


def test_a_restart_uploads_nothing_twice(env: Env) -> None:
    (env.workdir / "outputs").mkdir(parents=True)
    for i in range(5):
        (env.workdir / "outputs" / f"f{i}").write_text(str(i))
    first = env.syncer()
    first.start()
    assert first.close().uploaded == 5
    second = env.syncer()
    second.start()
    (env.workdir / "outputs" / "f0").write_text("changed")
    report = second.close()
    assert report.uploaded == 1
    assert env.stored("outputs/f0").read_text() == "changed"


def test_close_before_start_still_flushes_and_close_is_idempotent(env: Env) -> None:
    (env.workdir / "logs").mkdir(parents=True)
    (env.workdir / "logs" / "early.log").write_text("before the agent watched")
    s = env.syncer()
    report = s.close()
    assert report.complete and report.uploaded == 1
    assert s.close() is report


def test_close_from_two_threads_while_watching_returns_one_report(env: Env) -> None:
    s = env.syncer()
    s.start()
    (env.workdir / "outputs" / "a").write_text("a")
    reports: list = []
    threads = [threading.Thread(target=lambda: reports.append(s.close())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert len(reports) == 2 and reports[0] is reports[1]
    assert env.stored("outputs/a").read_text() == "a"


def test_an_unreachable_store_bounds_close_and_the_record_says_what_is_missing(
    env: Env,
) -> None:
    env.dest.parent.mkdir(parents=True, exist_ok=True)
    env.dest.write_text("a file where the store folder should be")  # every write fails
    s = env.syncer(flush_timeout=1.5)
    s.start()
    record = transition(new_record("run-1", "chief-0", "chief", 0), RUNNING)
    s.publish_record(record)
    (env.workdir / "outputs" / "model.bin").write_bytes(b"m" * 1000)
    (env.workdir / "logs" / "train.log").write_text("log")
    wait_for(lambda: any("failed" in line for line in env.logs), what="a failure logged")
    s.publish_record(transition(record, COMPLETED))
    t0 = time.monotonic()
    report = s.close()
    assert time.monotonic() - t0 < 1.5 + 1.0
    assert not report.record_published and report.failed_attempts > 0
    assert [(m["path"], m["bytes"]) for m in report.missing] == [
        ("logs/train.log", 3), ("outputs/model.bin", 1000)]
    assert "NotADirectoryError" in report.missing[0]["error"]
    kept = read_record(local_record_path(env.workdir, "chief-0"))
    assert kept["status"] == COMPLETED
    assert [m["path"] for m in kept["missing_uploads"]] == ["logs/train.log", "outputs/model.bin"]
    assert (env.workdir / "outputs" / "model.bin").read_bytes() == b"m" * 1000
    assert any("did not reach" in line for line in env.logs)

    env.dest.unlink()  # the store is back: a restarted agent delivers the rest
    again = env.syncer()
    again.publish_record(kept)
    second = again.close()
    assert second.complete and second.uploaded == 2
    assert json.loads(env.stored("run.json").read_text())["missing_uploads"] == []


def test_a_file_deleted_before_upload_is_not_reported_missing(env: Env) -> None:
    s = env.syncer(settle=5.0)
    s.start()
    f = open(env.workdir / "logs" / "tmp.log", "w")  # noqa: SIM115 - kept open, then removed
    f.write("x")
    f.flush()
    (env.workdir / "logs" / "tmp.log").unlink()
    f.close()
    report = s.close()
    assert report.complete and report.missing == ()


def test_bad_names_are_refused_before_anything_starts(env: Env) -> None:
    with pytest.raises(ConfigError, match=r"run id '\.\./x'"):
        env.syncer(run_id="../x")
    with pytest.raises(ConfigError, match="task name 'a/b'"):
        env.syncer(task="a/b")
