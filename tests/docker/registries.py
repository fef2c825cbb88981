"""Real registries for the docker tests: Debian's `docker-registry` on 127.0.0.1,
optionally behind htpasswd (bcrypt entries from `htpasswd -Bbn`)."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REGISTRY_USER, REGISTRY_PASSWORD = "tfbuild", "registry-pass-8f2c"


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_registry(root: Path, htpasswd: Path | None) -> Iterator[Registry]:
    if not shutil.which("docker-registry"):
        pytest.skip("Debian's docker-registry is not installed (apt-get install docker-registry)")
    port = free_port()
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
                pytest.fail(
                    f"docker-registry did not start:\n{(root / 'registry.log').read_text()}"
                )
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
