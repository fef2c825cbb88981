"""conda packages really installed with py-rattler: a hand-made package in a local
file channel goes into an image and runs there; a package needing Python is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conda_channel import index_channel, write_package
from imagetools import run_output, write_project

from tfbuild.errors import BuildError

# Finds its data file relative to itself, so it checks that bin/ and share/ were
# both linked into the same prefix.
HELLO = b"""#!/bin/sh
prefix="$(dirname "$(dirname "$(readlink -f "$0")")")"
printf 'hello-conda %s\\n' "$(cat "$prefix/share/hello-conda/greeting.txt")"
"""
TAG = "tfbuild-test/conda:latest"


@pytest.fixture(scope="module")
def channel(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("channel")
    write_package(
        root,
        "hello-conda",
        "1.2.0",
        {
            "bin/hello-conda": (HELLO, 0o755),
            "share/hello-conda/greeting.txt": (b"from a local channel\n", 0o644),
        },
    )
    write_package(
        root,
        "pyhello",
        "1.0.0",
        {"site-packages/pyhello/__init__.py": (b"", 0o644)},
        depends=("python >=3.8",),
        noarch="python",
    )
    write_package(
        root, "python", "3.11.9", {"bin/python3.11": (b"", 0o755)}, noarch="", subdir="linux-64"
    )
    index_channel(root)
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return write_project(tmp_path_factory.mktemp("conda") / "proj", "print('train')\n")


def test_conda_package_from_a_local_channel_runs_in_the_image(build, channel, project):
    tag, _ = build(
        project,
        TAG,
        entry_script="train.py",
        conda_packages=["hello-conda >=1.2"],
        conda_channels=[str(channel)],
    )
    assert run_output(tag, entrypoint="hello-conda") == "hello-conda from a local channel\n"
    # Installed as a conda package (with its record), nothing else: no conda Python.
    script = "ls /opt/tfbuild/layers/conda/conda-meta; command -v hello-conda"
    listing = run_output(tag, "-c", script, entrypoint="sh")
    assert listing.split() == [
        "hello-conda-1.2.0-0.json",
        "history",
        "/opt/tfbuild/layers/conda/bin/hello-conda",
    ]
    meta = "/opt/tfbuild/layers/conda/conda-meta/hello-conda-1.2.0-0.json"
    record = json.loads(run_output(tag, meta, entrypoint="cat"))
    assert record["noarch"] == "generic"
    assert record["version"] == "1.2.0"


def test_a_package_needing_python_is_refused_with_the_reason(build, channel, project):
    with pytest.raises(BuildError) as e:
        build(
            project,
            "tfbuild-test/conda-python:latest",
            entry_script="train.py",
            conda_packages=["pyhello"],
            conda_channels=[str(channel)],
        )
    assert "conda package(s) pyhello need Python" in e.value.log_tail
    assert "pip_packages" in e.value.log_tail


def test_an_environment_file_installs_its_conda_and_pip_packages(build, channel, tmp_path):
    """conda_dependencies_file: the channel and package of environment.yml go into the
    conda layer, its pip section into the user layer."""
    project = write_project(tmp_path / "envproj", "print('train')\n", **{
        "environment.yml": (
            f"name: envproj\nchannels: [{channel}, nodefaults]\n"
            "dependencies:\n  - hello-conda 1.2.*\n  - pip\n  - pip:\n      - tomli-w==1.0.0\n"
        ),
    })
    tag, _ = build(project, "tfbuild-test/conda-envfile:latest", entry_script="train.py",
                   conda_dependencies_file=str(project / "environment.yml"))
    assert run_output(tag, entrypoint="hello-conda") == "hello-conda from a local channel\n"
    version = run_output(tag, "-c", "import importlib.metadata as m; print(m.version('tomli-w'))",
                         entrypoint="/opt/tfbuild/venv/bin/python")
    assert version.strip() == "1.0.0"
