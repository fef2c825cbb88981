"""Is a file held open for writing by some process right now? (Linux /proc, exact.)

inotify reports opens and closes a moment late; before an output is read for upload
the kernel's own table says whether a writer (say, one that just truncated the file
to write its next version) still holds it."""

from __future__ import annotations

import os
from pathlib import Path


def held_for_writing(path: Path) -> bool | None:
    """True if any process has `path` open for writing, False if none, None where
    /proc cannot tell (not Linux). Processes we may not inspect are skipped."""
    target = os.fspath(Path(path).resolve())
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") != target:
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    flags = next(line for line in info if line.startswith("flags:"))
            except (OSError, StopIteration):
                continue
            if int(flags.split()[1], 8) & os.O_ACCMODE != os.O_RDONLY:
                return True
    return False
