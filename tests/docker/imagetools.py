"""Helpers for the docker tests: tiny projects and image plumbing."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import docker.errors


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


def remove_image(client, ref: str) -> None:
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(ref, noprune=False)


def run_output(image: str, *args: str, entrypoint: str | None = None) -> str:
    """stdout of `docker run --rm` (the CLI attaches before the start, so no output is
    lost; reading the log of an exited container through the SDK can miss the tail)."""
    cmd = ["docker", "run", "--rm"]
    cmd += ["--entrypoint", entrypoint] if entrypoint else []
    done = subprocess.run(
        [*cmd, image, *args], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"docker run {image} failed:\n{done.stderr[-2000:]}"
    return done.stdout
