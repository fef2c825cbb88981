"""Errors the builder reports to the user (the CLI prints them and exits non-zero)."""


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
