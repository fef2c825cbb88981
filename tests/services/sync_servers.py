"""Real object stores on 127.0.0.1 for the upload tests (used by conftest.py).

- S3: moto's standalone server (`moto_server`, installed with the test extra).
- Azure Blob: Azurite, installed with npm into .tfbuild/node on first use.
- file://: a folder under tmp_path.

Each S3/Azure target sits behind a TcpProxy that the test can take down and bring back:
the store's data survives (an outage, not a wipe) and clients see refused connections.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NODE_DIR = REPO / ".tfbuild" / "node"
AZURITE_VERSION = "3.37.0"
# Azurite's documented development account (public, not a secret).
DEVSTORE_ACCOUNT = "devstoreaccount1"
DEVSTORE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:g}s")


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def azurite_bin() -> Path:
    """azurite-blob from .tfbuild/node, installing the pinned version once (idempotent,
    safe against parallel sessions through a lock file)."""
    exe = NODE_DIR / "node_modules" / ".bin" / "azurite-blob"
    manifest = NODE_DIR / "node_modules" / "azurite" / "package.json"

    def installed() -> bool:
        try:
            return exe.exists() and json.loads(manifest.read_text())["version"] == AZURITE_VERSION
        except (OSError, ValueError, KeyError):
            return False

    if installed():
        return exe
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("Azurite is needed for the Azure tests: install Node.js and npm "
                    "(apt-get install nodejs npm), then run the tests again")
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    with open(NODE_DIR / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not installed():
            env = {**os.environ}
            env.setdefault("NODE_EXTRA_CA_CERTS", "/etc/ssl/certs/ca-certificates.crt")
            done = subprocess.run(
                [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix",
                 str(NODE_DIR), f"azurite@{AZURITE_VERSION}"],
                env=env, capture_output=True, text=True, timeout=600,
            )
            if done.returncode != 0 or not installed():
                pytest.fail(f"npm install azurite@{AZURITE_VERSION} failed:\n{done.stderr[-2000:]}")
    return exe


class TcpProxy:
    """Forwards 127.0.0.1:port to a server; down() refuses and cuts every connection."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def up(self) -> None:
        lst = socket.socket()
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind(("127.0.0.1", self.port))
        lst.listen(64)
        lst.settimeout(0.2)
        self._listener = lst
        threading.Thread(target=self._accept, args=(lst,), daemon=True).start()

    def down(self) -> None:
        lst, self._listener = self._listener, None
        if lst is not None:
            lst.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def _accept(self, lst: socket.socket) -> None:
        while self._listener is lst:
            try:
                client, _ = lst.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), 5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)  # a big block may take the server a while to answer
            with self._lock:
                self._conns.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 20):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)


def azure_connection_string(port: int) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={DEVSTORE_ACCOUNT};"
            f"AccountKey={DEVSTORE_KEY};BlobEndpoint=http://127.0.0.1:{port}/{DEVSTORE_ACCOUNT};")


@dataclass
class StoreTarget:
    """A destination URI with the environment the agent would get, plus a direct view."""

    name: str
    uri: str
    env: dict[str, str]
    reader_env: dict[str, str]
    """Same store, bypassing the proxy: for checking what arrived."""
    proxy: TcpProxy | None = None


def s3_target(moto_port: int) -> StoreTarget:
    import boto3

    bucket = f"tfb-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=f"http://127.0.0.1:{moto_port}", region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing"
                 ).create_bucket(Bucket=bucket)
    proxy = TcpProxy(moto_port)
    proxy.up()
    return StoreTarget(
        "s3", f"s3://{bucket}/runs",
        {**S3_ENV, "TFBUILD_S3_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"},
        {**S3_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}"},
        proxy,
    )


def azure_target(azurite_port: int) -> StoreTarget:
    from azure.storage.blob import BlobServiceClient

    container = f"tfb-{uuid.uuid4().hex[:12]}"
    BlobServiceClient.from_connection_string(azure_connection_string(azurite_port)
                                             ).create_container(container)
    proxy = TcpProxy(azurite_port)
    proxy.up()
    return StoreTarget(
        "azure", f"az://{container}/runs",
        {"AZURE_STORAGE_CONNECTION_STRING": azure_connection_string(proxy.port)},
        {"AZURE_STORAGE_CONNECTION_STRING": azure_connection_string(azurite_port)},
        proxy,
    )


