"""Helpers shared by the test tiers (importable as `helpers`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
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
