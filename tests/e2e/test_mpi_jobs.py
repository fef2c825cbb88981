"""The mpi backend across real containers, started the way `tfbuild run` starts them
(JobLaunch's names and environment: TFBUILD_HOSTS, TFBUILD_NODE_RANK, the job token):

1. mpi4py allreduce, 2 containers x 2 processes: the right sum on every rank.
2. Horovod Keras training (DistributedOptimizer, broadcast of the initial state) on
   the default TensorFlow (2.21, Horovod from the patched sdist), 2 containers x 2
   processes: identical weights on every rank, rank 0's model uploaded.
3. One rank raises (mpi4py, and Horovod): mpirun aborts, every container exits
   non-zero within FAILURE_BOUND seconds of the error, and the message names the rank.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from helpers import REPO, build_project
from horovod_jobs import check_keras_training, run_job, tagged, wait_all

from tfbuild.run.launch import JobLaunch, new_job
from tfbuild.run.local import LocalJob

pytestmark = pytest.mark.timeout(1800)

PROJECTS = REPO / "tests" / "docker" / "projects"
FAILURE_BOUND = 30.0
"""Seconds from a rank's error to the last container's exit (stated in docs/mpi.md)."""
JOB_TIMEOUT = 300


@pytest.fixture(scope="module")
def allreduce_image(base_image) -> str:
    return build_project(PROJECTS / "mpi-allreduce", "tfbuild-test/mpi-allreduce:latest")


@pytest.fixture(scope="module")
def horovod_image(base_image) -> str:
    return build_project(PROJECTS / "mpi-horovod", "tfbuild-test/mpi-horovod:latest")


class Cluster:
    """The containers of one JobLaunch on their own network; removed by `cleanup`."""

    def __init__(self, client, launch: JobLaunch) -> None:
        self.launch = launch
        self.job = LocalJob(launch, client)  # `tfbuild run`'s own container setup
        self.containers: list = []

    def run(self, timeout: float = JOB_TIMEOUT) -> list[int]:
        self.job.start()
        self.containers = self.job.containers
        codes = wait_all(self.containers, timeout)
        assert None not in codes, f"containers still running after {timeout} s:\n{self.logs()}"
        return [int(c) for c in codes if c is not None]

    def log(self, i: int, timestamps: bool = False) -> str:
        return self.containers[i].logs(timestamps=timestamps).decode(errors="replace")

    def logs(self) -> str:
        return "\n".join(f"--- node {i}\n{self.log(i)}" for i in range(len(self.containers)))

    def finished_at(self, i: int) -> datetime:
        self.containers[i].reload()
        return parse_docker_time(self.containers[i].attrs["State"]["FinishedAt"])

    def cleanup(self) -> None:
        self.job.cleanup()


@pytest.fixture
def cluster(docker_client):
    made: list[Cluster] = []

    def make(image: str, nodes: int, **kwargs) -> Cluster:
        c = Cluster(docker_client, new_job(image, nodes, **kwargs))
        made.append(c)
        return c

    yield make
    for c in made:
        c.cleanup()


def parse_docker_time(text: str) -> datetime:
    """Docker's RFC 3339 times carry nanoseconds; Python takes microseconds."""
    head, _, rest = text.partition(".")
    frac = "".join(ch for ch in rest if ch.isdigit())[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{head}.{frac}+00:00")


def test_mpi4py_allreduce_two_containers_two_processes(allreduce_image, cluster) -> None:
    job = cluster(allreduce_image, 2)
    started = time.monotonic()
    codes = job.run()
    elapsed = time.monotonic() - started
    logs = job.logs()
    assert codes == [0, 0], logs
    ranks = {r["rank"]: r for r in tagged(job.log(0), "ALLREDUCE")}
    assert sorted(ranks) == [0, 1, 2, 3], logs
    for rank, r in ranks.items():
        assert (r["size"], r["sum"]) == (4, 1 + 2 + 3 + 4), r
        assert r["host"] == job.launch.name(rank // 2), r  # by slot: 2 ranks per container
        env = r["env"]
        assert env["RANK"] == str(rank) and env["LOCAL_RANK"] == str(rank % 2), env
        assert (env["WORLD_SIZE"], env["LOCAL_WORLD_SIZE"]) == ("4", "2"), env
        assert env["NODE_RANK"] == str(rank // 2) and env["MASTER_ADDR"] == job.launch.name(0)
        assert env["TFBUILD_RUN_ID"] == job.launch.run_id
        assert env["TFBUILD_JOB_TOKEN"] is None  # the ranks never see the job token
    # node 1's daemon came through tfbuild's channel, not ssh
    assert "mpi launch: " in job.log(1) and "orted" in job.log(1), job.log(1)
    assert "all 4 rank(s) completed" in job.log(1)
    print(f"mpi4py allreduce job: {elapsed:.1f} s")


def test_horovod_keras_training_two_containers(horovod_image, docker_client, tmp_path) -> None:
    dest = tmp_path / "store"
    started = time.monotonic()
    done = run_job(docker_client, horovod_image, 2, upload_to=f"file://{dest}")
    try:
        elapsed = time.monotonic() - started
        results = check_keras_training(done, dest, ranks=4)
        assert results[0]["keras"].startswith("tf_keras")  # horovod.tensorflow.keras needs Keras 2
    finally:
        done.job.cleanup()
    print(f"horovod keras job (TF 2.21, 2 x 2 ranks): {elapsed:.1f} s")


@pytest.mark.parametrize("image", ["allreduce_image", "horovod_image"])
def test_a_failing_rank_aborts_every_container(image, request, cluster) -> None:
    job = cluster(request.getfixturevalue(image), 2, script_args=("--fail-rank", "3"))
    codes = job.run()
    logs = job.logs()
    assert all(code != 0 for code in codes), (codes, logs)
    verdict = f"rank 3 (on {job.launch.name(1)}) exited with code 1; mpirun aborted the job"
    assert verdict in job.log(0), job.log(0)
    assert verdict in job.log(1), job.log(1)  # node 1 says why it stops, too
    stamped = job.log(0, timestamps=True).splitlines()
    error_line = next(
        line for line in stamped if "<stderr>:RuntimeError: rank 3 fails on purpose" in line
    )
    failed_at = parse_docker_time(error_line.split(" ", 1)[0])
    assert "[1,3]<stderr>" in error_line or ",3]<stderr>" in error_line
    delays = [(job.finished_at(i) - failed_at).total_seconds() for i in range(2)]
    assert max(delays) < FAILURE_BOUND, (delays, logs)
    print(
        f"failing rank: containers exited {delays[0]:.1f} s and {delays[1]:.1f} s after the error"
    )
