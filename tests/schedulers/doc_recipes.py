"""The scripts in docs/schedulers.md, read from the page so the tests run exactly what
users copy (a ```bash file=NAME block)."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import REPO

DOC = REPO / "docs" / "schedulers.md"
FILE_BLOCK = re.compile(r"```bash file=(?P<name>\S+)\n(?P<body>.*?)```", re.S)


def doc_script(name: str) -> str:
    scripts = {m.group("name"): m.group("body") for m in FILE_BLOCK.finditer(DOC.read_text())}
    if name not in scripts:
        raise KeyError(f"docs/schedulers.md has no ```bash file={name} block "
                       f"(it has {', '.join(sorted(scripts)) or 'none'})")
    return scripts[name]


def write_script(name: str, folder: Path) -> Path:
    path = folder / name
    path.write_text(doc_script(name))
    path.chmod(0o755)
    return path
