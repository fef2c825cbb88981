"""`tfbuild run --upload-to s3://...` passes the shell's AWS credentials to the
containers at run time (never into the image): a real moto S3 server on the host,
reached from the job's containers through the docker0 address, receives every
output byte-identical."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TEST_AWS, build_agent_image, moto_client

pytestmark = pytest.mark.services

PROJECT = Path(__file__).parent / "projects" / "outputs-job"
TFBUILD = str(Path(sys.executable).parent / "tfbuild")
IMAGE = "tfbuild-test/run-cli-s3:latest"


@pytest.fixture(scope="module")
def s3_image(docker_client, base_image) -> str:
    return build_agent_image(
        docker_client, IMAGE, base_image, {"job.py": (PROJECT / "job.py").read_bytes()},
        {"entry_script": "job.py", "distributed_backend": "none", "node_count": 1},
        {"distributed_backend": "none", "node_count": 1, "use_gpu": False},
        store_extras=("s3",),
    )


def test_s3_upload_uses_the_shells_credentials_and_none_is_baked(
    s3_image, moto_endpoint, docker_client, tmp_path
):
    s3 = moto_client(moto_endpoint)
    s3.create_bucket(Bucket="runs")
    env = {**os.environ, **TEST_AWS, "TFBUILD_S3_ENDPOINT_URL": moto_endpoint}
    done = subprocess.run([TFBUILD, "run", s3_image, "--upload-to", "s3://runs/team"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    run_id = re.search(r"run-\d{8}-\d{6}-[0-9a-f]{6}", done.stderr).group(0)
    assert f"outputs and logs in s3://runs/team/{run_id}/" in done.stderr

    def read(key: str) -> bytes:
        return s3.get_object(Bucket="runs", Key=f"team/{run_id}/{key}")["Body"].read()

    task = read("outputs/sub/note.txt").decode().split()[-1]  # "hello from TASK"
    assert read("outputs/data.bin") == hashlib.sha256(task.encode()).digest() * 4096
    shown = subprocess.run([TFBUILD, "runs", "show", "s3://runs/team", run_id, "--json"],
                           capture_output=True, text=True, timeout=120, env=env)
    assert json.loads(shown.stdout)["status"] == "Completed", shown.stderr
    baked = json.dumps(docker_client.images.get(s3_image).attrs["Config"])
    assert TEST_AWS["AWS_SECRET_ACCESS_KEY"] not in baked
