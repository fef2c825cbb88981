"""docs/schedulers.md's Swarm script, run for real on a single-node swarm."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from pathlib import Path

import pytest
from doc_recipes import write_script

pytestmark = [pytest.mark.schedulers, pytest.mark.docker]

REPLICAS = 3
JOB_TIMEOUT = 120.0  # generous: the job itself takes seconds
# The agents' heartbeat notices a lost node in 3 s x 6 = 18 s (the defaults); this
# bounds that plus stopping the tasks, on a busy 2-core machine.
LOST_NODE_BOUND = 45.0


def probes(text: str) -> list[dict]:
    return [json.loads(line.split("PROBE ", 1)[1]) for line in text.splitlines()
            if "PROBE " in line]


def run_recipe(swarm, image: str, tmp_path: Path, args: list[str],
               replicas: int = REPLICAS) -> tuple[str, Path]:
    """swarm-train.sh as a user runs it, with a local image and a bind-mounted file store."""
    name = f"tfbsched-{secrets.token_hex(3)}"
    store = tmp_path / "store"
    store.mkdir()
    script = write_script("swarm-train.sh", tmp_path)
    # Registered first, so the fixture removes them even if the script fails half-way.
    swarm.services.append(name)
    swarm.networks.append(f"{name}-net")
    r = subprocess.run(
        [str(script), *args], capture_output=True, text=True, timeout=180,
        env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "NAME": name, "REPLICAS": str(replicas),
             "IMAGE": image, "TOKEN": secrets.token_hex(16), "UPLOAD_TO": f"file://{store}",
             "SERVICE_ARGS": f"--no-resolve-image --mount type=bind,src={store},dst={store}"},
    )
    assert r.returncode == 0, f"swarm-train.sh failed: {r.stdout}{r.stderr}"
    return name, store


def test_three_replicas_form_one_job_complete_and_upload(swarm, probe_image, tmp_path):
    name, store = run_recipe(swarm, probe_image, tmp_path, [])
    tasks = swarm.wait_tasks(name, REPLICAS, {"Complete", "Failed", "Rejected"}, JOB_TIMEOUT)
    logs = swarm.logs(name)
    assert [t["CurrentState"].split()[0] for t in tasks] == ["Complete"] * REPLICAS, logs
    found = probes(logs)
    assert sorted(int(p["RANK"]) for p in found) == [0, 1, 2], logs
    configs = [json.loads(p["TF_CONFIG"]) for p in found]
    workers = {tuple(c["cluster"]["worker"]) for c in configs}
    assert len(workers) == 1, f"the replicas disagree on the cluster: {workers}"
    assert len(next(iter(workers))) == REPLICAS
    assert all(c["task"]["index"] == int(p["RANK"]) for c, p in zip(configs, found, strict=True))
    assert "discovery: dns found 3 node(s)" in logs
    run = store / name  # TFBUILD_RUN_ID is the service name
    assert json.loads((run / "outputs" / "rank-0.json").read_text())["RANK"] == "0"
    for rank in (1, 2):
        assert (run / "tasks" / f"worker-{rank}" / "outputs" / f"rank-{rank}.json").exists()


def test_a_replica_killed_mid_run_fails_the_job_within_the_bound(swarm, probe_image, tmp_path):
    name, _ = run_recipe(swarm, probe_image, tmp_path, ["--seconds", "300"])
    deadline = time.monotonic() + JOB_TIMEOUT
    while len(probes(swarm.logs(name))) < REPLICAS:
        assert time.monotonic() < deadline, f"the job did not start:\n{swarm.logs(name)}"
        time.sleep(1)
    victim = swarm.containers(name)[0]
    subprocess.run(["docker", "kill", "--signal", "KILL", victim], check=True,
                   capture_output=True, timeout=30)
    killed_at = time.monotonic()
    tasks = swarm.wait_tasks(name, REPLICAS, {"Complete", "Failed", "Shutdown"},
                             LOST_NODE_BOUND + 30)
    elapsed = time.monotonic() - killed_at
    print(f"swarm: the job failed {elapsed:.1f} s after a replica was killed")
    logs = swarm.logs(name)
    assert [t["CurrentState"].split()[0] for t in tasks] == ["Failed"] * REPLICAS, logs
    assert elapsed < LOST_NODE_BOUND, f"the survivors took {elapsed:.1f} s to fail"
    codes = {c: swarm.exit_code(c) for c in swarm.containers(name)}
    assert codes.pop(victim) == 137
    assert all(code != 0 for code in codes.values()), codes
    assert "lost" in logs.lower(), logs


def test_a_real_tensorflow_job_trains_across_the_replicas(swarm, example_image, tmp_path):
    """The Keras example under MultiWorkerMirroredStrategy: the replicas' gRPC traffic
    crosses Swarm's overlay network, and both end with the same weights."""
    started = time.monotonic()
    name, store = run_recipe(swarm, example_image, tmp_path, ["--epochs", "2"], replicas=2)
    tasks = swarm.wait_tasks(name, 2, {"Complete", "Failed", "Rejected"}, 300)
    print(f"swarm: 2-replica TensorFlow job took {time.monotonic() - started:.1f} s")
    logs = swarm.logs(name)
    assert [t["CurrentState"].split()[0] for t in tasks] == ["Complete"] * 2, logs[-4000:]
    run = store / name
    results = [json.loads(p.read_text()) for p in sorted(run.rglob("outputs/summary.json"))]
    assert len(results) == 2, "each worker records a summary (worker-1's under tasks/)"
    assert all(r["mode"] == "multi-worker" and r["replicas"] == 2 for r in results)
    assert results[0]["weights_sha256"] == results[1]["weights_sha256"], "identical weights"
    assert json.loads((run / "run.json").read_text())["status"] == "Completed"
