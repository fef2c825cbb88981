"""Fixtures for the schedulers tier: a real one-host Slurm cluster, a real single-node
Docker Swarm, and a small image (the agent + a probe script, no TensorFlow)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import build_project
from slurm_cluster import SlurmCluster, missing_tools
from swarm_cluster import Swarm

PROBE = Path(__file__).parent / "projects" / "sched-probe"
IMAGE_TAG = "tfbuild-sched/probe:latest"


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    missing = missing_tools()
    if missing:
        pytest.skip(f"Slurm/munge not installed ({', '.join(missing)}): "
                    "apt-get install slurm-wlm munge (.ci/setup.sh does)")
    if os.geteuid() != 0:
        pytest.skip("slurmd must run as root to start jobs as any user; run the tier as root")
    # Short path: munge's socket path must stay under the 108-byte sun_path limit.
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def probe_image(base_image) -> Iterator[str]:
    tag = build_project(PROBE, IMAGE_TAG)
    yield tag


@pytest.fixture(scope="module")
def swarm(docker_client) -> Iterator[Swarm]:
    s = Swarm()
    s.init()
    try:
        yield s
    finally:
        s.leave()


@pytest.fixture
def slurm_containers_cleanup() -> Iterator[None]:
    """Containers that `docker run` started under srun carry a tfbuild.slurm-job label;
    one whose docker CLI Slurm killed with SIGKILL would outlive the job: remove them."""
    yield
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", "label=tfbuild.slurm-job"],
                         capture_output=True, text=True, timeout=30).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=60)
