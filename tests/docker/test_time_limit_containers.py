"""max_run_duration_seconds and shm_size through `tfbuild run` as a user types it (real
CLI, real containers): a two-node job whose script sleeps forever, baked with
`max_run_duration_seconds: 20`, ends within 20 s + grace + flush, every record Canceled
with the reason "time limit", and the files it wrote are on the host; the containers get
the image's shm_size as /dev/shm. A small agent image without TensorFlow: training is
not the point here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import build_agent_image

from tfbuild_agent.contract import DEFAULT_FLUSH_TIMEOUT_SECONDS, TIME_LIMIT_EXIT_CODE

TFBUILD = str(Path(sys.executable).parent / "tfbuild")
IMAGE = "tfbuild-test/time-limit:latest"
LIMIT, GRACE = 20, 5
FOREVER = b"""\
import os, pathlib, time
shm = os.statvfs('/dev/shm')
pathlib.Path('outputs').mkdir(exist_ok=True)
pathlib.Path('outputs', 'shm.txt').write_text(str(shm.f_blocks * shm.f_frsize))
print('started', flush=True)
while True:
    time.sleep(1)
"""
SPEC_LABEL = {"distributed_backend": "multiworker", "node_count": 2, "use_gpu": False,
              "worker_count": 1, "parameter_server_count": 0, "shm_size": "256m",
              "max_run_duration_seconds": LIMIT}


@pytest.fixture(scope="module")
def image(docker_client, base_image) -> str:
    return build_agent_image(
        docker_client, IMAGE, base_image, {"forever.py": FOREVER},
        {"entry_script": "forever.py", "distributed_backend": "multiworker", "node_count": 2,
         "max_run_duration_seconds": LIMIT},
        SPEC_LABEL,
    )


def tfbuild(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([TFBUILD, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


def test_a_job_that_never_ends_stops_at_its_time_limit_on_every_node(image, tmp_path):
    runs = tmp_path / "runs"
    start = time.monotonic()
    done = tfbuild("run", image, "--upload-to", str(runs), "--grace", str(GRACE), cwd=tmp_path)
    took = time.monotonic() - start
    print(f"max_run_duration_seconds {LIMIT}, grace {GRACE}: tfbuild run took {took:.1f} s")
    assert done.returncode == TIME_LIMIT_EXIT_CODE, done.stderr
    # Container start-up is part of it; the limit counts from the tasks' start.
    assert took < LIMIT + GRACE + DEFAULT_FLUSH_TIMEOUT_SECONDS, (took, done.stderr)
    assert took >= LIMIT, took
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
    job = json.loads((run_dir / "run.json").read_text())
    assert job["status"] == "Canceled" and job["reason"].startswith("time limit"), job
    other = json.loads((run_dir / "tasks" / "worker-1" / "run.json").read_text())
    assert other["status"] == "Canceled" and other["reason"].startswith("time limit"), other
    # The image's shm_size became the containers' /dev/shm (Docker's default is 64 MB).
    assert int((run_dir / "outputs" / "shm.txt").read_text()) == 256 * 1024 * 1024


def test_print_shows_the_images_shm_size_and_the_flag_overrides_it(image, tmp_path):
    printed = tfbuild("run", image, "--print", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert "--shm-size 256m" in printed.stdout
    printed = tfbuild("run", image, "--shm-size", "2g", "--print", cwd=tmp_path)
    assert "--shm-size 2g" in printed.stdout and "256m" not in printed.stdout
