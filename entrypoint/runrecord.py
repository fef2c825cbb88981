"""The run record: one JSON document per task saying where the run stands.

The agent makes it with `new_record`, moves it on with `transition` at each status
change (pure: a new dict every time, the input is never changed) and keeps a local
copy with `write_record`; the syncer uploads it to `<dest>/<run-id>/tasks/<task>/run.json`
(and, for the task that owns outputs, to `<dest>/<run-id>/run.json`).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA = 1
QUEUED, RUNNING, COMPLETED, FAILED, CANCELED = (
    "Queued", "Running", "Completed", "Failed", "Canceled"
)
STATUSES = (QUEUED, RUNNING, COMPLETED, FAILED, CANCELED)
FINAL_STATUSES = frozenset({COMPLETED, FAILED, CANCELED})
_NEXT: dict[str, frozenset[str]] = {
    QUEUED: frozenset({RUNNING, FAILED, CANCELED}),
    RUNNING: frozenset({COMPLETED, FAILED, CANCELED}),
}
STDERR_TAIL_CHARS = 8192
"""Enough for a Python traceback; the full stderr is in ./logs."""


def utc_iso(moment: datetime) -> str:
    """ISO-8601 in UTC with a `Z`, millisecond precision: 2024-05-01T12:00:00.250Z."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone; pass an aware datetime")
    text = moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """The inverse of `utc_iso` (also accepts +00:00 offsets)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _now(now: datetime | None) -> str:
    return utc_iso(now if now is not None else datetime.now(timezone.utc))


def new_record(
    run_id: str,
    task: str,
    role: str,
    rank: int,
    *,
    tasks: Sequence[str] = (),
    now: datetime | None = None,
) -> dict[str, Any]:
    """A Queued record. `tasks` lists every task of the job (the job-level run.json shows it)."""
    return {
        "schema": SCHEMA,
        "run_id": run_id,
        "task": task,
        "role": role,
        "rank": rank,
        "tasks": list(tasks) or [task],
        "status": QUEUED,
        "exit_code": None,
        "queued_time": _now(now),
        "start_time": None,
        "end_time": None,
        "stderr_tail": "",
        "reason": "",
        "missing_uploads": [],
    }


def transition(
    record: Mapping[str, Any],
    status: str,
    *,
    exit_code: int | None = None,
    stderr_tail: str | None = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The record moved on to `status`; raises ValueError for a move the lifecycle forbids.

    `reason` says why in words (for Failed and Canceled: what ended it, naming the task
    or node; `tfbuild runs show` displays it).

    Queued -> Running | Failed | Canceled; Running -> Completed | Failed | Canceled;
    final statuses never change. Completed means exit code 0.
    """
    if status not in STATUSES:
        raise ValueError(f"unknown run status {status!r}; use one of {', '.join(STATUSES)}")
    current = record["status"]
    if status not in _NEXT.get(current, frozenset()):
        allowed = sorted(_NEXT.get(current, frozenset())) or ["nothing (it is final)"]
        raise ValueError(
            f"run {record['run_id']} task {record['task']} cannot go from {current} to "
            f"{status}; from {current} it can go to {', '.join(allowed)}"
        )
    if status == COMPLETED and exit_code not in (None, 0):
        raise ValueError(f"a Completed run exits with 0, not {exit_code}; use Failed")
    out = copy.deepcopy(dict(record))
    out["status"] = status
    stamp = _now(now)
    if status == RUNNING:
        out["start_time"] = stamp
    else:
        out["end_time"] = stamp
        out["exit_code"] = 0 if status == COMPLETED else exit_code
    if stderr_tail is not None:
        out["stderr_tail"] = stderr_tail[-STDERR_TAIL_CHARS:]
    if reason is not None:
        out["reason"] = reason
    return out


def with_missing_uploads(
    record: Mapping[str, Any], missing: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """The record, saying which files never reached the store ({path, bytes, error} each)."""
    out = copy.deepcopy(dict(record))
    out["missing_uploads"] = [dict(m) for m in missing]
    return out


def is_final(record: Mapping[str, Any]) -> bool:
    return record.get("status") in FINAL_STATUSES


def duration_seconds(record: Mapping[str, Any], now: datetime | None = None) -> float | None:
    """Seconds from start to end (or to `now` while running); None before it started."""
    if not record.get("start_time"):
        return None
    start = parse_time(record["start_time"])
    if record.get("end_time"):
        end = parse_time(record["end_time"])
    else:
        end = now if now is not None else datetime.now(timezone.utc)
    return max(0.0, (end - start).total_seconds())


def record_json(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()


def local_record_path(workdir: Path, task: str) -> Path:
    """Where the agent keeps its copy: under ./logs/.tfbuild, which is never synced as a log."""
    return Path(workdir) / "logs" / ".tfbuild" / f"run-{task}.json"


def write_record(record: Mapping[str, Any], path: Path) -> None:
    """Write atomically (temp file + rename) so a reader never sees half a record."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(record_json(record))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_record(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
