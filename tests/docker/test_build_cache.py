"""Cache reuse: a rebuild with no change is all cache; a second checkout of the same
project gives the same image; editing only train.py rebuilds from the source layer on."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
from imagetools import run_output, write_project

from tfbuild.image.build import prepare
from tfbuild.spec import load_spec

TAG = "tfbuild-test/cache"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
TRAIN_PY = "print('cache test, version 1')\n"
LAYER_STEPS = ("RUN", "COPY", "ADD")


def instructions(dockerfile: str) -> list[str]:
    """The Dockerfile's instructions in build order (continuations joined)."""
    out, current = [], ""
    for line in dockerfile.splitlines():
        if not current and (not line.strip() or line.startswith("#")):
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            out.append(current.strip())
            current = ""
    return out


def final_stage(steps: list[str]) -> list[str]:
    last_from = max(i for i, s in enumerate(steps) if s.startswith("FROM "))
    return steps[last_from + 1 :]


def layers(client, tag: str) -> list[str]:
    return client.images.get(tag).attrs["RootFS"]["Layers"]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    return write_project(root / "a" / "proj", TRAIN_PY, **{"data.txt": "1 2 3\n"})


def test_cache_reuse_and_deterministic_context(build, docker_client, checkout, tmp_path):
    overrides = {"entry_script": "train.py", "script_params": ["--epochs", "1"]}
    tag_a, first = build(checkout, f"{TAG}:a", **overrides)
    steps = instructions(
        prepare(load_spec(checkout, {**overrides, "trust_host_ca": True})).dockerfile
    )
    froms = sum(s.startswith("FROM ") for s in steps)
    assert first.steps == len(steps)

    # The same inputs again: every step but the FROMs says "Using cache".
    _, again = build(checkout, f"{TAG}:a", **overrides)
    assert again.cached_steps == again.steps - froms
    assert again.image_id == first.image_id

    # A second checkout elsewhere, with other mtimes and modes: the same image.
    other = tmp_path / "b" / "proj"
    shutil.copytree(checkout, other)
    for path in other.iterdir():
        os.utime(path, (1_000_000, 1_000_000))
        path.chmod(0o600)
    _, copied = build(other, f"{TAG}:b", **overrides)
    assert copied.cached_steps == copied.steps - froms
    assert layers(docker_client, f"{TAG}:b") == layers(docker_client, tag_a)
    assert copied.image_id == first.image_id

    # Edit train.py only: everything before the source layer comes from the cache.
    before = layers(docker_client, tag_a)
    # A fresh edit every run: an edit seen before would be in the engine's cache.
    edit = f"version 2 {uuid.uuid4().hex}"
    (checkout / "train.py").write_text(TRAIN_PY.replace("version 1", edit))
    _, edited = build(checkout, f"{TAG}:edited", **overrides)
    after = layers(docker_client, f"{TAG}:edited")
    source_step = next(i for i, s in enumerate(steps) if s.startswith("COPY src/"))
    assert edited.cached_steps == sum(not s.startswith("FROM ") for s in steps[:source_step])

    # Layers: identical up to the source layer, which differs; none added or lost.
    tail = final_stage(steps)
    from_source = tail[next(i for i, s in enumerate(tail) if s.startswith("COPY src/")) :]
    source_layer = len(before) - sum(s.startswith(LAYER_STEPS) for s in from_source)
    assert len(after) == len(before)
    assert after[:source_layer] == before[:source_layer]
    assert after[source_layer] != before[source_layer]
    assert edit in run_output(f"{TAG}:edited", "/app/train.py", entrypoint="cat")
