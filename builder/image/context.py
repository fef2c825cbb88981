"""The build context: a deterministic tar (sorted names, uid/gid 0, fixed mtime,
normalised modes) so identical inputs hit the engine's cache, also across two
checkouts of the same project. The user's `.dockerignore` is honoured."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from docker.utils.build import exclude_paths

# Never useful in a training image, and they churn: keep them out even without a
# .dockerignore (outputs/ and logs/ are what a run writes, not inputs).
DEFAULT_EXCLUDES = (".git", "**/__pycache__", "**/*.pyc", ".venv", "outputs", "logs")
FIXED_MTIME = 0


@dataclass
class BuildContext:
    """Files for the tar: archive name -> bytes (generated) or Path (from disk)."""

    files: dict[str, bytes | Path] = field(default_factory=dict)

    def add_bytes(self, name: str, data: bytes) -> None:
        self.files[name] = data

    def add_tree(self, root: Path, prefix: str, excludes: Iterable[str] = ()) -> None:
        for rel in sorted(exclude_paths(str(root), list(excludes))):
            path = root / rel
            if path.is_file() and not path.is_symlink():
                self.files[f"{prefix}/{rel}"] = path
            elif path.is_symlink() and path.resolve().is_file():
                # Follow links that stay useful; the tar holds plain files only.
                self.files[f"{prefix}/{rel}"] = path.resolve()

    def names(self) -> list[str]:
        return sorted(self.files)

    def tar_bytes(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in self.names():
                data = self._read(name)
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = FIXED_MTIME
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o755 if self._executable(name) else 0o644
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    def digest(self, prefix: str = "") -> str:
        """sha256 over names and contents (optionally only under `prefix`)."""
        h = hashlib.sha256()
        for name in self.names():
            if name.startswith(prefix):
                h.update(name.encode() + b"\0" + self._read(name) + b"\0")
        return "sha256:" + h.hexdigest()

    def _read(self, name: str) -> bytes:
        item = self.files[name]
        return item if isinstance(item, bytes) else item.read_bytes()

    def _executable(self, name: str) -> bool:
        item = self.files[name]
        return isinstance(item, Path) and bool(item.stat().st_mode & 0o111)


def source_excludes(source_dir: Path) -> list[str]:
    ignore = source_dir / ".dockerignore"
    patterns = list(DEFAULT_EXCLUDES)
    if ignore.is_file():
        for line in ignore.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                patterns.append(line)
    return patterns
