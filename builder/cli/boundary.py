"""The one error boundary of the host CLI. Whatever goes wrong below a command —
a TfbuildError, an error of the Docker engine or SDK, an OSError, Ctrl-C — ends
as one line on stderr (what, where, how to fix) and a documented exit code:

    0    success (`tfbuild run`: every container exited 0)
    1    tfbuild could not do what was asked (spec, build, engine, store, run)
    2    the command line is wrong (unknown option, missing argument)
    130  interrupted (Ctrl-C)
    N    `tfbuild run` / `tfbuild runs wait`: the exit code of the first failing container
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click
import docker.errors

from .. import console
from ..errors import TfbuildError

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def describe(e: BaseException) -> str:
    """One line for an error that is not a TfbuildError."""
    if isinstance(e, docker.errors.ImageNotFound):
        return (f"the Docker engine has no such image ({_explanation(e)}); build it with "
                "`tfbuild image` or pull it with `docker pull`")
    if isinstance(e, docker.errors.NotFound):
        return f"the Docker engine has no such object ({_explanation(e)})"
    if isinstance(e, docker.errors.APIError):
        return (f"the Docker engine refused the request ({_explanation(e)}); check the "
                "names and values given")
    if isinstance(e, docker.errors.DockerException):
        return (f"Docker: {e}; check that an engine answers (`tfbuild engine`) and that the "
                "names given are valid")
    if isinstance(e, OSError):
        where = f" ({e.filename})" if e.filename else ""
        return f"{e.strerror or e}{where}; check the path and its permissions"
    return f"{type(e).__name__}: {e}"


def _explanation(e: docker.errors.APIError) -> str:
    return str(getattr(e, "explanation", None) or e)


def handle_errors(f: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except TfbuildError as e:
            console.fail(str(e))
            log_tail = getattr(e, "log_tail", "")
            if log_tail:
                console.err.print("last lines of the failing step:", style="dim", markup=False)
                console.err.print(log_tail, markup=False, highlight=False)
            sys.exit(e.exit_code)
        except (docker.errors.DockerException, OSError) as e:
            console.fail(describe(e))
            sys.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            console.fail("interrupted")
            sys.exit(EXIT_INTERRUPTED)

    return wrapper


def pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    """KEY=VALUE flags -> a mapping (a usage error names the bad one)."""
    out = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{v!r} is not KEY=VALUE", param_hint=what)
        out[key] = val
    return out
