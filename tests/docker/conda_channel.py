"""Hand-made conda packages and a local file channel (no conda-build here).

A `.tar.bz2` package is a tarball holding the payload plus `info/index.json`,
`info/paths.json` and `info/files`; py-rattler's indexer writes the repodata.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
from pathlib import Path

from rattler.index import index_fs


def write_package(
    channel: Path,
    name: str,
    version: str,
    files: dict[str, tuple[bytes, int]],
    *,
    depends: tuple[str, ...] = (),
    noarch: str = "generic",
    subdir: str = "noarch",
) -> Path:
    """Write `<channel>/<subdir>/<name>-<version>-0.tar.bz2`; `files` maps a path in the
    prefix to (content, mode)."""
    index = {
        "name": name,
        "version": version,
        "build": "0",
        "build_number": 0,
        "depends": list(depends),
        "license": "Apache-2.0",
        "subdir": subdir,
        "timestamp": 1_700_000_000_000,
    }
    if noarch:
        index["noarch"] = noarch
    if subdir != "noarch":
        index |= {"arch": "x86_64", "platform": "linux"}
    paths = {
        "paths": [
            {
                "_path": path,
                "path_type": "hardlink",
                "sha256": hashlib.sha256(data).hexdigest(),
                "size_in_bytes": len(data),
            }
            for path, (data, _) in sorted(files.items())
        ],
        "paths_version": 1,
    }
    members = {path: content for path, content in files.items()}
    members["info/index.json"] = (json.dumps(index, indent=2).encode(), 0o644)
    members["info/paths.json"] = (json.dumps(paths, indent=2).encode(), 0o644)
    members["info/files"] = ("".join(f"{p}\n" for p in sorted(files)).encode(), 0o644)
    out = channel / subdir / f"{name}-{version}-0.tar.bz2"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:bz2") as tar:
        for path, (data, mode) in sorted(members.items()):
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return out


def index_channel(channel: Path) -> None:
    """Write repodata.json for noarch and linux-64 (an empty linux-64 is fine)."""
    (channel / "noarch").mkdir(parents=True, exist_ok=True)
    (channel / "linux-64").mkdir(parents=True, exist_ok=True)
    asyncio.run(index_fs(channel, write_zst=False, write_shards=False, force=True))
