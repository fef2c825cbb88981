"""The run history in a store, seen from the host: list, show, download, tail logs.

Reads what the agents wrote (see docs/uploads.md for the layout). The summarising
functions (`job_status`, `run_view`, `log_keys`) are pure; the rest reads the store.
"""

from __future__ import annotations

import codecs
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from tfbuild_agent.errors import AgentError
from tfbuild_agent.runrecord import (
    CANCELED,
    COMPLETED,
    FAILED,
    FINAL_STATUSES,
    QUEUED,
    RUNNING,
    duration_seconds,
    parse_time,
)
from tfbuild_agent.sync.layout import JOB_RECORD_KEY, TASKS_DIR, is_record_key, task_record_key
from tfbuild_agent.sync.store import Store, open_store

from ..errors import LaunchError, RunsError
from .destinations import default_runs_dir, resolve_destination

UNKNOWN = "Unknown"


@dataclass(frozen=True)
class TaskView:
    task: str
    role: str
    rank: int | None
    status: str
    exit_code: int | None
    start_time: str | None
    end_time: str | None
    duration: float | None
    missing_uploads: tuple[Mapping[str, Any], ...] = ()
    stderr_tail: str = ""
    reason: str = ""
    """Why the task ended as it did, when the agent says (e.g. which peer was lost)."""


@dataclass(frozen=True)
class RunView:
    run_id: str
    status: str
    queued_time: str | None
    start_time: str | None
    end_time: str | None
    duration: float | None
    tasks: tuple[TaskView, ...]
    files: Mapping[str, int] = field(default_factory=dict)
    """Run-relative key -> size, without the run records."""
    reason: str = ""
    """The job record's reason, when the agent gives one."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (for `--json`)."""
        out = asdict(self)
        out["files"] = dict(self.files)
        return out

    @property
    def all_final(self) -> bool:
        return bool(self.tasks) and all(t.status in FINAL_STATUSES for t in self.tasks)


def job_status(statuses: Sequence[str]) -> str:
    """One status for the job from its tasks' statuses (a task not heard from is Queued)."""
    if not statuses:
        return UNKNOWN
    for worst in (FAILED, CANCELED):
        if worst in statuses:
            return worst
    if all(s == COMPLETED for s in statuses):
        return COMPLETED
    if all(s == QUEUED for s in statuses):
        return QUEUED
    return RUNNING


def _task_view(name: str, record: Mapping[str, Any] | None, now: datetime) -> TaskView:
    if record is None:
        return TaskView(name, "", None, QUEUED, None, None, None, None)
    return TaskView(
        task=name,
        role=str(record.get("role", "")),
        rank=record.get("rank"),
        status=str(record.get("status", UNKNOWN)),
        exit_code=record.get("exit_code"),
        start_time=record.get("start_time"),
        end_time=record.get("end_time"),
        duration=duration_seconds(record, now),
        missing_uploads=tuple(record.get("missing_uploads") or ()),
        stderr_tail=str(record.get("stderr_tail") or ""),
        reason=str(record.get("reason") or ""),
    )


def run_view(
    run_id: str,
    job_record: Mapping[str, Any] | None,
    task_records: Mapping[str, Mapping[str, Any]],
    files: Mapping[str, int] | None = None,
    now: datetime | None = None,
) -> RunView:
    """Summarise a run from its job record, its tasks' records and its files. Pure."""
    now = now or datetime.now(timezone.utc)
    names = list((job_record or {}).get("tasks") or [])
    names += sorted(t for t in task_records if t not in names)
    if job_record is not None and not names:
        names = [str(job_record.get("task", "task"))]
    records = dict(task_records)
    if job_record is not None and job_record.get("task") and job_record["task"] not in records:
        records[job_record["task"]] = job_record
    tasks = tuple(_task_view(n, records.get(n), now) for n in names)
    starts = [t.start_time for t in tasks if t.start_time]
    queued = [r.get("queued_time") for r in records.values() if r.get("queued_time")]
    status = job_status([t.status for t in tasks])
    end = None
    if tasks and all(t.status in FINAL_STATUSES for t in tasks):
        ends = [t.end_time for t in tasks if t.end_time]
        end = max(ends, key=parse_time) if ends else None
    start = min(starts, key=parse_time) if starts else None
    duration = None
    if start:
        stop = parse_time(end) if end else now
        duration = max(0.0, (stop - parse_time(start)).total_seconds())
    kept = {k: v for k, v in (files or {}).items() if not is_record_key(k)}
    reason = str((job_record or {}).get("reason") or "")
    return RunView(run_id, status, min(queued, key=parse_time) if queued else None, start, end,
                   duration, tasks, kept, reason)


