"""The entry point: `entry_script` (a file in the source directory or `-m module`)
and `script_params` (a list or an estimator-style mapping)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from . import inputs
from .fields import Fields, did_you_mean, scalar_text

_MODULE = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")


def entry_script(f: Fields, base: Path) -> str:
    text = f.text("entry_script")
    if not text:
        raise f.fail(
            "entry_script",
            text,
            "is not set",
            "add `entry_script: train.py` to tfbuild.yaml or pass --entry-script",
        )
    if text.startswith("-m"):
        module = text[2:].strip()
        if not _MODULE.match(module):
            raise f.fail(
                "entry_script",
                text,
                f"{module!r} is not a module name",
                "write it as `-m package.module`",
            )
        return f"-m {module}"
    words = text.split()
    if len(words) > 1 and words[0].endswith((".py", ".sh")):
        raise f.fail(
            "entry_script",
            text,
            f"{text!r} has arguments in it",
            f"set entry_script: {words[0]} and put the arguments under script_params",
        )
    path = PurePosixPath(text)
    if path.is_absolute() or text.startswith("~"):
        raise f.fail(
            "entry_script",
            text,
            f"{text!r} is an absolute path",
            f"give it relative to the source directory {base}, e.g. {path.name}",
        )
    if path.suffix not in (".py", ".sh"):
        raise f.fail(
            "entry_script",
            text,
            f"{text!r} is neither a .py nor a .sh file",
            "name a .py or .sh file in the source directory, or a module: `-m package.module`",
        )
    normal = os.path.normpath(text).replace(os.sep, "/")
    target = (base / path).resolve()  # follows symlinks, so links out are caught too
    if normal == ".." or normal.startswith("../") or not target.is_relative_to(base):
        raise f.fail(
            "entry_script",
            text,
            f"{text!r} is outside the source directory {base}",
            "move the script into the source directory, or build from a folder that holds it",
        )
    if not target.exists():
        hint = did_you_mean(text, list(_scripts_in(base)))
        raise f.fail(
            "entry_script",
            text,
            f"{text!r} does not exist in {base}",
            f"{hint}give a path relative to the source directory",
        )
    if not target.is_file():
        raise f.fail("entry_script", text, f"{text!r} is not a file", "name a .py or .sh file")
    return normal


def script_params(f: Fields) -> tuple[str, ...]:
    value = f.data.get("script_params", ())
    if isinstance(value, Mapping):
        return tuple(_params_from_mapping(f, value))
    if isinstance(value, Sequence) and not isinstance(value, str):
        if any(inputs.is_input_value(v) for v in value):  # ['--data', {download: URI}]
            return tuple(_params_from_list(f, value))
        return f.texts("script_params")
    raise f.fail(
        "script_params",
        value,
        f"{value!r} is neither a list of arguments nor a mapping",
        "write script_params: {'--batch-size': 50} or script_params: ['--batch-size', '50']",
    )


def _params_from_list(f: Fields, params: Sequence[Any]) -> Iterator[str]:
    for i, item in enumerate(params):
        if inputs.is_input_value(item):
            yield inputs.param_token(f, inputs.list_flag(params, i), item)
            continue
        text = scalar_text(item)
        if text is None or not text.strip():
            raise f.fail("script_params", item, f"the item {item!r} is not a single text value",
                         "list plain values, or {download: URI} for a data input")
        yield text.strip()


def _params_from_mapping(f: Fields, params: Mapping[Any, Any]) -> Iterator[str]:
    for flag, value in params.items():
        if not isinstance(flag, str):
            raise f.fail(
                "script_params",
                flag,
                f"the argument name {flag!r} is not text",
                "quote it, e.g. '--epochs': 5",
            )
        if inputs.is_input_value(value):  # {download: URI}: the agent puts the path here
            yield flag
            yield inputs.param_token(f, flag, value)
        elif value is True or value is None:  # a bare switch, as the estimator passes it
            yield flag
        elif value is False:
            continue
        elif isinstance(value, list):
            items = [scalar_text(v) for v in value]
            if None in items:
                raise f.fail(
                    "script_params",
                    {flag: value},
                    f"the value of {flag} holds something that is not a plain value",
                    "give a plain value or a list of plain values",
                )
            yield flag
            yield from (i for i in items if i is not None)
        else:
            text = scalar_text(value)
            if text is None:
                raise f.fail(
                    "script_params",
                    {flag: value},
                    f"the value of {flag} is a {type(value).__name__}",
                    "give a plain value, e.g. '--lr': 0.01",
                )
            yield flag
            yield text


def _scripts_in(base: Path, limit: int = 2000) -> Iterator[str]:
    """.py/.sh files under base (hidden folders skipped, bounded for huge trees)."""
    seen = 0
    for root, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            seen += 1
            if seen > limit:
                return
            if name.endswith((".py", ".sh")):
                yield (Path(root) / name).relative_to(base).as_posix()
