"""A tiny image for control-plane tests at scale: the offline Debian base, python3 and the
agent package, no TensorFlow (a few hundred MB less per container than a training image,
so 32-128 containers fit on a small machine). Shared by tests/docker/test_control_scale.py
and bench/rdzv_soak.py."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import tfbuild_agent

TINY_IMAGE = "tfbuild-scale/tiny-agent:latest"
BASE = "tfbuild/debian:bookworm"
SCRIPT = Path(__file__).parent / "projects" / "tiny" / "tiny.py"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")

DOCKERFILE = f"""\
FROM {BASE}
RUN apt-get update && apt-get install -y --no-install-recommends python3 \\
    && rm -rf /var/lib/apt/lists/*
COPY agent /opt/tfbuild/agent
COPY job.json /etc/tfbuild/job.json
COPY tiny.py /app/tiny.py
ENV PYTHONPATH=/opt/tfbuild/agent PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
ENTRYPOINT ["python3", "-m", "tfbuild_agent", "run", "--"]
"""

JOB = {"entry_script": "tiny.py", "distributed_backend": "multiworker", "node_count": 2,
       "python": "/usr/bin/python3", "workdir": "/app"}


def _context(agent: Path | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("Dockerfile", DOCKERFILE.encode())
        add("job.json", json.dumps(JOB).encode())
        add("tiny.py", SCRIPT.read_bytes())
        agent = agent or Path(tfbuild_agent.__file__).parent
        tar.add(agent, arcname="agent/tfbuild_agent",
                filter=lambda t: None if "__pycache__" in t.name else t)
    return buf.getvalue()


def build_tiny_image(client, agent: Path | None = None, tag: str = TINY_IMAGE) -> str:
    """Build (or rebuild: the agent's code is part of the context) and return the tag.
    `agent`: another checkout's entrypoint/ folder (bench compares before/after)."""
    client.images.build(fileobj=io.BytesIO(_context(agent)), custom_context=True, tag=tag,
                        rm=True, forcerm=True)
    return tag
