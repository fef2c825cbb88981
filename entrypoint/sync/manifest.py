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

_CHUNK = 4 * 2**20


@dataclass(frozen=True)
class Entry:
    size: int
    sha256: str
    mtime_ns: int
    uploaded_at: float = 0.0
    """Unix time the store acknowledged the upload (for diagnostics and measurements)."""


@dataclass(frozen=True)
class Snapshot:
    """A private copy of a file, taken with `copy_aside`."""

    path: Path
    size: int
    sha256: str
    mtime_ns: int
    changed_while_copying: bool


def unchanged(entry: Entry | None, size: int, mtime_ns: int) -> bool:
    """Same size and mtime as when it was uploaded: no need to even read it."""
    return entry is not None and entry.size == size and entry.mtime_ns == mtime_ns


def same_content(entry: Entry | None, size: int, sha256: str) -> bool:
    return entry is not None and entry.size == size and entry.sha256 == sha256


def copy_aside(src: Path, dst: Path) -> Snapshot:
    """Copy `src` to `dst` and hash it in one pass.

    The upload then reads `dst`, which nobody else writes, so a training script that
    rewrites the file meanwhile cannot tear the upload. `changed_while_copying` says
    whether the source moved under us (the copy may then mix old and new bytes).
    """
    before = os.stat(src)
    digest = hashlib.sha256()
    size = 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(_CHUNK):
            digest.update(chunk)
            fout.write(chunk)
            size += len(chunk)
    after = os.stat(src)
    moved = (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns)
    moved = moved or size != after.st_size
    return Snapshot(dst, size, digest.hexdigest(), before.st_mtime_ns, moved)


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
                    float(data.get("uploaded_at", 0.0)),
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
