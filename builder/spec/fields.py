"""Typed readers over the given spec data: each returns a value or raises a SpecError
naming the key, the file or command line it came from, the bad value and the fix.
The concern modules (entry, runtime, distribution, packages, registries) read
through one `Fields`."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import SpecError


def scalar_text(value: Any) -> str | None:
    """A YAML scalar as the user wrote it; None when it is not a scalar."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


class Fields:
    def __init__(
        self, data: Mapping[str, Any], origins: Mapping[str, str], default_source: str
    ) -> None:
        # A key given as null means "use the default".
        self.data = {k: v for k, v in data.items() if v is not None}
        self.origins = origins
        self.default_source = default_source
        self.notes: list[str] = []

    def given(self, key: str) -> bool:
        return key in self.data

    def fail(self, key: str, value: Any, problem: str, fix: str) -> SpecError:
        return SpecError(key, value, problem, fix, self.origins.get(key, self.default_source))

    def text(self, key: str, default: str | None = None) -> str | None:
        if key not in self.data:
            return default
        value = self.data[key]
        text = scalar_text(value)
        if text is None or isinstance(value, bool):
            raise self.fail(
                key, value, f"{value!r} is not a text value", f"write a single value: {key}: ..."
            )
        return text.strip()

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(
                key, value, f"{value!r} is not true or false", f"write {key}: true or {key}: false"
            )
        return value

    def count(self, key: str, default: int, minimum: int) -> int:
        value = self.data.get(key, default)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(
                key,
                value,
                f"{value!r} is not a whole number",
                f"write a number, e.g. {key}: {max(minimum, 1) + 1}",
            )
        if value < minimum:
            raise self.fail(
                key, value, f"{value} is less than {minimum}", f"set it to {minimum} or more"
            )
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key, ())
        if isinstance(value, str | Path):
            value = [value]
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise self.fail(
                key, value, f"{value!r} is not a list", f"write a YAML list: {key}: [a, b]"
            )
        out = []
        for item in value:
            text = str(item) if isinstance(item, Path) else scalar_text(item)
            if text is None or not text.strip():
                raise self.fail(
                    key, item, f"the item {item!r} is not a single text value", "list plain values"
                )
            out.append(text.strip())
        return tuple(out)

    def text_map(self, key: str) -> dict[str, str]:
        value = self.data.get(key, {})
        if not isinstance(value, Mapping):
            raise self.fail(
                key, value, f"{value!r} is not a mapping", f"write it as {key}: {{NAME: value}}"
            )
        out = {}
        for k, v in value.items():
            text = scalar_text(v)
            if not isinstance(k, str) or text is None:
                raise self.fail(
                    key,
                    {k: v},
                    f"the entry {k!r}: {v!r} is not name: value text",
                    "give each entry a text name and a single value (quote it: '')",
                )
            out[k] = text
        return out
