"""`tfbuild run --input NAME=URI` with real containers: a host folder given at run time
reaches the script in its argv (read-only), a new input appears at /app/inputs/NAME with
its variable, the host's input cache makes a rerun fetch nothing, and a missing path
starts nothing. A small agent image without TensorFlow: training is not the point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TEST_AWS, build_agent_image, moto_client

PROJECT = Path(__file__).parent / "projects" / "inputs-job"
TFBUILD = str(Path(sys.executable).parent / "tfbuild")
IMAGE = "tfbuild-test/run-inputs:latest"
# Baked: --data comes from a file:// input that does not exist on this host; every run
# here replaces it with --input.
BAKED = {"name": "data", "uri": "file:///baked/not/here", "mode": "download", "arg": True}


@pytest.fixture(scope="module")
def image(docker_client, base_image) -> str:
    return build_agent_image(
        docker_client, IMAGE, base_image, {"read.py": (PROJECT / "read.py").read_bytes()},
        {"entry_script": "read.py", "script_params": ("--data", "${tfbuild.input.data}"),
         "inputs": (BAKED,)},
        {"distributed_backend": "none", "node_count": 1, "use_gpu": False,
         "upload_extras": [], "inputs": [BAKED]},
    )


def tfbuild(*args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([TFBUILD, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env})


def test_a_host_folder_given_at_run_time_is_read_by_the_script_and_cached(image, tmp_path):
    data = tmp_path / "mnist"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("alpha\n")
    (data / "sub" / "b.bin").write_bytes(os.urandom(1 << 20))
    (tmp_path / "vocab.txt").write_text("words\n")
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    args = ["run", image, "--upload-to", "runs", "--input", "data=./mnist",
            "--input", "vocab=vocab.txt"]
    first = tfbuild(*args, cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert "JOB data=/app/inputs/data files=['a.txt', 'sub/b.bin']" in first.stdout
    assert "JOB a=alpha" in first.stdout
    assert "JOB vocab=/app/inputs/vocab/vocab.txt words" in first.stdout
    # The containers' output (the agent's log lines included) is on tfbuild run's stdout.
    assert "input data: fetching file:///mnt/tfbuild-inputs/data" in first.stdout
    assert list((tmp_path / "cache" / "tfbuild" / "inputs").glob("*.json")), "cache on the host"

    again = tfbuild(*args, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert "JOB a=alpha" in again.stdout
    assert "is in the node cache" in again.stdout and "fetching" not in again.stdout

    printed = tfbuild(*args, "--print", cwd=tmp_path, env=env)
    assert f"-v {data}:/mnt/tfbuild-inputs/data:ro" in printed.stdout
    assert ("-e 'TFBUILD_INPUTS=data=file:///mnt/tfbuild-inputs/data "
            "vocab=file:///mnt/tfbuild-inputs/vocab/vocab.txt'") in printed.stdout


def test_the_baked_input_missing_fails_before_the_script_with_the_uri(image, tmp_path):
    done = tfbuild("run", image, "--upload-to", "runs", cwd=tmp_path,
                   env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert done.returncode == 2, done.stderr
    assert "file:///baked/not/here does not exist" in done.stdout
    assert "JOB" not in done.stdout
    (run,) = (tmp_path / "runs").iterdir()
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "Failed" and "input not ready" in record["reason"]


def test_a_missing_host_path_starts_nothing(image, tmp_path):
    done = tfbuild("run", image, "--input", "data=./nope", cwd=tmp_path, env={})
    assert done.returncode == 1
    assert f"{tmp_path / 'nope'} does not exist on this host" in done.stderr


S3_IMAGE = "tfbuild-test/run-inputs-s3:latest"
S3_INPUT = {"name": "data", "uri": "s3://inputs/mnist", "mode": "download", "arg": True}


@pytest.fixture(scope="module")
def s3_inputs_image(docker_client, base_image) -> str:
    return build_agent_image(
        docker_client, S3_IMAGE, base_image, {"read.py": (PROJECT / "read.py").read_bytes()},
        {"entry_script": "read.py", "script_params": ("--data", "${tfbuild.input.data}"),
         "inputs": (S3_INPUT,), "distributed_backend": "multiworker", "node_count": 2},
        {"distributed_backend": "multiworker", "node_count": 2, "use_gpu": False,
         "upload_extras": ["s3"], "inputs": [S3_INPUT]},
        store_extras=("s3",),
    )


@pytest.mark.services
def test_two_nodes_read_an_s3_input_fetched_once_into_the_shared_host_cache(
    s3_inputs_image, moto_endpoint, tmp_path
):
    """moto on docker0; both containers of the job share this host's input cache: one
    fetches (under the cache key's lock), the other waits and uses the same entry."""
    s3 = moto_client(moto_endpoint)
    s3.create_bucket(Bucket="inputs")
    s3.put_object(Bucket="inputs", Key="mnist/a.txt", Body=b"from s3\n")
    s3.put_object(Bucket="inputs", Key="mnist/sub/b.bin", Body=os.urandom(8 << 20))
    env = {**TEST_AWS, "AWS_ENDPOINT_URL": moto_endpoint,
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = tfbuild("run", s3_inputs_image, "--upload-to", "runs", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("JOB a=from s3") == 2
    assert done.stdout.count("JOB data=/app/inputs/data files=['a.txt', 'sub/b.bin']") == 2
    assert done.stdout.count("input data: fetching s3://inputs/mnist") == 1, done.stdout
    assert "is in the node cache" in done.stdout
    assert "tfbuild-test-secret" not in json.dumps(
        __import__("docker").from_env().images.get(s3_inputs_image).attrs)
