"""A Horovod Keras job (tests/docker/projects/mpi-horovod) across real containers,
started the way `tfbuild run` starts them, and what its result must show. Shared by
the e2e test on the default TensorFlow and the docker-tier test on another release."""

from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

from tfbuild.run.launch import new_job
from tfbuild.run.local import LocalJob

JOB_TIMEOUT = 300
"""Seconds a whole job may take, start to last container's exit."""


@dataclass
class FinishedJob:
    job: LocalJob
    codes: list[int | None]

    def log(self, i: int, timestamps: bool = False) -> str:
        return self.job.containers[i].logs(timestamps=timestamps).decode(errors="replace")

    def logs(self) -> str:
        return "\n".join(f"--- node {i}\n{self.log(i)}" for i in range(len(self.codes)))


def run_job(client, image: str, nodes: int, timeout: float = JOB_TIMEOUT, **kwargs) -> FinishedJob:
    """Start the job's containers (LocalJob: `tfbuild run`'s own setup) and wait for
    every one of them, at most `timeout` seconds. The caller removes them with
    `finished.job.cleanup()`."""
    job = LocalJob(new_job(image, nodes, **kwargs), client)
    job.start()
    return FinishedJob(job, wait_all(job.containers, timeout))


def wait_all(containers: list, timeout: float) -> list[int | None]:
    """Every container's exit code, waited for side by side (None: still running after
    `timeout` seconds)."""
    codes: list[int | None] = [None] * len(containers)

    def wait(i: int) -> None:
        with contextlib.suppress(Exception):
            codes[i] = int(containers[i].wait(timeout=timeout)["StatusCode"])

    threads = [threading.Thread(target=wait, args=(i,)) for i in range(len(codes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 10)
    return codes


def tagged(log: str, marker: str) -> list[dict]:
    """JSON payloads of `[job,rank]<stdout>:MARKER {...}` lines (mpirun --tag-output)."""
    found = []
    for line in log.splitlines():
        if f">:{marker} " in line:
            found.append(json.loads(line.split(f"{marker} ", 1)[1]))
    return found


def check_keras_training(done: FinishedJob, dest: Path, ranks: int) -> dict[int, dict]:
    """Every container exits 0; every rank reports the same final weights (the
    broadcast made the different initial weights equal, DistributedOptimizer's
    allreduce kept them equal); rank 0's model and the run record were uploaded."""
    logs = done.logs()
    assert done.codes == [0] * len(done.codes), logs
    results = {r["rank"]: r for r in tagged(done.log(0), "HOROVOD")}
    assert sorted(results) == list(range(ranks)), logs
    assert {r["size"] for r in results.values()} == {ranks}
    assert len({r["weights"] for r in results.values()}) == 1, results
    assert {r["legacy"] for r in results.values()} == {"1"}  # exported to every rank
    run_id = done.job.launch.run_id
    model = dest / run_id / "outputs" / "model.keras"
    assert model.is_file(), sorted(str(p) for p in dest.rglob("*"))
    assert model.read_bytes()[:2] == b"PK"  # a .keras file is a zip archive
    record = json.loads((dest / run_id / "run.json").read_text())
    assert record["status"] == "Completed" and record["task"] == "mpirun"
    return results
