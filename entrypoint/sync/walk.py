"""The synced files now on disk (no watchdog import: the syncer scans before watching)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from .layout import AGENT_DIR, SYNCED_DIRS, local_rel


def walk_files(workdir: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, stat) of every synced file now under ./outputs and ./logs."""
    for top in SYNCED_DIRS:
        yield from walk_dir(workdir, workdir / top)


def walk_dir(workdir: Path, top: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, stat) of every synced file under `top`, a folder in `workdir`."""
    for dirpath, dirnames, filenames in os.walk(top):
        for name in filenames:
            path = Path(dirpath) / name
            rel = local_rel(path, workdir)
            if rel is None:
                continue
            try:
                st = path.stat()
            except OSError:
                continue  # vanished between listing and stat
            yield rel, st
        # Never descend into the agent's own state (manifest).
        dirnames[:] = [d for d in dirnames if Path(dirpath) / d != workdir / "logs" / AGENT_DIR]
