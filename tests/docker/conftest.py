"""Docker-test fixtures: builds that return the engine's BuildResult, and real
registries (Debian's `docker-registry`) on 127.0.0.1, plain and with htpasswd."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from registries import REGISTRY_PASSWORD, REGISTRY_USER, Registry, start_registry

HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


@pytest.fixture(scope="session")
def build(base_image) -> Callable:
    """build(source, tag, **overrides) -> (tag, BuildResult): a real build, quiet."""
    from tfbuild.image.build import build as build_image
    from tfbuild.spec import load_spec

    def run(source: Path, tag: str, **overrides):
        if HOST_CA.exists():
            overrides.setdefault("trust_host_ca", True)
        return build_image(load_spec(source, overrides=overrides), tag=tag, quiet=True)

    return run


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Iterator[Registry]:
    yield from start_registry(tmp_path_factory.mktemp("registry"), None)


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory) -> Iterator[Registry]:
    if not shutil.which("htpasswd"):
        pytest.skip("htpasswd is not installed (apt-get install apache2-utils)")
    root = tmp_path_factory.mktemp("auth-registry")
    # The registry accepts bcrypt entries only.
    line = subprocess.run(
        ["htpasswd", "-Bbn", REGISTRY_USER, REGISTRY_PASSWORD],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    htpasswd = root / "htpasswd"
    htpasswd.write_text(line.strip() + "\n")
    yield from start_registry(root, htpasswd)
