"""2. Agent overhead: container start -> the first line the user's script prints.

All variants run the same image (the bench's keras-digits image plus a script that prints
a line before it imports TensorFlow, and sagemaker-training when it installs):

    plain          docker run --entrypoint /opt/tfbuild/venv/bin/python IMAGE -u first_line.py
    tfbuild-agent  the image's own entrypoint (one node, no uploads)
    agent+upload   the same with TFBUILD_UPLOAD_TO=file:// on a bind mount
    sagemaker      sagemaker-training's `train` entry point (SAGEMAKER_PROGRAM=first_line.py)

Each timing runs from the start request to the marker line on the attached output;
variants are interleaved and the container is removed as soon as the line arrives.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
from common import HOST_CA, VENV_BIN, ImageTracker, Row, load, median, sdk_build
from section_build import KERAS_IMAGE, make_project

IMAGE = "tfbuild-bench/agent-overhead:latest"
MARKER = b"BENCH-FIRST-LINE"
FIRST_LINE_PY = """\
print("BENCH-FIRST-LINE", flush=True)
import tensorflow  # noqa: E402,F401  (what a training script does next)
"""
SAGEMAKER_INSTALL = """\
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev \\
    python3-dev \\
 && /opt/tfbuild/venv/bin/pip install --no-cache-dir \\
    -c /opt/tfbuild/venv/tfbuild-constraints.txt sagemaker-training \\
 && rm -rf /var/lib/apt/lists/*
COPY first_line.py /opt/ml/code/first_line.py
COPY sagemaker/ /opt/ml/input/config/
"""
SAGEMAKER_CONFIG = {  # what SageMaker mounts into a training container, for one host
    "resourceconfig.json": {"current_host": "algo-1", "hosts": ["algo-1"],
                            "current_instance_group": "homogeneousCluster",
                            "instance_groups": [{"instance_group_name": "homogeneousCluster",
                                                 "instance_type": "local",
                                                 "hosts": ["algo-1"]}]},
    "hyperparameters.json": {},
    "inputdataconfig.json": {},
}
PLAIN, AGENT, UPLOAD, SAGEMAKER = "plain python", "tfbuild-agent", "agent+upload", "sagemaker"


@dataclass(frozen=True)
class Variant:
    name: str
    entrypoint: list[str] | None
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)


def variants(store: Path, sagemaker: bool) -> list[Variant]:
    agent_env = {"TFBUILD_NODES": "1", "TFBUILD_ENTRY_SCRIPT": "first_line.py"}
    out = [
        Variant(PLAIN, ["/opt/tfbuild/venv/bin/python", "-u", "first_line.py"]),
        Variant(AGENT, None, env=agent_env),
        Variant(UPLOAD, None, env=agent_env | {"TFBUILD_UPLOAD_TO": "file:///bench-store"},
                volumes={str(store): {"bind": "/bench-store", "mode": "rw"}}),
    ]
    if sagemaker:
        out.append(Variant(SAGEMAKER, ["/opt/tfbuild/venv/bin/train"],
                           env={"SAGEMAKER_PROGRAM": "first_line.py",
                                "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/code"}))
    return out


def ensure_images(client: docker.DockerClient, workdir: Path, tracker: ImageTracker
                  ) -> tuple[bool, str]:
    """Build the keras-digits image (a cached build after the build section) and the derived
    image. Returns (sagemaker installed, why not)."""
    project = make_project(workdir)
    argv = [str(VENV_BIN / "tfbuild"), "image", str(project), "-t", KERAS_IMAGE, "-q"]
    argv += ["--trust-host-ca"] if HOST_CA.exists() else []
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"tfbuild image failed:\n{done.stderr[-3000:]}")
    tracker.tags.append(KERAS_IMAGE)
    head = f"FROM {KERAS_IMAGE}\nCOPY first_line.py /app/first_line.py\n"
    files: dict[str, bytes | Path] = {"first_line.py": FIRST_LINE_PY.encode()}
    config = {f"sagemaker/{k}": json.dumps(v).encode() for k, v in SAGEMAKER_CONFIG.items()}
    try:
        sdk_build(client, files | config | {"Dockerfile": (head + SAGEMAKER_INSTALL).encode()},
                  IMAGE, tracker)
    except RuntimeError as e:
        sdk_build(client, files | {"Dockerfile": head.encode()}, IMAGE, tracker)
        return False, f"sagemaker-training did not install: {str(e)[-1500:]}"
    check = client.containers.run(
        IMAGE, entrypoint=["/opt/tfbuild/venv/bin/python", "-c",
                           "import sagemaker_training.trainer, tensorflow; print('ok')"],
        remove=True, stderr=True)
    if b"ok" not in check:
        return False, f"sagemaker-training installed but does not import: {check[-1500:]!r}"
    return True, ""


def first_line_seconds(client: docker.DockerClient, v: Variant, timeout: float = 120.0
                       ) -> float:
    # SageMaker names its hosts algo-1, algo-2, ... and its toolkit waits until the hosts in
    # resourceconfig.json resolve; every variant gets the same name.
    container = client.containers.create(IMAGE, entrypoint=v.entrypoint, command=v.command,
                                         environment=v.env, volumes=v.volumes,
                                         hostname="algo-1")
    guard = threading.Timer(timeout, lambda: container.remove(force=True))
    try:
        stream = client.api.attach(container.id, stdout=True, stderr=True, stream=True)
        guard.start()
        started = time.monotonic()
        container.start()
        seen = b""
        for chunk in stream:
            seen += chunk
            if MARKER in seen:
                return time.monotonic() - started
        raise RuntimeError(f"{v.name}: no first line within {timeout:g} s:\n{seen[-2000:]!r}")
    finally:
        guard.cancel()
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            container.remove(force=True)


def run(reps: int, workdir: Path, tracker: ImageTracker) -> tuple[list[Row], dict[str, Any]]:
    client = docker.from_env(timeout=900)
    sagemaker, why_not = ensure_images(client, workdir / "project", tracker)
    times: dict[str, list[float]] = {}
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="tfbuild-bench-store-") as store:
        vs = variants(Path(store), sagemaker)
        for v in vs:  # warm-up: page cache, first-start effects
            first_line_seconds(client, v)
        for i in range(reps):
            loads.append(load())
            for v in vs[i % len(vs):] + vs[:i % len(vs)]:
                times.setdefault(v.name, []).append(first_line_seconds(client, v))
    print("  agent: " + ", ".join(f"{k} {median(t) * 1000:.0f} ms" for k, t in times.items()),
          flush=True)
    return rows(times, median(loads), why_not), {
        "seconds": {k: [round(x, 4) for x in t] for k, t in times.items()},
        "loads": loads, "sagemaker": sagemaker or why_not,
    }


def rows(times: dict[str, list[float]], at_load: float, why_not: str) -> list[Row]:
    plain = times[PLAIN]
    out = []
    for name in (AGENT, UPLOAD):
        extra = median(a - p for a, p in zip(times[name], plain, strict=True))
        out.append(Row("agent", f"start -> first line ({name}), median of {len(plain)}",
                       median(times[name]), "s", PLAIN, median(plain), "<= plain + 300 ms",
                       extra <= 0.3, note=f"paired median overhead {extra * 1000:+.0f} ms",
                       load=at_load))
    if SAGEMAKER in times:
        out.append(Row("agent", "start -> first line (tfbuild-agent)", median(times[AGENT]),
                       "s", "sagemaker-training", median(times[SAGEMAKER]), load=at_load))
    else:
        out.append(Row("agent", "start -> first line (tfbuild-agent)", median(times[AGENT]),
                       "s", "sagemaker-training: not run", None, note=why_not[:200],
                       load=at_load))
    return out
