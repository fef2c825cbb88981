"""`tfbuild run --upload-to s3://...` passes the shell's AWS credentials to the
containers at run time (never into the image): a real moto S3 server on the host,
reached from the job's containers through the docker0 address, receives every
output byte-identical."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import build_agent_image

pytestmark = pytest.mark.services

PROJECT = Path(__file__).parent / "projects" / "outputs-job"
TFBUILD = str(Path(sys.executable).parent / "tfbuild")
IMAGE = "tfbuild-test/run-cli-s3:latest"
CREDS = {"AWS_ACCESS_KEY_ID": "tfbuild-test-key", "AWS_SECRET_ACCESS_KEY": "tfbuild-test-secret",
         "AWS_DEFAULT_REGION": "us-east-1"}


def docker0_address() -> str:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "docker0"], capture_output=True,
                         text=True).stdout.split()
    return out[out.index("inet") + 1].split("/")[0] if "inet" in out else "172.17.0.1"


@pytest.fixture(scope="module")
def moto_endpoint():
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).parent / "moto_server"
    # Bound to docker0's address so the job's containers (and this host) reach it.
    host = docker0_address()
    proc = subprocess.Popen([str(exe), "-H", host, "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://{host}:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), 0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"moto_server did not listen on {endpoint} within 30 s")
    import boto3

    boto3.client("s3", endpoint_url=endpoint, **{
        "aws_access_key_id": CREDS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDS["AWS_SECRET_ACCESS_KEY"], "region_name": "us-east-1",
    }).create_bucket(Bucket="runs")
    yield endpoint
    proc.terminate()
    proc.wait(10)


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
    env = {**os.environ, **CREDS, "TFBUILD_S3_ENDPOINT_URL": moto_endpoint}
    done = subprocess.run([TFBUILD, "run", s3_image, "--upload-to", "s3://runs/team"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    run_id = re.search(r"run-\d{8}-\d{6}-[0-9a-f]{6}", done.stderr).group(0)
    assert f"outputs and logs in s3://runs/team/{run_id}/" in done.stderr
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                      aws_access_key_id=CREDS["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=CREDS["AWS_SECRET_ACCESS_KEY"])
    def read(key: str) -> bytes:
        return s3.get_object(Bucket="runs", Key=f"team/{run_id}/{key}")["Body"].read()

    task = read("outputs/sub/note.txt").decode().split()[-1]  # "hello from TASK"
    assert read("outputs/data.bin") == hashlib.sha256(task.encode()).digest() * 4096
    shown = subprocess.run([TFBUILD, "runs", "show", "s3://runs/team", run_id, "--json"],
                           capture_output=True, text=True, timeout=120, env=env)
    assert json.loads(shown.stdout)["status"] == "Completed", shown.stderr
    baked = json.dumps(docker_client.images.get(s3_image).attrs["Config"])
    assert CREDS["AWS_SECRET_ACCESS_KEY"] not in baked
