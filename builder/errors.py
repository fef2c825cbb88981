"""Every error the builder reports to the user, in one hierarchy.

The CLI's error boundary (`tfbuild.cli.boundary`) prints any TfbuildError as one
line and exits with its `exit_code`; each message says what was wrong, where, and
how to fix it.
"""

from __future__ import annotations

from typing import Any

CONFIG_NAME = "tfbuild.yaml"
"""The spec file in a source directory (the default place a SpecError points at)."""


class TfbuildError(Exception):
    """What went wrong, where, and how to fix it."""

    exit_code = 1


class EngineError(TfbuildError):
    """No Docker engine answers, or the engine refused a request."""


class BuildError(TfbuildError):
    """An image build failed; carries the failing step and its log tail."""

    def __init__(self, message: str, step: str = "", log_tail: str = "") -> None:
        super().__init__(message)
        self.step = step
        self.log_tail = log_tail


class RegistryError(TfbuildError):
    """A push or pull failed: unreachable registry or refused credentials."""


class RunsError(TfbuildError):
    """A run or file is not in the store, or the store cannot be read."""


class LaunchError(TfbuildError):
    """`tfbuild run` cannot start the job as asked (image, destination, flags)."""


class CompatError(TfbuildError, ValueError):
    """compat.yaml itself is malformed (a packaging bug, not a user error)."""


class SpecError(TfbuildError):
    """A spec value is wrong. The message says where, what and how to fix it."""

    def __init__(
        self,
        field: str | None,
        value: Any,
        problem: str,
        fix: str,
        source: str = CONFIG_NAME,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.field = field
        self.value = value
        self.problem = problem
        self.fix = fix
        self.source = source
        self.line = line
        self.column = column
        where = [source]
        if line is not None:
            where.append(f"line {line}, column {column}")
        if field:
            where.append(field)
        super().__init__(f"{': '.join(where)}: {problem}; {fix}")
