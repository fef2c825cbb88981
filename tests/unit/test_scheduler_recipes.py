"""docs/schedulers.md's recipes, fed to the agent exactly as written there, and its
Kubernetes manifests validated against the published API schemas.

Kubernetes cannot run here, so these are the environment-level tests of those recipes:
each `env` block is what the scheduler sets, and the agent's discovery and plan are
checked against it. Slurm and Docker Swarm also run for real in tests/schedulers/.
"""

from __future__ import annotations

import copy
import json
import re

import jsonschema
import kubernetes_validate
import pytest
import yaml
from helpers import REPO

from tfbuild_agent.discovery.chain import discover
from tfbuild_agent.discovery.context import DiscoveryContext
from tfbuild_agent.discovery.membership import Membership
from tfbuild_agent.jobspec import JobSpec
from tfbuild_agent.topology import plan

DOC = REPO / "docs" / "schedulers.md"
BLOCK = re.compile(r"```env (?P<attrs>[^\n]*)\n(?P<body>.*?)```", re.S)
YAML_BLOCK = re.compile(r"```yaml\n(?P<body>.*?)```", re.S)
# The Kubernetes API version whose published schemas the manifests must satisfy: the
# newest that the pinned kubernetes-validate ships.
K8S_VERSION = "1.37"
# What a Docker Swarm's DNS gives the swarm-service recipe (tasks.train -> 3 replicas).
SWARM_TASK_IPS = ["10.0.1.7", "10.0.1.5", "10.0.1.6"]


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
    swarm = name == "swarm-service"
    ctx = DiscoveryContext(
        env=env, job=job, hostname=attrs["hostname"],
        resolve=lambda host: list(SWARM_TASK_IPS) if swarm and host == "tasks.train" else [],
        own_addresses=lambda: ["10.0.1.6"] if swarm else [],
        read_file=lambda path: hostfile if path == "/etc/mpi/hostfile" else None,
        sleep=lambda s: None, log=lambda m: None,
    )
    membership = discover(ctx, rendezvous=rendezvous)
    return membership, plan(membership, job)


def test_every_recipe_has_an_env_block():
    assert set(recipes()) == {"docker-rendezvous", "k8s-indexed-job", "kubeflow-tfjob",
                              "kubeflow-mpijob", "slurm-srun", "swarm-service"}


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


def test_swarm_service_recipe_ranks_replicas_by_ip():
    membership, p = run_recipe("swarm-service")
    assert membership.source == "dns"
    assert membership.hosts == ("10.0.1.5", "10.0.1.6", "10.0.1.7")
    assert p.tasks[0].env["RANK"] == "1"
    tf_config = json.loads(p.tasks[0].env["TF_CONFIG"])
    assert tf_config["cluster"]["worker"] == [f"{ip}:2222" for ip in membership.hosts]


@pytest.mark.parametrize("name", ["k8s-indexed-job", "slurm-srun", "kubeflow-tfjob",
                                  "swarm-service"])
def test_recipes_carry_a_job_token(name):
    assert recipes()[name][1]["TFBUILD_JOB_TOKEN"]


# -- Kubernetes and Kubeflow manifests -------------------------------------------------------

def manifests() -> list[dict]:
    docs = []
    for m in YAML_BLOCK.finditer(DOC.read_text()):
        docs += [d for d in yaml.safe_load_all(m.group("body")) if d]
    return docs


# Kubeflow's CRDs: no package on PyPI ships the operators' published CRD schemas (the
# kubeflow-training SDK has generated Python models only), so the resource around the
# pod templates is checked against this transcription of the training operator's
# kubeflow.org/v1 TFJob API (fields, replica types, restart policies), and every pod
# template against Kubernetes' own PodTemplateSpec schema.
REPLICA_SPEC = {
    "type": "object",
    "required": ["template"],
    "additionalProperties": False,
    "properties": {
        "replicas": {"type": "integer", "minimum": 0},
        "template": {"type": "object"},
        "restartPolicy": {"enum": ["Always", "OnFailure", "Never", "ExitCode"]},
    },
}
CRD_SCHEMAS = {
    ("kubeflow.org/v1", "TFJob"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "kubeflow.org/v1"},
            "kind": {"const": "TFJob"},
            "metadata": {"type": "object", "required": ["name"]},
            "spec": {
                "type": "object",
                "required": ["tfReplicaSpecs"],
                "additionalProperties": False,
                "properties": {
                    "tfReplicaSpecs": {
                        "type": "object",
                        "minProperties": 1,
                        "propertyNames": {"enum": ["Chief", "Master", "Worker", "PS",
                                                   "Evaluator"]},
                        "additionalProperties": REPLICA_SPEC,
                    },
                    "runPolicy": {"type": "object"},
                    "successPolicy": {"type": "string"},
                    "enableDynamicWorker": {"type": "boolean"},
                },
            },
        },
    },
}
REPLICA_SPECS_KEY = {"TFJob": "tfReplicaSpecs"}


def validate_manifest(doc: dict) -> None:
    """Raise (jsonschema or kubernetes-validate ValidationError) if `doc` is not valid."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRD_SCHEMAS:
        jsonschema.validate(doc, CRD_SCHEMAS[key])
        for role, replica in doc["spec"][REPLICA_SPECS_KEY[doc["kind"]]].items():
            pod_template = {"apiVersion": "v1", "kind": "PodTemplate",
                            "metadata": {"name": f"{doc['metadata']['name']}-{role.lower()}"},
                            "template": replica["template"]}
            kubernetes_validate.validate(pod_template, K8S_VERSION, strict=True)
        return
    if str(key[0]).split("/")[0].endswith("kubeflow.org"):
        raise AssertionError(f"no schema here for {key}: add it to CRD_SCHEMAS")
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_pinned_validator_ships_the_schema_version_used():
    assert kubernetes_validate.utils.latest_version().startswith(K8S_VERSION)


def test_the_page_has_the_manifests_we_validate():
    kinds = sorted((d["apiVersion"], d["kind"]) for d in manifests())
    assert kinds == [("batch/v1", "Job"), ("kubeflow.org/v1", "TFJob"), ("v1", "Service")]


@pytest.mark.parametrize("doc", manifests(), ids=lambda d: f"{d['kind']}-{d['metadata']['name']}")
def test_every_manifest_is_valid_against_its_published_schema(doc):
    validate_manifest(doc)


def _mutated(kind: str, change) -> dict:
    doc = copy.deepcopy(next(d for d in manifests() if d["kind"] == kind))
    change(doc)
    return doc


@pytest.mark.parametrize("kind, change", [
    ("Job", lambda d: d["spec"].update(completionMod=d["spec"].pop("completionMode"))),
    ("Job", lambda d: d["spec"]["template"]["spec"]["containers"][0].update(arg=["x"])),
    ("Job", lambda d: d["spec"].update(completions="2")),
    ("Service", lambda d: d["spec"].update(clusterIp="None")),
    ("TFJob", lambda d: d["spec"]["tfReplicaSpecs"].update(
        Workers=d["spec"]["tfReplicaSpecs"].pop("Worker"))),
    ("TFJob", lambda d: d["spec"]["tfReplicaSpecs"]["PS"].update(replica=1)),
    ("TFJob", lambda d: d["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]
     ["containers"][0].update(imag="x")),
], ids=["job-field", "container-field", "job-type", "service-field", "tfjob-replica-type",
        "tfjob-replica-field", "tfjob-pod-field"])
def test_a_typo_in_a_manifest_fails_validation(kind, change):
    with pytest.raises(jsonschema.ValidationError):
        validate_manifest(_mutated(kind, change))
