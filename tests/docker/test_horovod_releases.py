"""Horovod on a second TensorFlow release (2.20, from the same patched sdist as the
default 2.21 of the e2e test), and its compile paid once per build host:

1. The Horovod Keras job (DistributedOptimizer, broadcast of the initial state) on
   TF 2.20, 2 containers x 2 processes: identical final weights on every rank, model
   uploaded.
2. Another project on the same TensorFlow reuses the compiled Horovod: every step up
   to and including the MPI stage comes from the engine's layer cache, and both
   images carry the same Horovod layer.

The image build itself runs the stage's own checks (`horovodrun --check-build` shows
TensorFlow, MPI and Gloo; allreduce on 2 local ranks).
"""

from __future__ import annotations

import time

import pytest
from helpers import REPO, build_project
from horovod_jobs import check_keras_training, run_job

from tfbuild.image.build import build, prepare
from tfbuild.spec import load_spec

pytestmark = [pytest.mark.docker, pytest.mark.timeout(2400)]

PROJECT = REPO / "tests" / "docker" / "projects" / "mpi-horovod"
TF = "2.20"
TAG = "tfbuild-test/mpi-horovod-tf220"


@pytest.fixture(scope="module")
def horovod_tf220(base_image) -> str:
    started = time.monotonic()
    tag = build_project(PROJECT, f"{TAG}:latest", tensorflow_version=TF)
    print(f"TF {TF} Horovod image: {time.monotonic() - started:.0f} s (0 if it was cached)")
    return tag


def test_horovod_keras_training_on_tf_2_20(horovod_tf220, docker_client, tmp_path) -> None:
    labels = docker_client.images.get(horovod_tf220).labels
    assert '"tensorflow_version":"2.20.0"' in labels["io.tfbuild.spec"]
    dest = tmp_path / "store"
    done = run_job(docker_client, horovod_tf220, 2, upload_to=f"file://{dest}")
    try:
        check_keras_training(done, dest, ranks=4)
    finally:
        done.job.cleanup()


def _steps_through_mpi_stage(dockerfile: str) -> int:
    """Instructions (FROM excluded: the engine never caches those) up to the end of
    the `mpi` stage, where Horovod is compiled and checked."""
    count, in_mpi = 0, False
    for line in dockerfile.splitlines():
        if not line or line[0] in " #":
            continue  # blank, comment, or a continuation line
        if line.startswith("FROM "):
            if in_mpi:
                return count
            in_mpi = line.endswith(" AS mpi")
            continue
        count += 1
    raise AssertionError("the Dockerfile has no mpi stage")


def test_a_second_project_on_the_same_tensorflow_reuses_horovod(
    horovod_tf220, docker_client, tmp_path
) -> None:
    other = tmp_path / "other-project"
    other.mkdir()
    (other / "train.py").write_text("import horovod.tensorflow as hvd\nhvd.init()\n")
    overrides = {
        "entry_script": "train.py",
        "tensorflow_version": TF,
        "distributed_backend": "mpi",
        "node_count": 2,
        "labels": {"project": "other"},
        "trust_host_ca": True,
    }
    spec = load_spec(other, overrides=overrides)
    dockerfile = prepare(spec).dockerfile
    assert "patch -p1" in dockerfile and "horovodrun --check-build" in dockerfile
    tag, result = build(spec, tag=f"{TAG}-other:latest", quiet=True)
    try:
        through_mpi = _steps_through_mpi_stage(dockerfile)
        assert result.cached_steps >= through_mpi, (result, through_mpi)
        # The final stage's copy of the MPI stage is the very same image layer.
        assert _mpi_copy(docker_client, tag) == _mpi_copy(docker_client, horovod_tf220)
        print(f"second project on TF {TF}: built in {result.seconds:.0f} s, "
              f"{result.cached_steps}/{result.steps} steps from the cache")
    finally:
        docker_client.images.remove(tag, force=True)


def _mpi_copy(client, image: str) -> str:
    """Id of the image step that copied /opt/tfbuild/layers/mpi into the final stage
    (the classic builder reuses a cached step's image, so equal Ids mean one build)."""
    for entry in client.api.history(image):
        if "COPY" in entry["CreatedBy"] and "/opt/tfbuild/layers/mpi" in entry["CreatedBy"]:
            assert entry["Id"] != "<missing>", entry
            return entry["Id"]
    raise AssertionError(f"{image} has no step that copies /opt/tfbuild/layers/mpi")
