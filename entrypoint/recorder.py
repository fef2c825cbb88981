"""One node's run records and uploads, the same for every backend.

`TaskRecorder` owns the Syncer's lifecycle (start, publish at every status change,
bounded final flush) and the records of this node's tasks. Records are kept locally at
runrecord.local_record_path (logs/.tfbuild/run-<task>.json, never synced as a log) and
uploaded to tasks/<task>/run.json (and the job-level run.json by the task that owns
outputs). It can also close the records of another node's tasks when that node was
lost, so no record stays Running after the job ended.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import runrecord
from .discovery.membership import Membership


def run_id_for(
    run_id: str, token: str | None, membership: Membership, launcher_job: str = ""
) -> str:
    """TFBUILD_RUN_ID if given, else one every node derives alike: from the outside
    launcher's job id when srun or mpirun started one agent per process, else from the
    hosts and the job token; a lone node's is its start time and PID."""
    if run_id:
        return run_id
    if membership.process is not None and launcher_job:
        return re.sub(r"[^A-Za-z0-9._-]", "-", launcher_job)
    if membership.node_count == 1:
        return time.strftime("run-%Y%m%d-%H%M%S", time.gmtime()) + f"-{os.getpid()}"
    seed = ",".join(membership.hosts) + (token or "")
    return "run-" + hashlib.sha256(seed.encode()).hexdigest()[:12]


class TaskRecorder:
    """Records of this node's tasks, kept locally and published through the Syncer.

    `primary` names the node's uploads (its lowest-rank task); `owns_outputs` is true on
    the node of rank 0, whose task record is also the job-level run.json.
    """

    def __init__(
        self,
        run_id: str,
        primary: str | None,
        owns_outputs: bool,
        workdir: Path,
        log: Callable[[str], None],
        *,
        upload_to: str | None,
        store_env: Mapping[str, str],
    ) -> None:
        self.run_id = run_id
        self.workdir = Path(workdir)
        self.log = log
        self.records: dict[str, dict[str, Any]] = {}
        self.syncer: Any = None
        if upload_to and primary is not None:
            from .sync.syncer import Syncer  # fsspec only when uploading

            self.syncer = Syncer(
                upload_to, run_id, primary, owns_outputs, self.workdir, log=log,
                env=dict(store_env),
            )
            self.syncer.start()

    def status(
        self,
        task: str,
        role: str,
        rank: int,
        status: str,
        *,
        exit_code: int | None = None,
        stderr_tail: str | None = None,
        reason: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Move `task`'s record to `status` (skipping Running for a task that never
        started) and publish it; a final record never changes again. `extra`: more
        entries for the record (e.g. `onnx`, the export's summary)."""
        rec = self.records.get(task) or runrecord.new_record(self.run_id, task, role, rank)
        if runrecord.is_final(rec) or status == rec["status"]:
            return rec
        if rec["status"] == runrecord.QUEUED and status == runrecord.COMPLETED:
            rec = runrecord.transition(rec, runrecord.RUNNING)
        rec = runrecord.transition(
            rec, status, exit_code=exit_code, stderr_tail=stderr_tail, reason=reason
        )
        if extra:
            rec = {**rec, **extra}
        self.records[task] = rec
        self._publish(rec)
        return rec

    def ended(
        self, task: str, role: str, rank: int, code: int, *, canceled: bool = False,
        tail: str = "", reason: str = "", extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The final status from an exit code: 0 Completed, else Failed (or Canceled)."""
        status = runrecord.CANCELED if canceled else (
            runrecord.COMPLETED if code == 0 else runrecord.FAILED)
        return self.status(
            task, role, rank, status, exit_code=code,
            stderr_tail=tail if status == runrecord.FAILED else None,
            reason=reason if reason and status != runrecord.COMPLETED else None, extra=extra,
        )

    def lost(self, tasks: list[tuple[str, str, int]], reason: str) -> None:
        """Close the records of a lost node's tasks ((name, role, rank) each) as Failed:
        that node cannot do it any more."""
        for name, role, rank in tasks:
            rec = runrecord.new_record(self.run_id, name, role, rank)
            rec = runrecord.transition(rec, runrecord.RUNNING)
            rec = runrecord.transition(rec, runrecord.FAILED, exit_code=None, reason=reason)
            self._publish(rec)

    def _publish(self, rec: dict[str, Any]) -> None:
        if self.syncer is not None:
            self.syncer.publish_record(rec)  # also keeps the local copy
        else:
            runrecord.write_record(rec, runrecord.local_record_path(self.workdir, rec["task"]))

    def close(self) -> None:
        """The bounded final upload; says what could not be uploaded."""
        if self.syncer is None:
            return
        report = self.syncer.close()
        if report.missing:
            self.log(
                f"{len(report.missing)} file(s) could not be uploaded; they stay in "
                f"{self.workdir} and are listed in the run record"
            )


class NodeTask:
    """The one task of a node that runs a single process of its own (the MPI backend:
    `mpirun` on node 0, `mpi-node-<i>` elsewhere), with its recorder."""

    def __init__(self, recorder: TaskRecorder, task: str, role: str, rank: int) -> None:
        self.recorder = recorder
        self.task, self.role, self.rank = task, role, rank

    def running(self) -> None:
        self.recorder.status(self.task, self.role, self.rank, runrecord.RUNNING)

    def finish(
        self, code: int, canceled: bool = False, tail: str = "", reason: str = "",
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Final status, then the bounded final upload."""
        self.recorder.ended(
            self.task, self.role, self.rank, code, canceled=canceled, tail=tail, reason=reason,
            extra=extra,
        )
        self.recorder.close()