def log_keys(files: Mapping[str, int]) -> list[str]:
    """Text logs of a run (its own and every task's), without TensorBoard event files."""
    out = []
    for key in files:
        parts = PurePosixPath(key).parts
        in_logs = parts[:1] == ("logs",) or (
            len(parts) > 3 and parts[0] == TASKS_DIR and parts[2] == "logs"
        )
        if in_logs and "tfevents" not in parts[-1]:
            out.append(key)
    return sorted(out)


def tensorboard_keys(files: Mapping[str, int]) -> list[str]:
    """Everything under the run's logs folders (TensorBoard needs the event files)."""
    out = []
    for key in files:
        parts = PurePosixPath(key).parts
        if parts[:1] == ("logs",) or (len(parts) > 3 and parts[0] == TASKS_DIR
                                      and parts[2] == "logs"):
            out.append(key)
    return sorted(out)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


# -- reading the store ----------------------------------------------------------------


def local_folder(dest: str) -> Path:
    """A plain path or file:// URI (relative ones from the working directory) -> folder."""
    try:
        resolved = resolve_destination(dest, False, cwd=Path.cwd(), env=os.environ,
                                       home=Path.home())
    except LaunchError as e:
        raise RunsError(str(e)) from None
    return resolved.host_dir or Path(dest)


def open_runs(dest: str, env: Mapping[str, str] | None = None) -> Store:
    """The store at `dest`; a local folder that does not exist is an error (a typo in
    the path would otherwise look like a store without runs)."""
    if "://" not in dest or dest.lower().startswith("file://"):
        folder = local_folder(dest)
        if not folder.is_dir():
            raise RunsError(
                f"{folder} does not exist or is not a folder; give the folder the runs were "
                "uploaded to (--upload-to of `tfbuild run`; without it, the default local run "
                f"history {default_runs_dir(os.environ, Path.home())})"
            )
        dest = f"file://{folder}"
    try:
        return open_store(dest, env)
    except AgentError as e:
        raise RunsError(str(e)) from None


