"""Where each local file goes in the store. Pure string logic, no I/O.

    <dest>/<run-id>/run.json                      job record (the task owning outputs)
    <dest>/<run-id>/outputs/...  logs/...         files of the task owning outputs
    <dest>/<run-id>/tasks/<task>/run.json         every task's own record
    <dest>/<run-id>/tasks/<task>/outputs/...      files of every other task
    <dest>/<run-id>/tasks/<task>/logs/...
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from ..errors import ConfigError

SYNCED_DIRS = ("outputs", "logs")
AGENT_DIR = ".tfbuild"
"""logs/.tfbuild holds the agent's own state (manifest, staging copies, local run record);
it is never uploaded as a log."""
JOB_RECORD_KEY = "run.json"
TASKS_DIR = "tasks"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_name(kind: str, value: str) -> str:
    """Run ids and task names become path segments in the store: keep them plain."""
    if not _NAME.fullmatch(value or "") or ".." in value:
        raise ConfigError(
            f"{kind} {value!r} cannot be used as a folder name in the store; use letters, "
            "digits, '.', '_' and '-' (at most 128, starting with a letter or digit)"
        )
    return value


def task_record_key(task: str) -> str:
    return f"{TASKS_DIR}/{task}/run.json"


def remote_key(rel: str, task: str, owns_outputs: bool) -> str:
    """Run-relative key of a workdir-relative path such as `outputs/model.h5`."""
    if owns_outputs:
        return rel
    return f"{TASKS_DIR}/{task}/{rel}"


def local_rel(path: str | Path, workdir: str | Path) -> str | None:
    """`outputs/...` or `logs/...` (POSIX separators) for a path that is synced, else None."""
    try:
        rel = PurePosixPath(Path(path).relative_to(workdir).as_posix())
    except ValueError:
        return None
    parts = rel.parts
    if len(parts) < 2 or parts[0] not in SYNCED_DIRS:
        return None
    if parts[0] == "logs" and parts[1] == AGENT_DIR:
        return None
    return rel.as_posix()


def is_record_key(key: str) -> bool:
    return key == JOB_RECORD_KEY or (
        key.startswith(f"{TASKS_DIR}/") and key.endswith("/run.json") and key.count("/") == 2
    )
