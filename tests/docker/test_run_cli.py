"""`tfbuild run` as a user types it (the real CLI in a subprocess, real containers):
outputs land on the host byte-identical for every kind of destination, mistakes
start nothing, a detached run can be waited for and cancelled with its outputs
flushed, and no bad input ends in a traceback. A small agent image without
TensorFlow keeps this quick: training is not the point here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest
from helpers import build_agent_image

PROJECT = Path(__file__).parent / "projects" / "outputs-job"
TFBUILD = str(Path(sys.executable).parent / "tfbuild")
IMAGE = "tfbuild-test/run-cli:latest"
SPEC_LABEL = {"distributed_backend": "multiworker", "node_count": 2, "use_gpu": False,
              "worker_count": 1, "parameter_server_count": 0}


def payload(task: str) -> bytes:
    import hashlib

    return hashlib.sha256(task.encode()).digest() * 4096


@pytest.fixture(scope="module")
def image(docker_client, base_image) -> str:
    return build_agent_image(
        docker_client, IMAGE, base_image, {"job.py": (PROJECT / "job.py").read_bytes()},
        {"entry_script": "job.py", "distributed_backend": "multiworker", "node_count": 2},
        SPEC_LABEL,
    )


def tfbuild(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300):
    return subprocess.run([TFBUILD, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def run_id_of(stderr: str) -> str:
    found = re.search(r"run-\d{8}-\d{6}-[0-9a-f]{6}", stderr)
    assert found, f"no run id in:\n{stderr}"
    return found.group(0)


def job_containers(client: docker.DockerClient, run_id: str) -> list:
    return client.containers.list(all=True, filters={"label": f"io.tfbuild.run={run_id}"})


def assert_outputs_identical(run_dir: Path) -> None:
    """Both tasks' outputs on the host, byte for byte (worker-1's under tasks/)."""
    assert (run_dir / "outputs" / "data.bin").read_bytes() == payload("worker-0")
    assert (run_dir / "outputs" / "sub" / "note.txt").read_text() == "hello from worker-0\n"
    other = run_dir / "tasks" / "worker-1" / "outputs"
    assert (other / "data.bin").read_bytes() == payload("worker-1")
    assert (other / "sub" / "note.txt").read_text() == "hello from worker-1\n"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "Completed"


@pytest.mark.parametrize("form", ["plain-path", "relative-file-uri", "default"])
def test_every_destination_leaves_the_outputs_on_the_host(image, docker_client, tmp_path, form):
    work = tmp_path / "work"
    work.mkdir()
    args = {"plain-path": ["--upload-to", str(tmp_path / "srv-runs")],
            "relative-file-uri": ["--upload-to", "file://./runs"],
            "default": []}[form]
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg")}
    done = tfbuild("run", image, *args, cwd=work, env=env)
    assert done.returncode == 0, done.stderr
    run_id = run_id_of(done.stderr)
    root = {"plain-path": tmp_path / "srv-runs", "relative-file-uri": work / "runs",
            "default": tmp_path / "xdg" / "tfbuild" / "runs"}[form]
    assert_outputs_identical(root / run_id)
    assert f"outputs and logs in {root / run_id}/" in done.stderr
    if form == "default":
        assert "local run history" in done.stderr.splitlines()[0]
    # --nodes came from the image's recorded node_count (2), not 1.
    assert "2 container(s)" in done.stderr
    assert not job_containers(docker_client, run_id), "containers are removed at the end"
    listed = tfbuild("runs", "list", str(root), "--json", cwd=work)
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [run_id]


def test_no_upload_says_so_and_script_args_follow_the_double_dash(image, tmp_path):
    done = tfbuild("run", image, "--no-upload", "--nodes", "1", "--shm-size", "256m",
                   "--", "--epochs", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "not kept (--no-upload)" in done.stderr
    assert "argv=['--epochs', '3']" in done.stdout
    assert f"shm={256 * 1024 * 1024}" in done.stdout
    assert "outputs and logs in" not in done.stderr


def test_a_typo_d_flag_or_a_stray_argument_starts_nothing(image, docker_client, tmp_path):
    def of_image() -> set[str]:  # other work shares the engine: count this image's only
        return {c.id for c in docker_client.containers.list(all=True,
                                                            filters={"ancestor": image})}

    before = of_image()
    typo = tfbuild("run", image, "--nodse", "3", cwd=tmp_path)
    assert typo.returncode == 2
    assert "No such option '--nodse'" in typo.stderr and "--nodes" in typo.stderr
    stray = tfbuild("run", image, "--epochs", "3", cwd=tmp_path)
    assert stray.returncode == 2 and "--epochs" in stray.stderr
    extra = tfbuild("run", image, "train.py", cwd=tmp_path)
    assert extra.returncode == 2 and "after `--`" in extra.stderr
    ps_only = tfbuild("run", image, "--workers", "2", cwd=tmp_path)
    assert ps_only.returncode == 1 and "only the ps backend" in ps_only.stderr
    assert of_image() == before
    assert not (tmp_path / "runs").exists()


def test_detached_run_waits_to_its_end_and_cleans_up(image, docker_client, tmp_path):
    started = tfbuild("run", image, "-d", "--nodes", "1", "--upload-to", "runs", "--", "--fail",
                      cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    assert job_containers(docker_client, run_id), "a detached job keeps running"
    waited = tfbuild("runs", "wait", run_id, cwd=tmp_path)
    assert waited.returncode == 3, waited.stderr  # the script's exit code
    assert f"outputs and logs in {tmp_path / 'runs' / run_id}/" in waited.stderr
    assert not job_containers(docker_client, run_id)
    shown = json.loads(tfbuild("runs", "show", "runs", run_id, "--json", cwd=tmp_path).stdout)
    assert shown["status"] == "Failed"


def test_cancel_of_a_detached_run_flushes_outputs_within_the_stop_timeout(
    image, docker_client, tmp_path
):
    started = tfbuild("run", image, "-d", "--upload-to", "runs", "--grace", "5",
                      "--", "--wait", cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    containers = job_containers(docker_client, run_id)
    stop_timeout = int(containers[0].labels["io.tfbuild.stop-timeout"])
    assert stop_timeout == 5 + 60 + 10  # grace + the agent's final flush bound + margin
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(
        b"JOB worker" in c.logs() for c in containers
    ):
        time.sleep(0.5)
    t0 = time.monotonic()
    cancelled = tfbuild("runs", "cancel", run_id, cwd=tmp_path)
    elapsed = time.monotonic() - t0
    assert cancelled.returncode == 0, cancelled.stderr
    assert elapsed < stop_timeout, f"cancel took {elapsed:.1f} s"
    run_dir = tmp_path / "runs" / run_id
    assert (run_dir / "outputs" / "data.bin").read_bytes() == payload("worker-0")
    assert (run_dir / "outputs" / "late.txt").read_text() == "stopped worker-0\n"
    assert (run_dir / "tasks" / "worker-1" / "outputs" / "late.txt").exists()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "Canceled"
    assert not job_containers(docker_client, run_id)


def test_print_shows_every_flag_and_no_secret_values(image, tmp_path):
    env_file = tmp_path / "job.env"
    env_file.write_text("# comment\nFROM_FILE=1\n")
    done = tfbuild(
        "run", image, "--print", "--upload-to", "s3://bucket/runs", "-e", "A=1", "-e",
        "HOST_ONLY", "--env-file", str(env_file), "-v", f"{tmp_path}:/data:ro", "--cpus",
        "1.5", "--memory", "2g", "--gpus", "all", "--grace", "7", "--", "--lr", "0.1",
        cwd=tmp_path,
        env={"HOST_ONLY": "visible-only-by-name", "AWS_SECRET_ACCESS_KEY": "s3cr3t",
             "AWS_ACCESS_KEY_ID": "AKIA-TEST"},
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count("docker run") == 2  # node_count 2 from the image's spec
    for flag in ("--gpus all", "--shm-size 1g", "--cpus 1.5", "--memory 2g",
                 f"-v {tmp_path}:/data:ro", f"--env-file {env_file}", "-e A=1",
                 "-e HOST_ONLY ", "-e AWS_SECRET_ACCESS_KEY ", "-e AWS_ACCESS_KEY_ID ",
                 "-e TFBUILD_GRACE_SECONDS=7", "--stop-timeout 77",
                 "-e TFBUILD_UPLOAD_TO=s3://bucket/runs", "--lr 0.1"):
        assert flag in out, flag
    assert "s3cr3t" not in out and "visible-only-by-name" not in out


BAD_INPUTS = [
    (["inspect", "nothere/absent:1"], "is not on this engine"),
    (["run", "Bad Image"], "not a valid image reference"),
    (["run", "nothere/absent:1"], "is not on this engine"),
    (["image", "SRC", "-t", "Bad Tag"], "not a valid image reference"),
    (["runs", "list", "file:///nonexistent/tfbuild-runs"], "does not exist"),
    (["runs", "show", "file:///nonexistent/tfbuild-runs", "run-1"], "does not exist"),
    (["run", IMAGE, "--nodse", "3"], "Did you mean '--nodes'"),
    (["run", IMAGE, "-v", "/definitely/not/here:/data"], "does not exist on this host"),
    (["run", IMAGE, "-e", "TFBUILD_TEST_UNSET_VAR"], "is not set in this shell"),
    (["run", IMAGE, "--upload-to", "ftp://host/x"], "does not upload to"),
    (["run", IMAGE, "--upload-to", "x", "--no-upload"], "contradict"),
    (["runs", "wait", "run-19700101-000000-nothing"], "no containers of run"),
    (["dockerfile", "SRC", "--entry-script", "train.py", "--backend", "mpi", "--worker-count",
      "3", "--no-horovod"],
     "the mpi backend does not use worker_count"),
]


@pytest.mark.parametrize(("args", "expected"), BAD_INPUTS, ids=lambda v: " ".join(v)
                         if isinstance(v, list) else None)
def test_bad_input_is_one_clear_line_without_traceback(image, tmp_path, args, expected):
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text("print('hi')\n")
    args = [str(src) if a == "SRC" else a for a in args]
    done = tfbuild(*args, cwd=tmp_path, timeout=120)
    assert done.returncode in (1, 2), done.stderr
    assert "Traceback" not in done.stderr
    assert expected in done.stderr, done.stderr
    if done.returncode == 1:
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "tfbuild-runs").exists()
