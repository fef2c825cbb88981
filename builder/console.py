"""One place for user-facing output: progress to stderr, results to stdout.

Messages are printed as plain text (only tfbuild's own prefixes are styled), so
user text such as `tfbuild[s3]` or `[fe80::1]:2222` is never read as Rich markup."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.text import Text

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def _line(prefix: str, style: str, message: str) -> Text:
    return Text.assemble((prefix, style), " ", message)


def step(message: str) -> None:
    err.print(_line("==>", "bold cyan", message))


def note(message: str) -> None:
    err.print(f"    {message}", markup=False)


def warn(message: str) -> None:
    err.print(_line("warning:", "yellow", message))


def fail(message: str) -> None:
    err.print(_line("error:", "bold red", message))


def result(message: str) -> None:
    """A result line on stdout (an image name, a path), printed as given."""
    out.print(message, markup=False, highlight=False)


def is_tty() -> bool:
    return sys.stderr.isatty()
