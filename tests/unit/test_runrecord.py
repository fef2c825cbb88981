"""The run record: pure lifecycle transitions and the atomic local writer."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tfbuild_agent.runrecord import (
    CANCELED,
    COMPLETED,
    FAILED,
    QUEUED,
    RUNNING,
    STDERR_TAIL_CHARS,
    duration_seconds,
    is_final,
    local_record_path,
    new_record,
    parse_time,
    read_record,
    transition,
    utc_iso,
    with_missing_uploads,
    write_record,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=timezone.utc)


def test_new_record_is_queued_with_identity_and_utc_time() -> None:
    r = new_record("run-1", "worker-1", "worker", 1, tasks=["chief-0", "worker-1"], now=T0)
    assert r["status"] == QUEUED
    assert (r["run_id"], r["task"], r["role"], r["rank"]) == ("run-1", "worker-1", "worker", 1)
    assert r["tasks"] == ["chief-0", "worker-1"]
    assert r["queued_time"] == "2024-05-01T12:00:00.250Z"
    assert r["start_time"] is None and r["end_time"] is None and r["exit_code"] is None
    assert r["missing_uploads"] == [] and r["stderr_tail"] == ""
    assert new_record("r", "chief-0", "chief", 0)["tasks"] == ["chief-0"]


def test_running_then_completed_sets_times_and_exit_code_zero() -> None:
    q = new_record("r", "chief-0", "chief", 0, now=T0)
    running = transition(q, RUNNING, now=T0 + timedelta(seconds=2))
    done = transition(running, COMPLETED, now=T0 + timedelta(seconds=92))
    assert running["start_time"] == "2024-05-01T12:00:02.250Z"
    assert done["status"] == COMPLETED and done["exit_code"] == 0
    assert done["end_time"] == "2024-05-01T12:01:32.250Z"
    assert duration_seconds(done) == 90.0
    assert is_final(done) and not is_final(running)


def test_transition_is_pure() -> None:
    q = new_record("r", "chief-0", "chief", 0, now=T0)
    before = json.dumps(q, sort_keys=True)
    transition(q, RUNNING, now=T0)
    with_missing_uploads(q, [{"path": "outputs/a", "bytes": 1, "error": "x"}])
    assert json.dumps(q, sort_keys=True) == before


def test_failed_keeps_exit_code_and_the_tail_of_stderr() -> None:
    running = transition(new_record("r", "chief-0", "chief", 0), RUNNING)
    stderr = "x" * 100 + "Traceback ... ValueError: bad\n" + "y" * STDERR_TAIL_CHARS
    failed = transition(running, FAILED, exit_code=3, stderr_tail=stderr)
    assert failed["exit_code"] == 3
    assert len(failed["stderr_tail"]) == STDERR_TAIL_CHARS
    assert failed["stderr_tail"].endswith("y" * 10)


def test_queued_can_fail_or_be_canceled_without_starting() -> None:
    q = new_record("r", "chief-0", "chief", 0)
    failed = transition(q, FAILED, exit_code=2)
    assert failed["start_time"] is None and failed["end_time"] is not None
    assert duration_seconds(failed) is None
    assert transition(q, CANCELED, exit_code=143)["exit_code"] == 143


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ((), COMPLETED),  # Queued -> Completed skips Running
        ((RUNNING,), QUEUED),
        ((RUNNING,), RUNNING),
        ((RUNNING, COMPLETED), FAILED),
        ((CANCELED,), RUNNING),
    ],
)
def test_illegal_transitions_say_what_is_allowed(path: tuple[str, ...], status: str) -> None:
    r = new_record("run-9", "ps-0", "ps", 0)
    for step in path:
        r = transition(r, step)
    with pytest.raises(ValueError, match=f"cannot go from {r['status']} to {status}"):
        transition(r, status)


def test_unknown_status_and_nonzero_completed_are_refused() -> None:
    running = transition(new_record("r", "chief-0", "chief", 0), RUNNING)
    with pytest.raises(ValueError, match="unknown run status 'Done'"):
        transition(running, "Done")
    with pytest.raises(ValueError, match="use Failed"):
        transition(running, COMPLETED, exit_code=1)


def test_times_are_utc_with_z_and_round_trip() -> None:
    plus_two = timezone(timedelta(hours=2))
    stamp = utc_iso(datetime(2024, 5, 1, 14, 0, tzinfo=plus_two))
    assert stamp == "2024-05-01T12:00:00.000Z"
    assert parse_time(stamp) == datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="no time zone"):
        utc_iso(datetime(2024, 5, 1))


def test_duration_of_a_running_record_counts_to_now() -> None:
    running = transition(new_record("r", "c-0", "chief", 0), RUNNING, now=T0)
    assert duration_seconds(running, now=T0 + timedelta(seconds=5)) == 5.0


def test_write_record_is_atomic_and_readable(tmp_path) -> None:
    path = local_record_path(tmp_path, "worker-0")
    assert path == tmp_path / "logs" / ".tfbuild" / "run-worker-0.json"
    r = new_record("r", "worker-0", "worker", 0)
    write_record(r, path)
    write_record(transition(r, RUNNING), path)
    assert read_record(path)["status"] == RUNNING
    assert [p.name for p in path.parent.iterdir()] == ["run-worker-0.json"]  # no temp files
