"""What has reached the store: size, sha256 and source mtime per file, kept on local disk.

The manifest is an append-only JSON-lines file, one line per upload; the last line for
a path wins. A restarted agent reads it back and skips every file whose content is
already in the store, so retries and restarts upload nothing twice. A line cut short
by a crash is ignored (that upload is simply done again).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    size: int
    sha256: str
    """"" when not computed (a big file copied in the kernel to a local store)."""
    mtime_ns: int
    uploaded_at: float = 0.0
    """Unix time the store acknowledged the upload (for diagnostics and measurements)."""
    parts: int = 0
    """A log uploaded as appended parts: how many are in the store (0: stored whole)."""
    tail: str = ""
    """For a log in parts: sha256 of its last bytes (up to TAIL) before `size`, to tell an
    append (upload only what is new) from a rewrite (start over)."""


TAIL = 4096


def unchanged(entry: Entry | None, size: int, mtime_ns: int) -> bool:
    """Same size and mtime as when it was uploaded: no need to even read it."""
    return entry is not None and entry.size == size and entry.mtime_ns == mtime_ns


def same_content(entry: Entry | None, size: int, sha256: str) -> bool:
    return entry is not None and bool(entry.sha256) and entry.size == size \
        and entry.sha256 == sha256


def tail_digest(fd: int, end: int) -> str:
    """sha256 of the TAIL bytes of the open file `fd` before offset `end`."""
    start = max(0, end - TAIL)
    return hashlib.sha256(os.pread(fd, end - start, start)).hexdigest()


class Manifest:
    """Thread-safe view of the manifest file; `record` appends one line.

    No fsync: losing the last lines in a crash only means uploading those files again.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}
        self._load()

    def _load(self) -> None:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            try:
                data = json.loads(line)
                self._entries[data["path"]] = Entry(
                    int(data["size"]), str(data["sha256"]), int(data["mtime_ns"]),
                    float(data.get("uploaded_at", 0.0)), int(data.get("parts", 0)),
                    str(data.get("tail", "")),
                )
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line from a crash: that file is uploaded again

    def get(self, rel: str) -> Entry | None:
        with self._lock:
            return self._entries.get(rel)

    def record(self, rel: str, entry: Entry) -> None:
        line = json.dumps({"path": rel, **asdict(entry)}, sort_keys=True) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(line)
            self._entries[rel] = entry

    def paths(self) -> list[str]:
        with self._lock:
            return sorted(self._entries)
