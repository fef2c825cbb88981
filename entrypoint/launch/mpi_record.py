"""Run record and uploads for one node of an MPI job.

Node 0's task is `mpirun` (it owns ./outputs: rank 0 runs there, by-slot mapping);
every other node's task is `mpi-node-<i>`, whose ./logs go under tasks/ in the store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .. import runrecord


class NodeRecord:
    def __init__(
        self,
        env: Mapping[str, str],
        run_id: str,
        task: str,
        node_rank: int,
        owns_outputs: bool,
        workdir: Path,
        log: Callable[[str], None],
    ) -> None:
        self.workdir = workdir
        self.log = log
        self.path = workdir / "logs" / f"run.{task}.json"
        self.record = runrecord.new_record(run_id, task, "launcher" if owns_outputs else "node",
                                           node_rank)
        self.syncer: Any = None
        dest = env.get("TFBUILD_UPLOAD_TO")
        if dest:
            from ..sync.syncer import Syncer

            self.syncer = Syncer(dest, run_id, task, owns_outputs, workdir, log=log)
            self.syncer.start()

    def _publish(self) -> None:
        runrecord.write_record(self.record, self.path)
        if self.syncer is not None:
            self.syncer.publish_record(self.record)

    def running(self) -> None:
        self.record = runrecord.transition(self.record, runrecord.RUNNING)
        self._publish()

    def finish(self, code: int, canceled: bool = False, tail: str = "") -> None:
        """Final status, then the bounded final upload."""
        status = runrecord.CANCELED if canceled else (
            runrecord.COMPLETED if code == 0 else runrecord.FAILED)
        if runrecord.is_final(self.record):
            return
        if self.record["status"] == runrecord.QUEUED and status == runrecord.COMPLETED:
            self.record = runrecord.transition(self.record, runrecord.RUNNING)
        self.record = runrecord.transition(
            self.record, status, exit_code=code,
            stderr_tail=tail if status == runrecord.FAILED else None,
        )
        self._publish()
        if self.syncer is not None:
            report = self.syncer.close()
            if report.missing:
                self.log(f"{len(report.missing)} file(s) could not be uploaded; they stay in "
                         f"{self.workdir} and are listed in the run record")
