"""Start this node's task processes, watch them, and decide the job's fate.

- Each child runs in its own process group; SIGTERM/SIGINT to the agent are
  forwarded to every group, and after a grace period the rest is killed.
- The agent reaps every child that ends up with it (it is PID 1 in a container).
- Job semantics: the decisive task (chief, or worker 0) decides success; servers
  (ps, and workers under ps) are then stopped instead of serving forever. Any
  failure stops the rest, here and, through the control channel, on other nodes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..contract import TIME_LIMIT_EXIT_CODE, TIME_LIMIT_REASON, TIME_LIMIT_SKEW_SECONDS
from ..runrecord import CANCELED, COMPLETED, FAILED, RUNNING
from ..topology import Task
from .output import OutputPump
from .reaper import Reaper, exit_code_of

__all__ = ["Control", "Outcome", "Supervisor", "exit_code_of"]

POLL_INTERVAL = 0.1


class Control(Protocol):
    """The job-wide channel (rendezvous.ControlChannel) as the supervisor uses it."""

    def report(self, task: str, status: str, exit_code: int | None) -> None: ...

    def next_event(self, timeout: float) -> Any: ...


@dataclass
class Child:
    task: Task
    proc: subprocess.Popen[bytes]
    pump: OutputPump
    exit_code: int | None = None
    stopped_by_agent: bool = False


@dataclass
class Outcome:
    exit_code: int
    status: str  # runrecord.COMPLETED, FAILED or CANCELED
    reason: str = ""
    task_codes: dict[str, int] = field(default_factory=dict)


class Supervisor:
    def __init__(
        self,
        tasks: Sequence[Task],
        command: Callable[[Task], list[str]],
        base_env: Mapping[str, str],
        workdir: Path,
        log_dir: Path,
        *,
        decisive_task: str | None,
        servers_only: Sequence[str] = (),
        grace: float = 30.0,
        time_limit: float | None = None,
        control: Control | None = None,
        on_status: Callable[[Task, str, int | None, list[str], str], None] | None = None,
        on_lost: Callable[[int | None, str], None] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.tasks = list(tasks)
        self.command = command
        self.base_env = dict(base_env)
        self.workdir = workdir
        self.log_dir = log_dir
        self.decisive_task = decisive_task
        self.servers_only = set(servers_only)
        self.grace = grace
        self.time_limit = time_limit
        """max_run_duration_seconds: counted from the start of the tasks on this node."""
        self._started_at = time.monotonic()
        self.control = control
        self.on_status = on_status or (lambda *a: None)
        self.on_lost = on_lost or (lambda *a: None)
        self.log = log
        self.children: dict[int, Child] = {}
        self._reaper = Reaper()
        self._kill_at: float | None = None
        self._outcome: Outcome | None = None

    # -- signals -------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        self._reaper.install()

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._reaper.note(signum)

    @property
    def _signal(self) -> int | None:
        return self._reaper.signal

    # -- lifecycle -----------------------------------------------------------
    def run(self) -> Outcome:
        prefix = len(self.tasks) > 1
        self._started_at = time.monotonic()
        for task in self.tasks:
            self._start(task, prefix)
        while self._running():
            self._handle_signal()
            self._reap()
            self._handle_control()
            self._enforce_time_limit()
            self._enforce_deadline()
            if self.control is None:
                time.sleep(POLL_INTERVAL)
        for child in self.children.values():
            child.pump.close()
        return self._final_outcome()

    def _start(self, task: Task, prefix: bool) -> None:
        env = {**self.base_env, **task.env}
        argv = self.command(task)
        proc = subprocess.Popen(
            argv,
            cwd=self.workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: signals reach its children too
        )
        pump = OutputPump(task.name, self.log_dir / f"{task.name}.log", prefix)
        pump.attach(proc.stdout, proc.stderr)  # type: ignore[arg-type]
        self.children[proc.pid] = Child(task, proc, pump)
        self.on_status(task, RUNNING, None, [], "")

    def _running(self) -> bool:
        return any(c.exit_code is None for c in self.children.values())

    def _reap(self) -> None:
        for pid, code in self._reaper.reap():
            child = self.children.get(pid)
            if child is None:
                continue  # an orphan re-parented to us (PID 1): reaped, nothing to do
            child.exit_code = code
            child.proc.returncode = code
            self._on_exit(child)

    def stop_requested(self) -> bool:
        """A user or the scheduler asked this agent to stop (SIGTERM/SIGINT)."""
        return self._signal is not None

    def _on_exit(self, child: Child) -> None:
        name, code = child.task.name, child.exit_code or 0
        reason = ""
        if self._signal is not None:
            status = CANCELED
            reason = f"stopped by {signal.Signals(self._signal).name}"
        elif child.stopped_by_agent and self._outcome is not None and (
            self._outcome.status == CANCELED
        ):
            status, reason = CANCELED, self._outcome.reason  # the time limit
        elif child.stopped_by_agent:
            # A server stopped after the job succeeded has done its part; a task stopped
            # because of a failure elsewhere failed with the job (Canceled is only for a
            # job a user or the scheduler stopped).
            success = self._outcome is not None and self._outcome.status == COMPLETED
            if success:
                status, code = COMPLETED, 0
            else:
                status = FAILED
                why = self._outcome.reason if self._outcome is not None else "the job failed"
                reason = f"stopped by the agent: {why}"
        else:
            status = COMPLETED if code == 0 else FAILED
            if code != 0:
                reason = f"task {name} failed with exit code {code}"
        try:
            self.on_status(child.task, status, code, list(child.pump.stderr_tail), reason)
        except Exception as e:  # a status hook must never take the job down
            self.log(f"could not record {name} {status}: {e}")
        self._report(name, status, code)
        if self._signal is not None or child.stopped_by_agent:
            return
        if code != 0:
            self.log(f"task {name} failed with exit code {code}; stopping the job")
            self._decide(Outcome(code, FAILED, f"task {name} failed with exit code {code}"))
            self._stop(lambda c: True)
        elif name == self.decisive_task:
            self._decide(Outcome(0, COMPLETED, f"{name} completed"))
            if self.servers_only:
                servers = ", ".join(sorted(self.servers_only))
                self.log(f"{name} completed: stopping the servers ({servers})")
            self._stop(lambda c: c.task.name in self.servers_only)

    def _decide(self, outcome: Outcome) -> None:
        if self._outcome is None:
            self._outcome = outcome

    def _report(self, task: str, status: str, code: int | None) -> None:
        if self.control is not None:
            try:
                self.control.report(task, status, code)
            except OSError as e:
                self.log(f"could not report {task} {status} to the job: {e}")

    def _handle_control(self) -> None:
        if self.control is None:
            return
        event = self.control.next_event(timeout=POLL_INTERVAL)
        if event is None:
            return
        kind = getattr(event, "kind", None)
        message = getattr(event, "message", str(event))
        if kind == "canceled" and self._near_time_limit():
            self._time_limit_reached(f"{TIME_LIMIT_REASON}: reached on another node ({message})")
        elif kind == "finished":
            self._decide(Outcome(0, COMPLETED, message))
            self._stop(lambda c: c.task.name in self.servers_only)
        elif getattr(event, "ends_job", False) and self._outcome is None:
            # failed, lost, server_lost: after the job succeeded these are expected
            # (the other nodes are leaving); before, they end it.
            self.log(f"{message}; stopping this node's tasks")
            self._decide(Outcome(1, FAILED, message))
            self._stop(lambda c: True)
            if kind == "lost":
                try:
                    self.on_lost(getattr(event, "rank", None), message)
                except Exception as e:  # a record hook must never take the job down
                    self.log(f"could not record the lost node: {e}")

    def _elapsed(self) -> float:
        return time.monotonic() - self._started_at

    def _near_time_limit(self) -> bool:
        return self.time_limit is not None and (
            self._elapsed() >= self.time_limit - TIME_LIMIT_SKEW_SECONDS
        )

    def _enforce_time_limit(self) -> None:
        if self.time_limit is None or self._elapsed() < self.time_limit:
            return
        self._time_limit_reached(
            f"{TIME_LIMIT_REASON}: the job ran for max_run_duration_seconds "
            f"({self.time_limit:g} s)"
        )

    def _time_limit_reached(self, reason: str) -> None:
        """Stop every task with the usual grace; the run ends Canceled with `reason`."""
        if self._outcome is not None or self._signal is not None:
            return
        self.log(f"{reason}: stopping the tasks (grace {self.grace:g} s)")
        self._decide(Outcome(TIME_LIMIT_EXIT_CODE, CANCELED, reason))
        self._stop(lambda c: True)

    def _stop(self, which: Callable[[Child], bool], sig: int = signal.SIGTERM) -> None:
        for child in self.children.values():
            if child.exit_code is None and which(child):
                child.stopped_by_agent = True
                _killpg(child.proc.pid, sig)
        if self._kill_at is None:
            self._kill_at = time.monotonic() + self.grace

    def _handle_signal(self) -> None:
        if self._signal is None or self._kill_at is not None:
            return
        name = signal.Signals(self._signal).name
        self.log(f"received {name}: forwarding it to the tasks (grace {self.grace:.0f} s)")
        for child in self.children.values():
            if child.exit_code is None:
                _killpg(child.proc.pid, self._signal)
        self._kill_at = time.monotonic() + self.grace

    def _enforce_deadline(self) -> None:
        if self._kill_at is None or time.monotonic() < self._kill_at:
            return
        for child in self.children.values():
            if child.exit_code is None:
                self.log(f"task {child.task.name} still running after the grace period: killing it")
                _killpg(child.proc.pid, signal.SIGKILL)
        self._kill_at = float("inf")

    def _final_outcome(self) -> Outcome:
        codes = {c.task.name: c.exit_code or 0 for c in self.children.values()}
        if self._signal is not None:
            return Outcome(128 + self._signal, CANCELED, "stopped by signal", codes)
        if self._outcome is not None:
            self._outcome.task_codes = codes
            return self._outcome
        worst = max(codes.values(), default=0)
        return Outcome(worst, COMPLETED if worst == 0 else FAILED, "", codes)


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
