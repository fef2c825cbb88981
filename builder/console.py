"""One place for user-facing output: progress to stderr, results to stdout."""

from __future__ import annotations

import sys

from rich.console import Console

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def step(message: str) -> None:
    err.print(f"[bold cyan]==>[/] {message}")


def note(message: str) -> None:
    err.print(f"    {message}", markup=False)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {message}")


def fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}")


def is_tty() -> bool:
    return sys.stderr.isatty()
