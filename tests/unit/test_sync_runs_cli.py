"""Host side: `tfbuild runs list|show|download|logs|tensorboard` on a file:// store,
plus the pure summaries (job status from task statuses, which files are logs)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from tfbuild.cli.runs import runs
from tfbuild.run.history import (
    RunsError,
    job_status,
    load_run,
    log_keys,
    open_runs,
    run_view,
    tail_logs,
    tensorboard_keys,
)
from tfbuild_agent.runrecord import (
    COMPLETED,
    FAILED,
    QUEUED,
    RUNNING,
    new_record,
    record_json,
    transition,
    with_missing_uploads,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def put(dest: Path, key: str, data: bytes | str) -> None:
    path = dest / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def two_task_run(dest: Path, run_id: str = "run-a", worker_status: str = COMPLETED) -> None:
    """A chief (owns outputs) and a worker, as two agents would have left them."""
    tasks = ["chief-0", "worker-1"]
    chief = new_record(run_id, "chief-0", "chief", 0, tasks=tasks, now=T0)
    chief = transition(chief, RUNNING, now=T0 + timedelta(seconds=1))
    chief = transition(chief, COMPLETED, now=T0 + timedelta(seconds=61))
    worker = transition(new_record(run_id, "worker-1", "worker", 1, tasks=tasks, now=T0),
                        RUNNING, now=T0 + timedelta(seconds=2))
    if worker_status == FAILED:
        worker = transition(worker, FAILED, exit_code=3, stderr_tail="ValueError: nan loss",
                            now=T0 + timedelta(seconds=30))
        worker = with_missing_uploads(worker, [{"path": "outputs/w.bin", "bytes": 2048,
                                                "error": "not uploaded within the 60s bound"}])
    elif worker_status == COMPLETED:
        worker = transition(worker, COMPLETED, now=T0 + timedelta(seconds=62))
    put(dest, f"{run_id}/run.json", record_json(chief))
    put(dest, f"{run_id}/tasks/chief-0/run.json", record_json(chief))
    put(dest, f"{run_id}/tasks/worker-1/run.json", record_json(worker))
    put(dest, f"{run_id}/outputs/model/weights.bin", bytes(range(256)) * 40)
    put(dest, f"{run_id}/outputs/metrics.json", '{"acc": 0.91}')
    put(dest, f"{run_id}/logs/train.log", "epoch 1\nepoch 2\n")
    put(dest, f"{run_id}/logs/tb/events.out.tfevents.1.host", b"\x00\x01binary")
    put(dest, f"{run_id}/tasks/worker-1/logs/worker.log", "worker says hi\n")


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(runs, list(args))
    return result.exit_code, result.output


# -- pure summaries -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([COMPLETED, COMPLETED], COMPLETED),
        ([COMPLETED, RUNNING], RUNNING),
        ([COMPLETED, QUEUED], RUNNING),
        ([QUEUED, QUEUED], QUEUED),
        ([COMPLETED, FAILED, RUNNING], FAILED),
        ([RUNNING, "Canceled"], "Canceled"),
        ([], "Unknown"),
    ],
)
def test_job_status_from_task_statuses(statuses: list[str], expected: str) -> None:
    assert job_status(statuses) == expected


def test_a_declared_task_not_heard_from_keeps_the_run_open() -> None:
    chief = transition(transition(new_record("r", "chief-0", "chief", 0,
                                             tasks=["chief-0", "worker-1"], now=T0),
                                  RUNNING, now=T0), COMPLETED, now=T0 + timedelta(seconds=9))
    view = run_view("r", chief, {"chief-0": chief}, now=T0 + timedelta(seconds=20))
    assert [t.status for t in view.tasks] == [COMPLETED, QUEUED]
    assert view.status == RUNNING and not view.all_final
    assert view.end_time is None and view.duration == 20.0


def test_log_keys_are_text_logs_of_every_task() -> None:
    files = {"logs/train.log": 1, "logs/tb/events.out.tfevents.1.h": 1, "outputs/a": 1,
             "tasks/worker-1/logs/w.log": 1, "tasks/worker-1/outputs/logs/x": 1, "run.json": 1}
    assert log_keys(files) == ["logs/train.log", "tasks/worker-1/logs/w.log"]
    assert tensorboard_keys(files) == ["logs/tb/events.out.tfevents.1.h", "logs/train.log",
                                       "tasks/worker-1/logs/w.log"]


# -- the commands ---------------------------------------------------------------------


def test_list_shows_each_run_with_status_and_duration(tmp_path: Path) -> None:
    two_task_run(tmp_path, "run-a")
    two_task_run(tmp_path, "run-b", worker_status=FAILED)
    put(tmp_path, "not-a-run/readme.txt", "hello")
    code, out = invoke("list", f"file://{tmp_path}")
    assert code == 0, out
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert set(lines) == {"run-a", "run-b"}
    assert "Completed" in lines["run-a"] and "1m01s" in lines["run-a"]
    assert "Failed" in lines["run-b"]


def test_show_lists_tasks_exit_codes_files_and_what_is_missing(tmp_path: Path) -> None:
    two_task_run(tmp_path, "run-b", worker_status=FAILED)
    code, out = invoke("show", f"file://{tmp_path}", "run-b")
    assert code == 0, out
    assert "Failed" in out
    worker_line = next(line for line in out.splitlines() if line.strip().startswith("worker-1"))
    assert worker_line.split()[4] == "3"  # exit code column
    assert "outputs/model/weights.bin" in out and "10.0 KiB" in out
    assert "tasks/worker-1/logs/worker.log" in out
    assert "outputs/w.bin" in out and "never reached the store" in out
    assert "ValueError: nan loss" in out
    assert "run.json" not in out.replace("tasks/", "")  # records are not listed as files


def test_show_an_unknown_run_names_the_runs_there(tmp_path: Path) -> None:
    two_task_run(tmp_path, "run-a")
    code, out = invoke("show", f"file://{tmp_path}", "run-zz")
    assert code == 1
    assert "no run 'run-zz'" in out and "run-a" in out


def test_download_a_file_a_folder_or_the_whole_run(tmp_path: Path) -> None:
    dest = tmp_path / "store"
    two_task_run(dest)
    uri = f"file://{dest}"
    out = tmp_path / "out"
    assert invoke("download", uri, "run-a", "outputs/model/weights.bin", "-o", str(out))[0] == 0
    assert (out / "weights.bin").read_bytes() == bytes(range(256)) * 40
    assert invoke("download", uri, "run-a", "outputs", "-o", str(out))[0] == 0
    assert (out / "outputs" / "metrics.json").read_text() == '{"acc": 0.91}'
    assert invoke("download", uri, "run-a", "-o", str(out))[0] == 0
    for p in (dest / "run-a").rglob("*"):
        if p.is_file():
            assert (out / "run-a" / p.relative_to(dest / "run-a")).read_bytes() == p.read_bytes()


def test_download_of_a_missing_path_says_what_the_run_has(tmp_path: Path) -> None:
    two_task_run(tmp_path)
    code, out = invoke("download", f"file://{tmp_path}", "run-a", "outputs/nope.h5",
                       "-o", str(tmp_path / "o"))
    assert code == 1
    assert "'outputs/nope.h5' is not in run run-a" in out and "outputs" in out


def test_logs_prints_every_tasks_text_logs(tmp_path: Path) -> None:
    two_task_run(tmp_path)
    code, out = invoke("logs", f"file://{tmp_path}", "run-a")
    assert code == 0, out
    assert "epoch 1\nepoch 2\n" in out and "worker says hi" in out
    assert "binary" not in out


def test_follow_prints_appended_lines_and_stops_when_all_tasks_finished(tmp_path: Path) -> None:
    two_task_run(tmp_path, worker_status=RUNNING)
    store = open_runs(f"file://{tmp_path}")
    got: list[tuple[str, str]] = []
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        # Between polls the job moves on: more log lines, then the worker finishes.
        sleeps.append(seconds)
        if len(sleeps) == 1:
            put(tmp_path, "run-a/logs/train.log", "epoch 1\nepoch 2\nepoch 3\n")
        elif len(sleeps) == 2:
            record = json.loads((tmp_path / "run-a/tasks/worker-1/run.json").read_text())
            put(tmp_path, "run-a/tasks/worker-1/logs/worker.log", "worker says hi\nbye\n")
            put(tmp_path, "run-a/tasks/worker-1/run.json",
                record_json(transition(record, COMPLETED)))

    view = tail_logs(store, "run-a", lambda k, t: got.append((k, t)), follow=True,
                     interval=0.5, sleep=sleep)
    assert view.status == COMPLETED and len(sleeps) == 2
    text = {k: "".join(t for key, t in got if key == k) for k, _ in got}
    assert text["logs/train.log"] == "epoch 1\nepoch 2\nepoch 3\n"
    assert text["tasks/worker-1/logs/worker.log"] == "worker says hi\nbye\n"


def test_follow_gives_up_after_its_timeout(tmp_path: Path) -> None:
    two_task_run(tmp_path, worker_status=RUNNING)
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    with pytest.raises(RunsError, match="still has status Running"):
        tail_logs(open_runs(f"file://{tmp_path}"), "run-a", lambda k, t: None, follow=True,
                  interval=1.0, timeout=3.0, clock=lambda: clock[0], sleep=sleep)
    assert clock[0] == 3.0


def test_tensorboard_without_tensorboard_prints_the_commands(tmp_path: Path,
                                                             monkeypatch) -> None:
    two_task_run(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    result = CliRunner().invoke(runs, ["tensorboard", f"file://{tmp_path}", "run-a"])
    assert result.exit_code == 0, result.output
    assert f"tfbuild runs download file://{tmp_path} run-a logs -o tb-run-a" in result.output
    assert "tensorboard --logdir tb-run-a/logs" in result.output


def test_load_run_reads_a_live_run_written_by_an_agent(tmp_path: Path) -> None:
    from tfbuild_agent.sync.syncer import Syncer

    workdir = tmp_path / "wd"
    s = Syncer(f"file://{tmp_path}/store", "live-1", "chief-0", True, workdir,
               log=lambda _: None)
    record = new_record("live-1", "chief-0", "chief", 0)
    s.publish_record(transition(record, RUNNING))
    (workdir / "outputs").mkdir(parents=True)
    (workdir / "outputs" / "a.txt").write_text("a")
    s.close()
    view = load_run(open_runs(f"file://{tmp_path}/store"), "live-1")
    assert view.status == RUNNING
    assert dict(view.files) == {"outputs/a.txt": 1}


def test_mirror_copies_only_what_changed(tmp_path: Path) -> None:
    from tfbuild.run.history import mirror

    dest, local = tmp_path / "store", tmp_path / "tb"
    two_task_run(dest)
    run = open_runs(f"file://{dest}").child("run-a")
    have: dict[str, int] = {}
    files = run.files()
    assert mirror(run, tensorboard_keys(files), files, local, have) == 3
    assert (local / "logs/tb/events.out.tfevents.1.host").read_bytes() == b"\x00\x01binary"
    files = run.files()
    assert mirror(run, tensorboard_keys(files), files, local, have) == 0
    put(dest, "run-a/logs/tb/events.out.tfevents.1.host", b"\x00\x01binary+more")
    files = run.files()
    assert mirror(run, tensorboard_keys(files), files, local, have) == 1
    assert (local / "logs/tb/events.out.tfevents.1.host").read_bytes() == b"\x00\x01binary+more"


# -- scriptable output, filters, reasons, missing stores ------------------------------


def test_list_filters_by_status_limits_and_prints_json(tmp_path: Path) -> None:
    two_task_run(tmp_path, "run-a")
    two_task_run(tmp_path, "run-b", worker_status=FAILED)
    two_task_run(tmp_path, "run-c")
    code, out = invoke("list", str(tmp_path), "--status", "completed", "--json")
    assert code == 0, out
    assert [r["run_id"] for r in json.loads(out)] == ["run-a", "run-c"]
    code, out = invoke("list", f"file://{tmp_path}", "--limit", "1", "--json")
    assert [r["run_id"] for r in json.loads(out)] == ["run-c"]
    code, out = invoke("list", f"file://{tmp_path}", "--status", "Canceled")
    assert code == 0 and "no runs" in out and "Canceled" in out


def test_show_json_has_tasks_files_and_the_exit_codes(tmp_path: Path) -> None:
    two_task_run(tmp_path, "run-b", worker_status=FAILED)
    code, out = invoke("show", f"file://{tmp_path}", "run-b", "--json")
    assert code == 0, out
    view = json.loads(out)
    assert view["status"] == "Failed"
    assert {t["task"]: t["exit_code"] for t in view["tasks"]}["worker-1"] == 3
    assert "outputs/metrics.json" in view["files"]


def test_show_displays_the_reason_of_job_and_task_records(tmp_path: Path) -> None:
    two_task_run(tmp_path, "run-r", worker_status=FAILED)
    for key, reason in (("run-r/run.json", "peer worker-1 was lost"),
                        ("run-r/tasks/worker-1/run.json", "lost [fe80::1]:2222 (tfbuild[s3])")):
        record = json.loads((tmp_path / key).read_text())
        record["reason"] = reason
        put(tmp_path, key, json.dumps(record))
    code, out = invoke("show", f"file://{tmp_path}", "run-r")
    assert code == 0, out
    assert "reason: peer worker-1 was lost" in out
    assert "lost [fe80::1]:2222 (tfbuild[s3])" in out  # square brackets printed intact


@pytest.mark.parametrize("form", ["file:///nonexistent/tfbuild-runs", "/nonexistent/runs",
                                  "file://./not-here"])
def test_a_missing_local_store_is_an_error(tmp_path: Path, form: str, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = invoke("list", form)
    assert code == 1
    assert "does not exist" in out


def test_relative_paths_name_folders_under_the_working_directory(tmp_path: Path,
                                                                 monkeypatch) -> None:
    two_task_run(tmp_path / "runs", "run-a")
    monkeypatch.chdir(tmp_path)
    for form in ("runs", "./runs", "file://./runs", "file://runs"):
        code, out = invoke("list", form, "--json")
        assert code == 0, (form, out)
        assert [r["run_id"] for r in json.loads(out)] == ["run-a"]
