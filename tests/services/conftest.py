"""Fixtures: real object stores on 127.0.0.1 (see sync_servers.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sync_servers import (
    StoreTarget,
    azure_target,
    azurite_bin,
    free_port,
    s3_target,
    stop_process,
    wait_port,
)


@pytest.fixture(scope="session")
def moto_port() -> Iterator[int]:
    exe = Path(sys.executable).parent / "moto_server"
    port = free_port()
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc, "moto_server")
        yield port
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def azurite_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    exe = azurite_bin()
    port = free_port()
    location = tmp_path_factory.mktemp("azurite")
    proc = subprocess.Popen(
        [str(exe), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location",
         str(location), "--silent", "--skipApiVersionCheck"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc, "azurite-blob")
        yield port
    finally:
        stop_process(proc)


def make_target(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> StoreTarget:
    if name == "file":
        uri = f"file://{tmp_path / 'store'}"
        return StoreTarget("file", uri, {}, {})
    if name == "s3":
        return s3_target(request.getfixturevalue("moto_port"))
    return azure_target(request.getfixturevalue("azurite_port"))


@pytest.fixture(params=["file", "s3", "azure"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreTarget]:
    target = make_target(request.param, request, tmp_path)
    yield target
    if target.proxy is not None:
        target.proxy.down()


@pytest.fixture(params=["s3", "azure"])
def remote_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreTarget]:
    """Object stores only: these can go down (through their proxy) and come back."""
    target = make_target(request.param, request, tmp_path)
    yield target
    if target.proxy is not None:
        target.proxy.down()
