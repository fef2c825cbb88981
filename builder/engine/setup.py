"""Make sure a Docker engine answers: install Debian's docker.io and start dockerd
when none does. Idempotent; used by `tfbuild engine`, the quickstart and the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import docker
import docker.errors

from .. import console
from ..errors import EngineError

DOCKERD_LOG = Path("/var/log/tfbuild-dockerd.log")
START_TIMEOUT = 60.0


def engine_client(timeout: int = 600) -> docker.DockerClient:
    """A client for the engine named by DOCKER_HOST (or the local socket)."""
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except (docker.errors.DockerException, OSError) as e:
        raise EngineError(
            f"no Docker engine answers ({e.__class__.__name__}: {e}); "
            "run `tfbuild engine` (as root it installs and starts one) or set DOCKER_HOST"
        ) from None


def engine_answers() -> bool:
    try:
        docker.from_env(timeout=5).ping()
        return True
    except (docker.errors.DockerException, OSError):
        return False


def ensure_engine(start_timeout: float = START_TIMEOUT) -> str:
    """Return the engine's version, installing and starting dockerd if needed."""
    if engine_answers():
        return docker.from_env().version()["Version"]
    if os.geteuid() != 0:
        raise EngineError(
            "no Docker engine answers and this user is not root, so tfbuild cannot start one. "
            "Start dockerd (or Docker Desktop), add yourself to the `docker` group, "
            "or point DOCKER_HOST at an engine."
        )
    if not shutil.which("dockerd"):
        console.step("installing Debian's docker.io (no dockerd on this machine)")
        _apt_install(["docker.io"])
    console.step(f"starting dockerd (log: {DOCKERD_LOG})")
    log = DOCKERD_LOG.open("ab")
    subprocess.Popen(
        ["dockerd"], stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + start_timeout
    while time.monotonic() < deadline:
        if engine_answers():
            version = docker.from_env().version()["Version"]
            console.note(f"Docker engine {version} is up")
            return version
        time.sleep(0.5)
    tail = DOCKERD_LOG.read_text(errors="replace")[-2000:]
    raise EngineError(
        f"dockerd did not answer within {start_timeout:.0f} s on /var/run/docker.sock. "
        f"Last lines of {DOCKERD_LOG}:\n{tail}"
    )


def _apt_install(packages: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        result = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise EngineError(
                f"`{' '.join(cmd)}` failed (exit {result.returncode}):\n{result.stderr[-2000:]}"
            )


def ensure_host_tool(tool: str, package: str) -> None:
    """Install a Debian package providing `tool` when it is missing (root only)."""
    if shutil.which(tool):
        return
    if os.geteuid() != 0:
        raise EngineError(f"`{tool}` is missing; install the Debian package `{package}`")
    console.step(f"installing {package} (for {tool})")
    _apt_install([package])


def image_attrs(client: docker.DockerClient, image: str) -> dict:
    """The engine's attributes of `image`, or EngineError saying how to get it."""
    try:
        return client.images.get(image).attrs
    except docker.errors.ImageNotFound:
        raise EngineError(
            f"image {image} is not on this engine; build it with `tfbuild image` "
            "or pull it first (`docker pull IMAGE`)"
        ) from None
