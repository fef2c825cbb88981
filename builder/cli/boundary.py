"""The one error boundary of the host CLI: a TfbuildError becomes one line on
stderr and its exit code (with the failing step's log tail for a build)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from .. import console
from ..errors import TfbuildError


def handle_errors(f: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except TfbuildError as e:
            console.fail(str(e))
            log_tail = getattr(e, "log_tail", "")
            if log_tail:
                console.err.print("[dim]last lines of the failing step:[/]")
                console.err.print(log_tail, markup=False, highlight=False)
            sys.exit(e.exit_code)

    return wrapper


def pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    """KEY=VALUE flags -> a mapping (a usage error names the bad one)."""
    import click

    out = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{v!r} is not KEY=VALUE", param_hint=what)
        out[key] = val
    return out
