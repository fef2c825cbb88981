"""Pure helpers: the argv that runs the entry script, and script-param merging."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..errors import ConfigError

_NUMBER = re.compile(r"^-\d+(\.\d*)?([eE][-+]?\d+)?$")


def entry_command(entry_script: str, python: str, args: Sequence[str]) -> list[str]:
    """argv for the entry script: `x.py` under Python (unbuffered), `-m pkg.mod`, or `x.sh`."""
    entry = entry_script.strip()
    if entry.startswith("-m "):
        module = entry[3:].strip()
        if not module:
            raise ConfigError("entry_script '-m' names no module; use '-m package.module'")
        return [python, "-u", "-m", module, *args]
    if entry.endswith(".sh"):
        return ["/bin/bash", entry, *args]
    if entry.endswith(".py"):
        return [python, "-u", entry, *args]
    raise ConfigError(
        f"entry_script {entry!r} is neither a .py file, a .sh file nor '-m package.module'"
    )


def _is_flag(token: str) -> bool:
    return token.startswith("-") and token != "-" and not _NUMBER.match(token)


def _flag_name(token: str) -> str:
    return token.split("=", 1)[0]


def _groups(argv: Sequence[str]) -> list[list[str]]:
    """Split argv into [flag, values...] groups; leading positionals form their own group."""
    groups: list[list[str]] = []
    for token in argv:
        if _is_flag(token) or not groups or token == "--":
            groups.append([token])
        elif "=" in groups[-1][0] and _is_flag(groups[-1][0]):
            groups.append([token])  # `--k=v` takes no further values
        else:
            groups[-1].append(token)
    return groups


def merge_script_params(baked: Sequence[str], given: Sequence[str]) -> list[str]:
    """Baked defaults, then the arguments given to `docker run`; a flag given at run
    time replaces the baked flag of the same name (with its values)."""
    given_flags = {_flag_name(g[0]) for g in _groups(given) if _is_flag(g[0])}
    kept = [
        tok
        for group in _groups(baked)
        if not (_is_flag(group[0]) and _flag_name(group[0]) in given_flags)
        for tok in group
    ]
    return [*kept, *given]
