"""The whole upload path in containers: an image built with `upload_extras: [s3, azure]`
runs a job whose agent uploads from inside its container to real moto (S3) and Azurite
(Azure Blob) servers on this host; `tfbuild runs list` and `runs download` on the host
read the run back byte-identical (a growing log included, uploaded in parts while the
job ran and whole at the end).

The servers listen on 127.0.0.1 only; the job's containers use host networking to
reach them (a bridge network cannot reach the host's loopback)."""

from __future__ import annotations

import hashlib
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import build_project

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))
from sync_servers import (
    StoreTarget,
    azure_target,
    azurite_bin,
    free_port,
    s3_target,
    stop_process,
    wait_port,
)

pytestmark = [pytest.mark.docker, pytest.mark.services, pytest.mark.timeout(900)]

IMAGE = "tfbuild-test/upload-extras:latest"
NAME = "tfbuild-test-upload"
JOB = textwrap.dedent('''\
    """Writes outputs (one past the one-request size, streamed) and a log that grows
    with pauses, so the agent uploads it in parts while the job runs."""
    import hashlib, os, time

    def blob(name, size):
        out, i = bytearray(), 0
        while len(out) < size:
            out += hashlib.sha256(f"{name}-{i}".encode()).digest()
            i += 1
        return bytes(out[:size])

    os.makedirs("outputs/model", exist_ok=True)
    with open("outputs/model/weights.bin", "wb") as f:
        f.write(blob("weights", 3 * 2**20 + 17))
    with open("outputs/big.bin", "wb") as f:
        f.write(blob("big", 12 * 2**20 + 5))
    with open("outputs/metrics.json", "w") as f:
        f.write('{"accuracy": 0.97}')
    with open("logs/train.log", "w") as log:
        for phase in range(3):
            for step in range(200):
                log.write(f"phase {phase} step {step} loss {1 / (step + 1):.6f}\\n")
            log.flush()
            time.sleep(2.5)
    print("JOB-DONE", flush=True)
''')


def expected(name: str, size: int) -> bytes:
    out, i = bytearray(), 0
    while len(out) < size:
        out += hashlib.sha256(f"{name}-{i}".encode()).digest()
        i += 1
    return bytes(out[:size])


def expected_log() -> bytes:
    return "".join(f"phase {p} step {s} loss {1 / (s + 1):.6f}\n"
                   for p in range(3) for s in range(200)).encode()


@pytest.fixture(scope="module")
def upload_image(base_image, tmp_path_factory, trust_host_ca) -> str:
    project = tmp_path_factory.mktemp("upload-project")
    (project / "job.py").write_text(JOB)
    (project / "tfbuild.yaml").write_text(
        "entry_script: job.py\ndistributed_backend: none\nnode_count: 1\n"
        "upload_extras: [s3, azure]\n")
    return build_project(project, IMAGE, **trust_host_ca)


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[dict[str, int]]:
    import subprocess

    moto_port, az_port = free_port(), free_port()
    moto = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H",
                             "127.0.0.1", "-p", str(moto_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    azurite = subprocess.Popen(
        [str(azurite_bin()), "--blobHost", "127.0.0.1", "--blobPort", str(az_port),
         "--location", str(tmp_path_factory.mktemp("azurite")), "--silent",
         "--skipApiVersionCheck"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(moto_port, moto, "moto_server")
        wait_port(az_port, azurite, "azurite-blob")
        yield {"s3": moto_port, "azure": az_port}
    finally:
        stop_process(moto)
        stop_process(azurite)


def _target(kind: str, servers: dict[str, int]) -> StoreTarget:
    target = (s3_target if kind == "s3" else azure_target)(servers[kind])
    # The container reaches the server itself (127.0.0.1 on the host network), not the
    # test's outage proxy.
    assert target.proxy is not None
    target.proxy.down()
    return target


@pytest.mark.parametrize("kind", ["s3", "azure"])
def test_a_run_uploads_from_its_container_and_reads_back_byte_identical(
    kind: str, upload_image: str, servers: dict[str, int], docker_client, tmp_path: Path
) -> None:
    from tfbuild.cli.runs import runs

    target = _target(kind, servers)
    run_id = f"ctr-{kind}-{uuid.uuid4().hex[:6]}"
    env = {**target.reader_env, "TFBUILD_UPLOAD_TO": target.uri, "TFBUILD_RUN_ID": run_id,
           "TFBUILD_NODES": "1"}
    if kind == "s3":  # the agent's own endpoint variable, as `tfbuild run` passes it
        env["TFBUILD_S3_ENDPOINT_URL"] = env.pop("AWS_ENDPOINT_URL")
    container = docker_client.containers.run(
        upload_image, detach=True, environment=env, network_mode="host",
        name=f"{NAME}-{kind}-{uuid.uuid4().hex[:6]}")
    try:
        code = container.wait(timeout=300)["StatusCode"]
        output = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    assert code == 0, output[-3000:]
    assert "JOB-DONE" in output
    for noise in ("already exists", "called when the thread is inactive", "Traceback"):
        assert noise not in output, f"{noise!r} in the job's output:\n{output[-3000:]}"

    cli = CliRunner()
    listed = cli.invoke(runs, ["list", target.uri], env=target.reader_env,
                        catch_exceptions=False)
    assert listed.exit_code == 0, listed.output
    assert run_id in listed.output and "Completed" in listed.output, listed.output

    out = tmp_path / "download"
    t0 = time.monotonic()
    got = cli.invoke(runs, ["download", target.uri, run_id, "-o", str(out)],
                     env=target.reader_env, catch_exceptions=False)
    assert got.exit_code == 0, got.output
    root = out / run_id
    assert (root / "outputs/model/weights.bin").read_bytes() == expected("weights",
                                                                          3 * 2**20 + 17)
    assert (root / "outputs/big.bin").read_bytes() == expected("big", 12 * 2**20 + 5)
    assert (root / "outputs/metrics.json").read_bytes() == b'{"accuracy": 0.97}'
    assert (root / "logs/train.log").read_bytes() == expected_log()
    assert not [p for p in root.rglob("*") if ".tfbuild-part" in p.name], \
        "log parts left in the store after the run ended"
    print(f"\n[measure] {kind}: download {time.monotonic() - t0:.1f}s")
