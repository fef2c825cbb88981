"""Helpers shared by the test tiers (importable as `helpers`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], Any], timeout: float = 5.0, what: str = "condition",
             every: float = 0.02) -> Any:
    """Poll `check` until it returns something truthy (returned), or fail after `timeout`."""
    import pytest

    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g}s")
        time.sleep(every)


# Credentials of the tests' own moto server (never a real account).
TEST_AWS = {"AWS_ACCESS_KEY_ID": "tfbuild-test-key", "AWS_SECRET_ACCESS_KEY": "tfbuild-test-secret",
            "AWS_DEFAULT_REGION": "us-east-1"}


def docker0_address() -> str:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "docker0"], capture_output=True,
                         text=True).stdout.split()
    return out[out.index("inet") + 1].split("/")[0] if "inet" in out else "172.17.0.1"


@contextmanager
def moto_on_docker0() -> Iterator[str]:
    """moto's S3 server on docker0's address, so that a job's containers (on their bridge
    network) and this host both reach it; yields its endpoint URL."""
    import pytest

    host = docker0_address()
    with socket.socket() as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", host,
                             "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection((host, port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not listen on {host}:{port} within 30 s")
                time.sleep(0.1)
        yield f"http://{host}:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def moto_client(endpoint: str) -> Any:
    """A boto3 client of the tests' moto server."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=TEST_AWS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=TEST_AWS["AWS_SECRET_ACCESS_KEY"])


def build_project(source: Path, tag: str, **overrides) -> str:
    """Build a tfbuild image from `source` (a real build on the real engine)."""
    from tfbuild.image.build import build
    from tfbuild.spec import load_spec

    if HOST_CA.exists():
        overrides.setdefault("trust_host_ca", True)
    spec = load_spec(source, overrides=overrides)
    built, _ = build(spec, tag=tag, quiet=True)
    return built


AGENT_IMAGE_DOCKERFILE = """\
FROM {base}
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null 2>&1 || true
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt
COPY agent/requirements.txt /tmp/agent-requirements.txt
RUN python3 -m venv /opt/tfbuild/venv \\
 && /opt/tfbuild/venv/bin/pip install --no-cache-dir -q -r /tmp/agent-requirements.txt
COPY agent/tfbuild_agent/ /opt/tfbuild/agent-lib/tfbuild_agent/
ENV PYTHONPATH=/opt/tfbuild/agent-lib
COPY job.json /etc/tfbuild/job.json
COPY app/ /app/
WORKDIR /app
ENTRYPOINT ["/opt/tfbuild/venv/bin/python", "-m", "tfbuild_agent", "run", "--"]
CMD []
"""


def build_agent_image(
    client,
    tag: str,
    base: str,
    app: dict[str, bytes],
    job: dict,
    spec_label: dict,
    store_extras: tuple[str, ...] = (),
) -> str:
    """A small image with the agent and `app` but no TensorFlow (seconds to build, for
    tests where training is not the point). `job` is the baked job.json (JobSpec
    fields); `spec_label` is what `tfbuild image` would record in io.tfbuild.spec."""
    import io
    import json

    from tfbuild.credentials import ca_bundle_files
    from tfbuild.image.agent_bundle import add_agent
    from tfbuild.image.context import BuildContext
    from tfbuild_agent.jobspec import JobSpec

    ctx = BuildContext()
    add_agent(ctx, "agent", store_extras)
    for name, pem in (ca_bundle_files([HOST_CA]) if HOST_CA.exists() else {}).items():
        ctx.add_bytes(f"ca/{name}", pem)
    ctx.add_bytes("ca/.keep", b"")
    spec = JobSpec(**{"python": "/opt/tfbuild/venv/bin/python", **job})
    ctx.add_bytes("job.json", spec.to_json().encode() + b"\n")
    for name, data in app.items():
        ctx.add_bytes(f"app/{name}", data)
    ctx.add_bytes("Dockerfile", AGENT_IMAGE_DOCKERFILE.format(base=base).encode())
    log: list[str] = []
    for chunk in client.api.build(
        fileobj=io.BytesIO(ctx.tar_bytes()), custom_context=True, tag=tag, rm=True,
        forcerm=True, decode=True, pull=False,
        labels={"io.tfbuild.spec": json.dumps(spec_label, sort_keys=True)},
    ):
        if "error" in chunk:
            raise RuntimeError(f"building {tag}: {chunk['error']}\n" + "\n".join(log[-20:]))
        log.extend(chunk.get("stream", "").splitlines())
    return tag
