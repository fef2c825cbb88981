"""The agent in real containers: discovery by DNS alias and by rendezvous, token
refusal, SIGTERM forwarding, and a node killed with -9."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cluster import Cluster
from helpers import build_project

PROBE = Path(__file__).parent / "projects" / "probe"


@pytest.fixture(scope="module")
def probe_image(base_image) -> str:
    return build_project(PROBE, "tfbuild-test/probe:latest")


@pytest.fixture
def cluster(docker_client, probe_image):
    c = Cluster(docker_client, probe_image)
    yield c
    c.close()


def _workers(tf_config: str) -> list[str]:
    return json.loads(tf_config)["cluster"]["worker"]


def test_three_containers_find_each_other_by_dns_alias(cluster):
    cluster.start(3, lambda i: {"TFBUILD_DNS_NAME": cluster.name, "TFBUILD_RUN_ID": "r-dns",
                                "TFBUILD_JOB_TOKEN": "t0ken"})
    assert cluster.wait_all(120) == [0, 0, 0], cluster.logs(0)
    probes = [cluster.probes(i)[0] for i in range(3)]
    workers = {tuple(_workers(p["TF_CONFIG"])) for p in probes}
    assert len(workers) == 1, "every node must see the same cluster"
    assert len(next(iter(workers))) == 3
    assert sorted(p["RANK"] for p in probes) == ["0", "1", "2"]
    assert all(p["argv"] == ["--tag", "baked"] for p in probes)


def test_rendezvous_with_a_token_forms_the_job(cluster):
    env = {"TFBUILD_RENDEZVOUS": f"{cluster.host(0)}:29400", "TFBUILD_JOB_TOKEN": "s3cret",
           "TFBUILD_RUN_ID": "r-rdzv"}
    cluster.start(3, lambda i: dict(env), command=["--tag", "given"])
    assert cluster.wait_all(120) == [0, 0, 0], cluster.logs(1)
    probes = [cluster.probes(i)[0] for i in range(3)]
    # Ranks come from the sorted identities (hostnames), not arrival order.
    assert [p["RANK"] for p in probes] == ["0", "1", "2"]
    assert all(p["argv"] == ["--tag", "given"] for p in probes)


def test_rendezvous_refuses_a_wrong_token(cluster):
    def env(i):
        return {"TFBUILD_RENDEZVOUS": f"{cluster.host(0)}:29400",
                "TFBUILD_JOB_TOKEN": "right" if i < 2 else "wrong",
                "TFBUILD_DISCOVERY_TIMEOUT": "20", "TFBUILD_NODES": "3"}

    cluster.start(3, env)
    codes = cluster.wait_all(120)
    assert codes[2] != 0
    assert "token" in cluster.logs(2).lower()
    assert "token" in cluster.logs(0).lower(), "the server logs the refusal"


def test_sigterm_reaches_the_script_and_the_exit_code_is_143(docker_client, probe_image, tmp_path):
    marker = tmp_path / "marker"
    c = docker_client.containers.run(
        probe_image, ["--mode", "wait", "--marker", str(marker)], detach=True,
        environment={"TFBUILD_NODES": "1"}, volumes={str(tmp_path): {"bind": str(tmp_path)}},
    )
    try:
        deadline = time.monotonic() + 60
        while b"PROBE" not in c.logs() and time.monotonic() < deadline:
            time.sleep(0.5)
        c.kill(signal="SIGTERM")
        assert c.wait(timeout=60)["StatusCode"] == 143
        assert marker.read_text() == "SIGTERM in worker-0"
    finally:
        c.remove(force=True)


def test_kill_9_of_one_node_makes_the_others_fail_within_the_bound(cluster):
    env = {"TFBUILD_HOSTS": ",".join(cluster.host(i) for i in range(3)),
           "TFBUILD_JOB_TOKEN": "k9", "TFBUILD_HEARTBEAT_INTERVAL": "1"}
    cluster.start(3, lambda i: {**env, "TFBUILD_NODE_RANK": str(i)},
                  command=["--mode", "wait", "--seconds", "300"])
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not all(cluster.probes(i) for i in range(3)):
        time.sleep(0.5)
    cluster.containers[2].kill(signal="SIGKILL")
    killed_at = time.monotonic()
    codes = cluster.wait_all(60)
    elapsed = time.monotonic() - killed_at
    assert codes[0] != 0 and codes[1] != 0
    assert elapsed < 30, f"survivors took {elapsed:.1f} s to notice"
    assert cluster.host(2) in cluster.logs(0) or "rank 2" in cluster.logs(0)
