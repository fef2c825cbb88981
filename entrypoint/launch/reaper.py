"""Reap every child in one place and turn SIGTERM/SIGINT into a flag.

The agent is PID 1 in its container: orphans of mpirun or orted end up as its
children. One `waitpid(-1)` loop collects them all; waiting on a single Popen
elsewhere would race it and lose the exit code.
"""

from __future__ import annotations

import os
import signal


def exit_code_of(waitstatus: int) -> int:
    """Shell convention: 128+N for a child killed by signal N."""
    code = os.waitstatus_to_exitcode(waitstatus)
    return 128 - code if code < 0 else code


class Reaper:
    def __init__(self) -> None:
        self.signal: int | None = None
        """The first SIGTERM/SIGINT received, if any."""

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.note(signum)

    def note(self, signum: int) -> None:
        """Record a stop request as if the signal had arrived (the first one counts)."""
        if self.signal is None:
            self.signal = signum

    @staticmethod
    def reap() -> list[tuple[int, int]]:
        """(pid, exit code) of every child that ended since the last call."""
        ended = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return ended
            if pid == 0:
                return ended
            ended.append((pid, exit_code_of(status)))
