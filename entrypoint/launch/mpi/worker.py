"""Every node but node 0 of an mpi job: serve the launch channel, run the Open MPI
daemon mpirun sends, and exit with the job, within bounds:

- no launch within settings.launch_timeout: exit naming node 0 and the port;
- the daemon ended: node 0 has RESULT_BOUND seconds to say how the job ended;
- the result arrived: the daemon has DAEMON_EXIT_BOUND seconds to end by itself.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ...contract import TIME_LIMIT_EXIT_CODE, TIME_LIMIT_REASON
from ...errors import DiscoveryTimeout
from ...recorder import NodeTask, TaskRecorder
from ...settings import AgentSettings
from ...topology import Plan
from ..reaper import Reaper
from .channel import KILL_GRACE
from .command import MpiSettings
from .server import LaunchServer

RESULT_BOUND = 15.0
DAEMON_EXIT_BOUND = 10.0
POLL = 0.1


@dataclass
class _Outcome:
    code: int
    message: str
    canceled: bool = False
    timed_out: bool = False


def serve_node(
    plan: Plan,
    env: Mapping[str, str],
    workdir: Path,
    log: Callable[[str], None],
    *,
    settings: MpiSettings,
    token: str | None,
    run_id: str,
    agent: AgentSettings,
) -> int:
    reaper = Reaper()
    reaper.install()
    server = LaunchServer(settings.launch_port, token, log, env={**os.environ, **env},
                          workdir=str(workdir))
    server.start()
    task = f"mpi-node-{plan.node_rank}"
    recorder = TaskRecorder(run_id, task, False, workdir, log,
                            upload_to=agent.upload_to, store_env=env)
    record = NodeTask(recorder, task, "node", plan.node_rank)
    log(f"mpi: node {plan.node_rank} of {len(plan.hosts)}: waiting up to "
        f"{settings.launch_timeout:g} s for the launcher node {plan.hosts[0]} to start this "
        f"node's ranks (launch channel on port {server.port})")
    try:
        outcome = _NodeWait(server, reaper, settings, plan.hosts[0], record, log).run()
    finally:
        server.close()
    record.finish(outcome.code, outcome.canceled, outcome.message, reason=outcome.message)
    if outcome.timed_out:
        raise DiscoveryTimeout(outcome.message)
    if outcome.code == 0:
        log(f"mpi: job completed: {outcome.message}")
    elif outcome.canceled or outcome.code in (128 + signal.SIGTERM, 128 + signal.SIGINT):
        log(f"mpi: job canceled: {outcome.message}")
    else:
        log(f"mpi: job failed: {outcome.message}")
    return outcome.code


class _NodeWait:
    def __init__(
        self,
        server: LaunchServer,
        reaper: Reaper,
        settings: MpiSettings,
        launcher: str,
        record: NodeTask,
        log: Callable[[str], None],
    ) -> None:
        self.server = server
        self.reaper = reaper
        self.settings = settings
        self.launcher = launcher
        self.record = record
        self.log = log
        self._term_at: float | None = None
        self._killed = False

    def run(self) -> _Outcome:
        s = self.server
        start = time.monotonic()
        daemon_end = result_at = None
        running = False
        while True:
            for pid, code in self.reaper.reap():
                s.reaped(pid, code)
            now = time.monotonic()
            if s.launched and not running:
                running = True
                self.record.running()
            daemon_running = s.launched and s.exit_code is None
            if s.exit_code is not None and daemon_end is None:
                daemon_end = now
            if self.reaper.signal is not None:
                if not daemon_running:
                    name = signal.Signals(self.reaper.signal).name
                    return _Outcome(128 + self.reaper.signal, f"stopped by {name}", canceled=True)
                self._stop(now)
            elif s.result is not None:
                if result_at is None:
                    result_at = now
                if not daemon_running:
                    limited = s.result.code == TIME_LIMIT_EXIT_CODE and (
                        s.result.message.startswith(TIME_LIMIT_REASON))
                    return _Outcome(s.result.code, f"{s.result.message} (reported by "
                                                   f"{self.launcher})", canceled=limited)
                if now - result_at > DAEMON_EXIT_BOUND:
                    self._stop(now)
            elif daemon_end is not None and now - daemon_end > RESULT_BOUND:
                code = s.exit_code or 1
                return _Outcome(code, (
                    f"this node's Open MPI daemon ended (exit code {s.exit_code}) and the "
                    f"launcher node {self.launcher} did not say how the job ended within "
                    f"{RESULT_BOUND:g} s; it may have failed, see its log"))
            elif not s.launched and now - start > self.settings.launch_timeout:
                refused = (f"; {s.refusals} launch attempt(s) were refused (see above)"
                           if s.refusals else "")
                return _Outcome(1, (
                    f"the launcher node {self.launcher} did not start this node's ranks within "
                    f"{self.settings.launch_timeout:g} s (no authenticated launch arrived on "
                    f"the MPI launch channel, port {self.settings.launch_port}){refused}; check "
                    f"{self.launcher}'s log, that it reaches this node on port "
                    f"{self.settings.launch_port}, and that every node has the same "
                    "TFBUILD_JOB_TOKEN (or set TFBUILD_MPI_LAUNCH_TIMEOUT)"), timed_out=True)
            time.sleep(POLL)

    def _stop(self, now: float) -> None:
        """SIGTERM the daemon's process group, SIGKILL it KILL_GRACE seconds later."""
        if self._term_at is None:
            self.log("mpi: stopping this node's Open MPI daemon")
            self.server.stop_daemon(signal.SIGTERM)
            self._term_at = now
        elif not self._killed and now - self._term_at > KILL_GRACE:
            self.server.stop_daemon(signal.SIGKILL)
            self._killed = True
