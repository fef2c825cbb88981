"""No credential in any layer: a build whose pip index URL carries a secret (really
used: PyPI accepts and ignores basic auth) is saved with `docker save`, and every
layer, the image config and `docker history` are scanned for the secret."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from imagetools import write_project

from tfbuild.image.build import prepare
from tfbuild.spec import load_spec

# Fixed, so a rerun reuses the cached build stages (the pip.conf is part of their key).
SECRET = "tfbsecret-5f0c9a7e41d2b863"
CANARY = "tfbcanary-8d1e6b2a0c47f953"  # in train.py: proves the scan reads the layers
INDEX = "https://tfbuild:${TFBUILD_TEST_INDEX_TOKEN}@pypi.org/simple"
TAG = "tfbuild-test/secrets:latest"


class Scanner:
    """Finds needles in a byte stream fed in chunks (a match may span two chunks)."""

    def __init__(self, *needles: bytes) -> None:
        self.needles = needles
        self.keep = max(len(n) for n in needles) - 1
        self.found: set[bytes] = set()
        self.tail = b""

    def feed(self, chunk: bytes) -> None:
        data = self.tail + chunk
        self.found.update(n for n in self.needles if n in data)
        self.tail = data[-self.keep :]


class _Stream:
    """A file-like view of `docker save`'s chunk generator, for tarfile's stream mode."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.buf = chunks, b""

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = next(self.chunks, b"")
            if not chunk:
                break
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def scan_saved_image(image) -> dict[str, set[bytes]]:
    """Member name -> needles found in it, for every file of `docker save`'s tar."""
    hits: dict[str, set[bytes]] = {}
    with tarfile.open(fileobj=_Stream(iter(image.save(chunk_size=1 << 20))), mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            scanner = Scanner(SECRET.encode(), CANARY.encode())
            f = tar.extractfile(member)
            assert f is not None
            while chunk := f.read(1 << 20):
                scanner.feed(chunk)
            hits[member.name] = scanner.found
    return hits


@pytest.fixture(scope="module")
def secret_build(build, tmp_path_factory) -> tuple[str, Path]:
    project = write_project(tmp_path_factory.mktemp("secrets") / "proj", f"print({CANARY!r})\n")
    mp = pytest.MonkeyPatch()
    mp.setenv("TFBUILD_TEST_INDEX_TOKEN", SECRET)
    try:
        tag, _ = build(project, TAG, entry_script="train.py", pip_index_url=INDEX)
    finally:
        mp.undo()
    return tag, project


def test_the_secret_reaches_the_build_stages(secret_build, monkeypatch):
    _, project = secret_build
    monkeypatch.setenv("TFBUILD_TEST_INDEX_TOKEN", SECRET)
    prepared = prepare(load_spec(project, {"entry_script": "train.py", "pip_index_url": INDEX}))
    conf = prepared.context.files["tfbuild/pip/pip.conf"]
    assert isinstance(conf, bytes)
    assert f"index-url = https://tfbuild:{SECRET}@pypi.org/simple" in conf.decode()
    assert "PIP_CONFIG_FILE=/tmp/tfbuild-pip/pip.conf" in prepared.dockerfile
    assert SECRET not in prepared.dockerfile


def test_no_layer_config_or_history_holds_the_secret(secret_build, docker_client):
    tag, _ = secret_build
    image = docker_client.images.get(tag)
    hits = scan_saved_image(image)

    layers = [name for name in hits if name.endswith("layer.tar")]
    assert len(layers) == len(image.attrs["RootFS"]["Layers"]), sorted(hits)
    configs = [name for name in hits if name.endswith(".json") and "/" not in name]
    assert any(name.removesuffix(".json") in image.id for name in configs), sorted(hits)
    assert any(CANARY.encode() in found for found in hits.values()), "the scan saw no layer"
    leaked = sorted(name for name, found in hits.items() if SECRET.encode() in found)
    assert leaked == [], f"the secret is in {leaked}"

    inspect = json.dumps(image.attrs)
    assert SECRET not in inspect
    history = json.dumps(image.history())
    assert SECRET not in history
    # The redacted index is recorded (so the image says which index built it).
    assert "https://***@pypi.org/simple" in image.labels["io.tfbuild.spec"]
