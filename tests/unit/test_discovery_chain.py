import itertools
import json

import pytest
from discovery_fakes import make_ctx

from tfbuild_agent.discovery import chain
from tfbuild_agent.discovery.membership import Membership
from tfbuild_agent.errors import DiscoveryError

TF_CONFIG = json.dumps(
    {"cluster": {"worker": ["w0:2222", "w1:2222"]}, "task": {"type": "worker", "index": 1}}
)


def test_documented_order():
    assert chain.ORDER == (
        "explicit",
        "tf_config",
        "mpi",
        "slurm",
        "kubernetes",
        "dns",
        "rendezvous",
        "single",
    )


# For each source, the environment its scheduler sets for node 0 of a 2-node job.
APPLIES = {
    "explicit": {"TFBUILD_HOSTS": "a,b", "TFBUILD_NODE_RANK": "0"},
    "tf_config": {"TF_CONFIG": TF_CONFIG},
    "mpi": {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2",
            "OMPI_COMM_WORLD_LOCAL_RANK": "0", "OMPI_COMM_WORLD_LOCAL_SIZE": "1",
            "OMPI_COMM_WORLD_NODE_RANK": "0", "OMPI_MCA_orte_default_hostfile": "/hf"},
    "slurm": {"SLURM_JOB_ID": "1", "SLURM_PROCID": "0", "SLURM_JOB_NODELIST": "n[1-2]",
              "SLURM_NODEID": "0"},
    "kubernetes": {"JOB_COMPLETION_INDEX": "0", "TFBUILD_K8S_SUBDOMAIN": "trainers",
                   "TFBUILD_K8S_JOB_NAME": "tf"},
    "dns": {"TFBUILD_DNS_NAME": "trainers"},
}


def _two_node_ctx(env):
    return make_ctx(env, node_count=2, hostname="n1", files={"/hf": "n1 slots=1\nn2 slots=1\n"},
                    addresses=["10.0.0.1"], resolve=lambda name: ["10.0.0.1", "10.0.0.2"])


@pytest.mark.parametrize(("first", "second"), list(itertools.combinations(APPLIES, 2)))
def test_of_two_sources_that_apply_the_documented_earlier_one_wins(first, second):
    """Runs discovery (not just the ORDER constant): a container under srun inside a
    Kubernetes pod, or with TF_CONFIG left over, must pick the same source every time."""
    assert chain.discover(_two_node_ctx(APPLIES[second])).source == second
    assert chain.discover(_two_node_ctx({**APPLIES[first], **APPLIES[second]})).source == first


def test_single_node_falls_back_to_localhost():
    logs: list[str] = []
    m = chain.discover(make_ctx({}, logs=logs))
    assert (m.source, m.hosts, m.node_rank) == ("single", ("localhost",), 0)
    assert logs == ["discovery: single found 1 node(s) [localhost]; this is node 0 (localhost)"]


def test_multi_node_without_any_source_lists_what_to_set():
    with pytest.raises(DiscoveryError) as info:
        chain.discover(make_ctx({}, node_count=3))
    message = str(info.value)
    assert message.startswith("this job has 3 nodes, but nothing tells the agent")
    for needle in (
        "1. explicit: TFBUILD_HOSTS",
        "2. tf_config: TF_CONFIG",
        "3. mpi: OMPI_COMM_WORLD_RANK",
        "4. slurm: SLURM_JOB_ID",
        "5. kubernetes: JOB_COMPLETION_INDEX",
        "6. dns: TFBUILD_DNS_NAME",
        "7. rendezvous: TFBUILD_RENDEZVOUS",
        "TFBUILD_NODES=1",
    ):
        assert needle in message


def test_earlier_source_wins_explicit_over_tf_config():
    env = {"TFBUILD_HOSTS": "a,b", "TFBUILD_NODE_RANK": "0", "TF_CONFIG": TF_CONFIG}
    assert chain.discover(make_ctx(env, node_count=2)).source == "explicit"
    del env["TFBUILD_HOSTS"]
    assert chain.discover(make_ctx(env, node_count=2)).source == "tf_config"


