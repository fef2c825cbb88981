"""docs/schedulers.md's recipes, fed to the agent exactly as written there."""

from __future__ import annotations

import json
import re

import pytest
from helpers import REPO

from tfbuild_agent.discovery.chain import discover
from tfbuild_agent.discovery.context import DiscoveryContext
from tfbuild_agent.discovery.membership import Membership
from tfbuild_agent.jobspec import JobSpec
from tfbuild_agent.topology import plan

DOC = REPO / "docs" / "schedulers.md"
BLOCK = re.compile(r"```env (?P<attrs>[^\n]*)\n(?P<body>.*?)```", re.S)


def recipes() -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    out = {}
    for m in BLOCK.finditer(DOC.read_text()):
        attrs = dict(kv.split("=", 1) for kv in m.group("attrs").split())
        env = dict(line.split("=", 1) for line in m.group("body").splitlines() if line.strip())
        out[attrs["recipe"]] = (attrs, env)
    return out


def run_recipe(name: str, rendezvous=None):
    attrs, env = recipes()[name]
    job = JobSpec(distributed_backend=attrs["backend"], node_count=int(attrs["nodes"]),
                  process_count_per_node=int(attrs.get("procs", 1)), worker_count=2,
                  parameter_server_count=1)
    # The MPI operator mounts this file in MPIJob pods only.
    hostfile = "train-worker-0 slots=2\ntrain-worker-1 slots=2\n" if "mpijob" in name else None
    ctx = DiscoveryContext(
        env=env, job=job, hostname=attrs["hostname"],
        resolve=lambda name: [], own_addresses=lambda: [],
        read_file=lambda path: hostfile if path == "/etc/mpi/hostfile" else None,
        sleep=lambda s: None, log=lambda m: None,
    )
    membership = discover(ctx, rendezvous=rendezvous)
    return membership, plan(membership, job)


def test_every_recipe_has_an_env_block():
    assert set(recipes()) == {"docker-rendezvous", "k8s-indexed-job", "kubeflow-tfjob",
                              "kubeflow-mpijob", "slurm-srun"}


def test_docker_rendezvous_recipe_uses_the_rendezvous_source():
    seen = {}

    def fake_rendezvous(ctx):  # the real one needs sockets: tested in test_rendezvous.py
        seen["env"] = ctx.env
        return Membership("rendezvous", ("gpu-a", "gpu-b"), 1)

    membership, p = run_recipe("docker-rendezvous", rendezvous=fake_rendezvous)
    assert seen["env"]["TFBUILD_RENDEZVOUS"] == "gpu-a:29400"
    assert membership.source == "rendezvous"
    tf_config = json.loads(p.tasks[0].env["TF_CONFIG"])
    assert tf_config["cluster"]["worker"] == ["gpu-a:2222", "gpu-b:2222"]
    assert tf_config["task"] == {"type": "worker", "index": 1}


def test_kubernetes_indexed_job_recipe():
    membership, p = run_recipe("k8s-indexed-job")
    assert membership.source == "kubernetes"
    assert membership.hosts == ("train-0.train", "train-1.train")
    assert p.tasks[0].env["RANK"] == "1"


def test_kubeflow_tfjob_recipe_keeps_tf_config():
    _, env = recipes()["kubeflow-tfjob"]
    membership, p = run_recipe("kubeflow-tfjob")
    assert membership.source == "tf_config"
    assert p.tasks[0].env["TF_CONFIG"] == json.dumps(json.loads(env["TF_CONFIG"]),
                                                     separators=(",", ":"))
    assert (p.tasks[0].role, p.tasks[0].index) == ("worker", 1)


def test_kubeflow_mpijob_recipe_runs_one_rank():
    membership, p = run_recipe("kubeflow-mpijob")
    assert membership.source == "mpi"
    assert membership.process is not None and membership.process.rank == 3
    assert [t.rank for t in p.tasks] == [3]
    assert p.tasks[0].env["LOCAL_RANK"] == "1"


def test_slurm_recipe():
    membership, p = run_recipe("slurm-srun")
    assert membership.source == "slurm"
    assert membership.hosts == ("gpu01", "gpu02") and membership.node_rank == 1
    tf_config = json.loads(p.tasks[0].env["TF_CONFIG"])
    assert tf_config["task"] == {"type": "worker", "index": 1}


@pytest.mark.parametrize("name", ["k8s-indexed-job", "slurm-srun", "kubeflow-tfjob"])
def test_recipes_carry_a_job_token(name):
    assert recipes()[name][1]["TFBUILD_JOB_TOKEN"]
