"""Build, tag and push through the Docker Engine API (the `docker` SDK), with
progress on stderr. The classic builder is what the SDK drives; the rendered
Dockerfiles need nothing else."""

from __future__ import annotations

import io
import re
import time
from collections import deque
from dataclasses import dataclass

import docker
import docker.auth
import docker.errors
import docker.utils
from rich.status import Status
from rich.text import Text

from .. import console
from ..errors import BuildError, RegistryError

STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
TAIL_LINES = 40


@dataclass
class BuildResult:
    image_id: str
    steps: int
    cached_steps: int
    seconds: float


def build_image(
    client: docker.DockerClient,
    context_tar: bytes,
    tag: str,
    *,
    quiet: bool = False,
    nocache: bool = False,
    buildargs: dict[str, str] | None = None,
) -> BuildResult:
    """Build the context; raise BuildError naming the failing step and its log tail."""
    started = time.monotonic()
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    step, total, cached = "", 0, 0
    image_id = ""
    status = None if quiet or not console.is_tty() else Status("", console=console.err)
    try:
        if status:
            status.start()
        stream = client.api.build(
            fileobj=io.BytesIO(context_tar),
            custom_context=True,
            tag=tag,
            rm=True,
            forcerm=True,
            decode=True,
            pull=False,
            nocache=nocache,
            buildargs=buildargs or {},
        )
        for chunk in stream:
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message", chunk["error"])
                raise BuildError(
                    f"build failed at {step or 'the start'}: {detail.strip()}",
                    step=step,
                    log_tail="\n".join(tail),
                )
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            for line in chunk.get("stream", "").splitlines():
                m = STEP_RE.match(line)
                if m:
                    step, total = line, int(m.group(2))
                    tail.clear()
                    if not quiet:
                        console.err.print(Text(line, style="bold"), highlight=False)
                    continue
                if "Using cache" in line:
                    cached += 1
                    if not quiet:
                        console.err.print("  [dim]cached[/]")
                    continue
                if line.strip():
                    tail.append(line)
                    if status:
                        status.update(Text(line.strip()[:120], style="dim"))
                    elif not quiet:
                        console.err.print(f"  {line}", markup=False, highlight=False)
    except docker.errors.APIError as e:
        raise BuildError(f"the engine refused the build: {e.explanation or e}") from None
    finally:
        if status:
            status.stop()
    if not image_id:
        image_id = client.images.get(tag).id
    return BuildResult(image_id, total, cached, time.monotonic() - started)


def push_image(client: docker.DockerClient, tag: str, *, quiet: bool = False) -> str:
    """Push `tag` with credentials from ~/.docker/config.json (and its helpers).
    Returns the pushed digest."""
    repository, version = docker.utils.parse_repository_tag(tag)
    version = version or "latest"
    registry = docker.auth.resolve_repository_name(repository)[0]
    progress: dict[str, str] = {}
    digest = ""
    try:
        # Re-read ~/.docker/config.json ($DOCKER_CONFIG): a `docker login` made while
        # a long build ran must count.
        client.api.reload_config()
        for chunk in client.api.push(repository, version, stream=True, decode=True):
            if "error" in chunk:
                raise _registry_error(chunk["error"], registry)
            if "aux" in chunk and "Digest" in chunk["aux"]:
                digest = chunk["aux"]["Digest"]
            layer, state = chunk.get("id"), chunk.get("status", "")
            if layer and state and not quiet and progress.get(layer) != state:
                progress[layer] = state
                if state in ("Pushed", "Layer already exists", "Mounted from"):
                    console.note(f"{layer}: {state}")
    except docker.errors.APIError as e:
        raise _registry_error(str(e.explanation or e), registry) from None
    return digest


def _registry_error(message: str, registry: str) -> RegistryError:
    low = message.lower()
    if any(s in low for s in ("unauthorized", "authentication required", "no basic auth")):
        return RegistryError(
            f"{registry} refused the credentials: {message.strip()}. "
            f"Run `docker login {registry}` (tfbuild reads ~/.docker/config.json and its "
            "credential helpers)."
        )
    if any(s in low for s in ("connection refused", "no such host", "i/o timeout", "dial tcp")):
        return RegistryError(
            f"registry {registry} is unreachable: {message.strip()}. "
            "Check the address and that the registry is running."
        )
    return RegistryError(f"push to {registry} failed: {message.strip()}")