def test_mpi_before_slurm_under_srun_mpi():
    env = {
        "PMI_RANK": "0",
        "PMI_SIZE": "2",
        "SLURM_JOB_ID": "1",
        "SLURM_PROCID": "0",
        "SLURM_JOB_NODELIST": "n[1-2]",
        "SLURM_NODEID": "0",
    }
    m = chain.discover(make_ctx(env, node_count=2))
    assert m.source == "mpi" and m.hosts == ("n1", "n2")


def test_rendezvous_is_tried_seventh_and_only_when_nothing_else_applies():
    calls = []

    def rendezvous(ctx):
        calls.append(ctx.job.node_count)
        return Membership("rendezvous", ("10.0.0.1", "10.0.0.2"), 1)

    assert chain.discover(make_ctx({}, node_count=2), rendezvous).source == "rendezvous"
    assert calls == [2]
    env = {"TFBUILD_HOSTS": "a,b", "TFBUILD_NODE_RANK": "0"}
    assert chain.discover(make_ctx(env, node_count=2), rendezvous).source == "explicit"
    assert calls == [2]


def test_rendezvous_returning_none_falls_back_to_single():
    assert chain.discover(make_ctx({}), lambda ctx: None).source == "single"


def test_a_broken_source_stops_the_chain():
    env = {"TF_CONFIG": "{oops", "JOB_COMPLETION_INDEX": "0"}
    with pytest.raises(DiscoveryError, match="TF_CONFIG is not valid JSON"):
        chain.discover(make_ctx(env))


def test_describe_reports_every_source_without_waiting():
    env = {"TF_CONFIG": TF_CONFIG, "TFBUILD_DNS_NAME": "trainers"}
    ctx = make_ctx(env, node_count=2, hostname="w1", timeout=300, resolve=lambda name: ["10.0.0.1"])
    report = chain.describe(ctx)
    assert report["chosen"] == "tf_config"
    assert report["order"] == list(chain.ORDER)
    by_name = {entry["source"]: entry for entry in report["sources"]}
    assert list(by_name) == list(chain.ORDER)
    assert by_name["explicit"]["applies"] is False
    assert "TFBUILD_HOSTS" in by_name["explicit"]["why"]
    assert by_name["tf_config"]["membership"]["hosts"] == ["w0", "w1"]
    assert by_name["dns"]["applies"] is True
    assert "waited 0s for 2 peers" in by_name["dns"]["error"]
    assert by_name["rendezvous"]["applies"] is False
    assert by_name["single"]["applies"] is False
    json.dumps(report)  # printable as is


def test_describe_single_and_rendezvous():
    assert chain.describe(make_ctx({}))["chosen"] == "single"
    report = chain.describe(make_ctx({"TFBUILD_RENDEZVOUS": "10.0.0.1:29400"}, node_count=2))
    assert report["chosen"] == "rendezvous"


@pytest.mark.parametrize(
    ("count", "shown"),
    [(8, "h0, h1, h2, h3, h4, h5, h6, h7]"),
     (9, "h0, h1, h2, h3, h4, h5, h6, h7, ... (9 in all)]")],
)
def test_the_discovery_log_line_lists_up_to_8_hosts_then_counts(count, shown):
    logs: list[str] = []
    hosts = ",".join(f"h{i}" for i in range(count))
    env = {"TFBUILD_HOSTS": hosts, "TFBUILD_NODE_RANK": str(count - 1)}
    chain.discover(make_ctx(env, node_count=count, logs=logs))
    assert logs == [f"discovery: explicit found {count} node(s) [{shown}; "
                    f"this is node {count - 1} (h{count - 1})"]


def test_describe_on_a_single_node_job_prefers_a_source_that_applies_over_single():
    report = chain.describe(make_ctx({"TFBUILD_HOSTS": "a", "TFBUILD_NODE_RANK": "0"}))
    assert report["chosen"] == "explicit"
    assert report["sources"][-1]["applies"] is True  # single would apply too


def test_describe_says_whether_the_rendezvous_is_set():
    by_name = {e["source"]: e for e in chain.describe(make_ctx({}))["sources"]}
    assert by_name["rendezvous"]["why"] == "TFBUILD_RENDEZVOUS is not set"
    env = {"TFBUILD_RENDEZVOUS": "10.0.0.1:29400"}
    by_name = {e["source"]: e for e in chain.describe(make_ctx(env, node_count=2))["sources"]}
    assert by_name["rendezvous"]["why"] == "TFBUILD_RENDEZVOUS is set (not joined by describe)"