def _guard(what: str, store: Store, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except (RunsError, FileNotFoundError):
        raise
    except Exception as e:
        raise RunsError(
            f"cannot {what} in {store.uri} ({type(e).__name__}: {e}); check that the store is "
            "reachable and that the credentials in your environment may read it"
        ) from None


def _read_json(store: Store, key: str) -> dict[str, Any] | None:
    try:
        return json.loads(store.read(key))
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # half-visible or foreign file: treat as not there yet


def _task_records(run: Store) -> dict[str, dict[str, Any]]:
    out = {}
    for name in run.listdir(TASKS_DIR):
        record = _read_json(run, task_record_key(name))
        if record is not None:
            out[name] = record
    return out


def run_ids(store: Store) -> list[str]:
    return _guard("list runs", store, lambda: store.listdir())


def load_run(store: Store, run_id: str, *, with_files: bool = True) -> RunView:
    """The run `run_id`, or RunsError saying which runs exist."""
    run = store.child(run_id)

    def load() -> RunView:
        job = _read_json(run, JOB_RECORD_KEY)
        tasks = _task_records(run)
        files = run.files() if with_files or (job is None and not tasks) else {}
        if job is None and not tasks and not files:
            known = store.listdir()
            hint = f"runs there: {', '.join(known[:10])}" if known else "it holds no runs yet"
            raise RunsError(f"no run {run_id!r} in {store.uri}; {hint}")
        return run_view(run_id, job, tasks, files)

    return _guard(f"read run {run_id}", store, load)


def list_runs(store: Store) -> list[RunView]:
    """Every run under the destination, oldest first."""
    views = []
    for rid in run_ids(store):
        try:
            view = load_run(store, rid, with_files=False)
        except RunsError:
            continue
        if view.tasks:  # a folder without any run record is not a run
            views.append(view)
    return sorted(views, key=lambda v: (v.queued_time or v.start_time or "", v.run_id))


def _safe_target(root: Path, rel: str) -> Path:
    target = (root / rel).resolve()
    if not target.is_relative_to(root.resolve()):
        raise RunsError(f"refusing to write {rel!r} outside {root}")
    return target


def _fetch(run: Store, key: str, size: int, target: Path) -> None:
    """Download to a temporary name, check the size, then rename into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tfbuild-download")
    try:
        run.get_file(key, tmp)
        got = tmp.stat().st_size
        if got != size:
            raise RunsError(f"{key}: got {got} bytes, the store lists {size}; run the download "
                            "again (the file may have been replaced meanwhile)")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def download(store: Store, run_id: str, path: str = "", out_dir: Path = Path(".")) -> list[Path]:
    """Copy a run's file or folder (or the whole run) to `out_dir`, keeping its name:
    a file lands at out_dir/<name>, a folder at out_dir/<folder>/..., the whole run at
    out_dir/<run-id>/... Returns the written paths."""
    run = store.child(run_id)
    files = _guard(f"list run {run_id}", store, run.files)
    if not files:
        load_run(store, run_id)  # raises the "no such run" error with the known runs
    path = path.strip("/")
    if path in files:
        chosen = {path: files[path]}
        base = str(PurePosixPath(path).parent)
    else:
        prefix = f"{path}/" if path else ""
        chosen = {k: v for k, v in files.items() if k.startswith(prefix)}
        base = str(PurePosixPath(path).parent) if path else ""
    if not chosen:
        tops = sorted({k.split("/", 1)[0] for k in files})
        raise RunsError(f"{path!r} is not in run {run_id}; it has {', '.join(tops)} "
                        f"(`tfbuild runs show` lists every file)")
    root = Path(out_dir) / run_id if not path else Path(out_dir)
    written = []
    for key in sorted(chosen):
        rel = key if base in ("", ".") else key[len(base) + 1:]
        target = _safe_target(root, rel)
        _guard(f"download {key}", store, lambda k=key, t=target: _fetch(run, k, chosen[k], t))
        written.append(target)
    return written


def mirror(run: Store, keys: Iterable[str], files: Mapping[str, int], local: Path,
           have: dict[str, int]) -> int:
    """Bring `keys` to `local` when their size changed since `have`; returns how many.
    A file replaced while we copy it is left for the next call (logs of a live run grow)."""
    changed = 0
    for key in keys:
        if have.get(key) == files[key]:
            continue
        try:
            _fetch(run, key, files[key], _safe_target(local, key))
        except (RunsError, FileNotFoundError):
            continue
        have[key] = files[key]
        changed += 1
    return changed


def tail_logs(
    store: Store,
    run_id: str,
    emit: Callable[[str, str], None],
    *,
    follow: bool = False,
    interval: float = 2.0,
    timeout: float = 24 * 3600.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> RunView:
    """Print the run's text logs; with `follow`, keep printing what is appended until
    every task reached a final status (then one last read), at most `timeout` seconds.

    `emit(key, text)` receives new text per log file. The agent uploads a final
    run.json only after the task's last files, so nothing is cut off at the end.
    """
    run = store.child(run_id)
    offsets: dict[str, int] = {}
    decoders: dict[str, codecs.IncrementalDecoder] = {}
    deadline = clock() + timeout
    while True:
        view = load_run(store, run_id, with_files=False)  # status first, files after
        files = _guard(f"list run {run_id}", store, run.files)
        for key in log_keys(files):
            size, start = files[key], offsets.get(key, 0)
            if size < start:  # replaced by a shorter file: start over
                start = 0
                decoders.pop(key, None)
                emit(key, "\n[tfbuild: file was replaced; showing it again]\n")
            if size == start:
                continue
            data = _guard(f"read {key}", store, lambda k=key, s=start, e=size: run.read(k, s, e))
            offsets[key] = start + len(data)
            dec = decoders.setdefault(key, codecs.getincrementaldecoder("utf-8")("replace"))
            text = dec.decode(data)
            if text:
                emit(key, text)
        if not follow or view.all_final:
            return view
        left = deadline - clock()
        if left <= 0:
            raise RunsError(f"run {run_id} still has status {view.status} after "
                            f"{format_duration(timeout)}; stopped following (use --timeout)")
        sleep(min(interval, left))


def run_record_exists(dest: str, run_id: str, env: Mapping[str, str] | None = None) -> bool:
    """Whether the run's job record reached the store (what `tfbuild runs show` reads)."""
    try:
        run = open_runs(dest, env).child(run_id)
        return _read_json(run, JOB_RECORD_KEY) is not None
    except Exception:  # an unreachable store: the caller says the record is not there
        return False
