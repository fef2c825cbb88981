"""Real TensorFlow jobs across real containers, started the way a user would
(`tfbuild run`'s LocalJob), ending with their outputs in a file:// store."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import docker
import pytest

from tfbuild.run.launch import LABEL, JobLaunch, new_job
from tfbuild.run.local import LocalJob


def run_job(image: str, nodes: int, store: Path, args=(), **kw) -> tuple[int, JobLaunch, float]:
    launch = new_job(image, nodes, upload_to=f"file://{store}", script_args=tuple(args), **kw)
    started = time.monotonic()
    code = LocalJob(launch).run()
    return code, launch, time.monotonic() - started


def summaries(run_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(run_dir.rglob("outputs/summary.json"))]


def no_containers_left(client: docker.DockerClient, launch: JobLaunch) -> bool:
    return not client.containers.list(all=True, filters={"label": f"{LABEL}={launch.job}"})


def test_multiworker_two_nodes_trains_identically_and_uploads(
    example_image, docker_client, tmp_path
):
    code, launch, seconds = run_job(
        example_image, 2, tmp_path, ["--epochs", "3"], backend="multiworker"
    )
    print(f"multiworker 2 nodes: {seconds:.1f} s")
    assert code == 0
    run_dir = tmp_path / launch.run_id
    results = summaries(run_dir)
    assert len(results) == 2, "each worker records a summary (worker-1's under tasks/)"
    assert all(r["mode"] == "multi-worker" and r["replicas"] == 2 for r in results)
    assert all(r["loss"][-1] < r["loss"][0] for r in results), "loss decreases"
    assert results[0]["weights_sha256"] == results[1]["weights_sha256"], "identical weights"
    assert (run_dir / "outputs" / "model.keras").stat().st_size > 0
    assert list((run_dir / "logs" / "tensorboard").rglob("events.out.tfevents.*"))
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "Completed"
    assert no_containers_left(docker_client, launch)


@pytest.mark.parametrize(
    ("nodes", "workers", "ps"),
    [(2, 2, 1), (3, 2, 2)],
    ids=["seed-layout-2-nodes", "chief-2-workers-2-ps"],
)
def test_parameter_server_job_completes_and_servers_exit(
    example_image, docker_client, tmp_path, nodes, workers, ps
):
    code, launch, seconds = run_job(
        example_image,
        nodes,
        tmp_path,
        ["--epochs", "2"],
        backend="ps",
        env={"TFBUILD_WORKERS": str(workers), "TFBUILD_PS": str(ps)},
    )
    print(f"ps {nodes} nodes, {workers} workers, {ps} ps: {seconds:.1f} s")
    assert code == 0
    run_dir = tmp_path / launch.run_id
    chief = json.loads((run_dir / "outputs" / "summary.json").read_text())
    assert chief["mode"] == "parameter-server" and chief["loss"][-1] < chief["loss"][0]
    tasks = {
        p.parent.name: json.loads(p.read_text()) for p in (run_dir / "tasks").glob("*/run.json")
    }
    assert {f"ps-{i}" for i in range(ps)} <= set(tasks), "ps tasks report their end"
    assert all(t["status"] == "Completed" for t in tasks.values())
    assert no_containers_left(docker_client, launch)


def test_a_killed_worker_fails_the_job_naming_it(example_image, docker_client, tmp_path, capfd):
    launch = new_job(
        example_image,
        2,
        upload_to=f"file://{tmp_path}",
        backend="multiworker",
        script_args=("--epochs", "500"),
        env={"TFBUILD_HEARTBEAT_INTERVAL": "1"},
    )
    job = LocalJob(launch)
    killed: dict[str, float] = {}

    def kill_when_training():
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                victim = docker_client.containers.get(launch.name(1))
                if b"Epoch 3/" in victim.logs():
                    victim.kill(signal="SIGKILL")
                    killed["at"] = time.monotonic()
                    return
            except docker.errors.NotFound:
                pass
            time.sleep(0.5)

    threading.Thread(target=kill_when_training, daemon=True).start()
    code = job.run()
    elapsed = time.monotonic() - killed["at"]
    out = capfd.readouterr()
    print(f"killed worker: job ended {elapsed:.1f} s after kill -9")
    assert code != 0
    assert elapsed < 60, f"the job took {elapsed:.1f} s to fail after the kill"
    assert launch.name(1) in out.out + out.err
    assert no_containers_left(docker_client, launch)


def test_an_existing_tf_config_is_kept_and_training_runs(example_image, docker_client, tmp_path):
    """As Kubeflow's TFJob sets it: worker-only cluster of pod names, port 2222."""
    launch = new_job(
        example_image, 2, upload_to=f"file://{tmp_path}", script_args=("--epochs", "2")
    )
    hosts = [f"{launch.name(i)}:2222" for i in range(2)]
    client = docker_client
    network = client.networks.create(launch.network)
    containers = []
    try:
        for i in range(2):
            tf_config = {
                "cluster": {"worker": hosts},
                "task": {"type": "worker", "index": i},
                "environment": "cloud",
            }
            containers.append(
                client.containers.run(
                    example_image,
                    ["--epochs", "2"],
                    name=launch.name(i),
                    hostname=launch.name(i),
                    network=launch.network,
                    detach=True,
                    volumes={str(tmp_path): {"bind": str(tmp_path)}},
                    environment={
                        "TF_CONFIG": json.dumps(tf_config),
                        "TFBUILD_JOB_TOKEN": "kf",
                        "TFBUILD_RUN_ID": launch.run_id,
                        "TFBUILD_UPLOAD_TO": f"file://{tmp_path}",
                    },
                )
            )
        codes = [c.wait(timeout=300)["StatusCode"] for c in containers]
        logs = containers[0].logs().decode()
        assert codes == [0, 0], logs[-3000:]
        assert "tf_config discovery" in logs
        results = summaries(tmp_path / launch.run_id)
        assert len(results) == 2 and results[0]["weights_sha256"] == results[1]["weights_sha256"]
    finally:
        for c in containers:
            c.remove(force=True)
        network.remove()
