"""Docker-test fixtures: builds that return the engine's BuildResult, and real
registries (Debian's `docker-registry`) on 127.0.0.1, plain and with htpasswd."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
REGISTRY_USER, REGISTRY_PASSWORD = "tfbuild", "registry-pass-8f2c"


@pytest.fixture(scope="session")
def build(base_image) -> Callable:
    """build(source, tag, **overrides) -> (tag, BuildResult): a real build, quiet."""
    from tfbuild.image import build as build_image
    from tfbuild.spec import load_spec

    def run(source: Path, tag: str, **overrides):
        if HOST_CA.exists():
            overrides.setdefault("trust_host_ca", True)
        return build_image(load_spec(source, overrides=overrides), tag=tag, quiet=True)

    return run


def write_project(root: Path, train_py: str, **files: str) -> Path:
    """A minimal training project: train.py plus any other files."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.py").write_text(train_py)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


# A script that prints its arguments as JSON: what the image's user story checks.
ARGV_SCRIPT = """\
import json, sys
print("ARGV " + json.dumps(sys.argv[1:]), flush=True)
"""


@dataclass
class Registry:
    host: str
    """host:port as used in image tags (localhost:PORT)."""
    root: Path
    process: subprocess.Popen

    def catalog(self, auth: tuple[str, str] | None = None) -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/v2/_catalog")
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    @property
    def port(self) -> int:
        return int(self.host.rsplit(":", 1)[1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_registry(root: Path, htpasswd: Path | None) -> Iterator[Registry]:
    if not shutil.which("docker-registry"):
        pytest.skip("Debian's docker-registry is not installed (apt-get install docker-registry)")
    port = _free_port()
    auth = (
        f"auth:\n  htpasswd:\n    realm: tfbuild-test\n    path: {htpasswd}\n" if htpasswd else ""
    )
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        f"{auth}"
    )
    log = (root / "registry.log").open("wb")
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2)
            break
        except urllib.error.HTTPError as e:
            if e.code == 401:  # up, and asking for credentials
                break
            raise
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"docker-registry did not start:\n{(root / 'registry.log').read_text()}")
            time.sleep(0.2)
    try:
        yield Registry(f"localhost:{port}", root, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Iterator[Registry]:
    yield from _start_registry(tmp_path_factory.mktemp("registry"), None)


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
    yield from _start_registry(root, htpasswd)


def remove_image(client, ref: str) -> None:
    import docker.errors

    try:
        client.images.remove(ref, noprune=False)
    except docker.errors.ImageNotFound:
        pass
