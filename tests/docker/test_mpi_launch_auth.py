"""The MPI launch channel in real containers: a launch attempt with a wrong (or no)
job token is refused and logged, nothing is started, and the waiting node gives up
within its bound naming the launcher node. Also: the mpi image carries no ssh key
and its mpi4py runs on the image's Open MPI."""

from __future__ import annotations

import contextlib
import time

import docker.errors
import pytest
from helpers import REPO, build_project

from tfbuild.run.launch import LABEL, new_job

pytestmark = pytest.mark.timeout(1200)

AGENT = "/opt/tfbuild/agent/cmd/tfbuild-agent"
LAUNCH_TIMEOUT = 20


@pytest.fixture(scope="module")
def allreduce_image(base_image) -> str:
    return build_project(REPO / "tests" / "docker" / "projects" / "mpi-allreduce",
                         "tfbuild-test/mpi-allreduce:latest")


@pytest.fixture
def made(docker_client):
    """Containers and networks the test creates; removed afterwards."""
    things: list = []
    yield things
    for thing in reversed(things):
        with contextlib.suppress(docker.errors.APIError):
            if hasattr(thing, "containers"):
                thing.remove()
            else:
                thing.remove(force=True)


def attempt(client, image: str, net, made: list, env: dict, host: str) -> tuple[int, str]:
    """What an intruder on the job's network can do: run mpi-rsh against node 1."""
    c = client.containers.create(
        image, entrypoint=[AGENT, "mpi-rsh", host, "orted", "--version"],
        environment=env, network=net.name, labels={LABEL: "intruder"})
    made.append(c)
    c.start()
    code = int(c.wait(timeout=60)["StatusCode"])
    return code, c.logs().decode(errors="replace")


def test_launch_with_a_wrong_or_missing_token_is_refused_and_logged(
    docker_client, allreduce_image, made
) -> None:
    launch = new_job(allreduce_image, 2, env={"TFBUILD_MPI_LAUNCH_TIMEOUT": str(LAUNCH_TIMEOUT)})
    net = docker_client.networks.create(launch.network, driver="bridge",
                                        labels={LABEL: launch.job})
    made.append(net)
    # Node 1 alone: it serves the launch channel and waits for node 0, which never comes.
    node1 = docker_client.containers.create(
        allreduce_image, name=f"{launch.job}-1", hostname=launch.name(1),
        environment=launch.container_env(1), network=net.name, labels={LABEL: launch.job})
    made.append(node1)
    started = time.monotonic()
    node1.start()

    wrong, wrong_out = attempt(docker_client, allreduce_image, net, made,
                               {"TFBUILD_JOB_TOKEN": "not-the-job-token"}, launch.name(1))
    assert wrong != 0, wrong_out
    assert "refused the MPI exec" in wrong_out and "wrong job token" in wrong_out, wrong_out

    # No token at all: the client refuses to try ...
    none, none_out = attempt(docker_client, allreduce_image, net, made, {}, launch.name(1))
    assert none != 0 and "TFBUILD_JOB_TOKEN is not set" in none_out, none_out
    # ... and told the network is trusted it tries without one, and the node refuses.
    trusted, trusted_out = attempt(docker_client, allreduce_image, net, made,
                                   {"TFBUILD_TRUST_NETWORK": "1"}, launch.name(1))
    assert trusted != 0 and "refused the MPI exec" in trusted_out, trusted_out

    code = int(node1.wait(timeout=LAUNCH_TIMEOUT + 60)["StatusCode"])
    waited = time.monotonic() - started
    log = node1.logs().decode(errors="replace")
    refusals = [line for line in log.splitlines() if "mpi launch: refused exec from" in line]
    assert len(refusals) == 2, log
    assert all("wrong job token" in line for line in refusals), refusals
    assert "starts" not in log and "orted --version" not in log  # nothing was launched
    assert code != 0, log
    assert f"the launcher node {launch.name(0)} did not start this node's ranks within" in log
    assert "2 launch attempt(s) were refused" in log
    assert waited < LAUNCH_TIMEOUT + 30, waited


def test_mpi_image_has_no_ssh_key_and_mpi4py_uses_open_mpi(docker_client, allreduce_image):
    script = (
        "find / -xdev \\( -name 'id_rsa*' -o -name 'id_ed25519*' -o -name 'id_ecdsa*' "
        "-o -name 'ssh_host_*key*' -o -name authorized_keys \\) -print; "
        "/opt/tfbuild/venv/bin/python -c "
        "'from mpi4py import MPI; print(MPI.Get_library_version().splitlines()[0])'"
    )
    out = docker_client.containers.run(allreduce_image, entrypoint=["/bin/sh", "-c", script],
                                       remove=True).decode()
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("Open MPI v4.1"), out
    assert lines[:-1] == [], f"key material in the image: {lines[:-1]}"
