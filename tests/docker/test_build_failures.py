"""A failing build says which step failed with the tail of its log, and pushes
nothing; a built image carries its spec, which `tfbuild inspect` shows."""

from __future__ import annotations

import json

import docker.errors
import pytest
from click.testing import CliRunner
from helpers import build_project
from imagetools import write_project

from tfbuild.cli import cli
from tfbuild.errors import BuildError

TRAIN = "print('hello')\n"


def test_a_failing_step_is_named_with_its_log_and_nothing_is_pushed(base_image, docker_client,
                                                                     tmp_path):
    project = write_project(tmp_path / "bad", TRAIN)
    tag = "localhost:1/tfbuild-test/never-pushed:1"  # nothing listens on port 1
    with pytest.raises(BuildError) as caught:
        build_project(project, tag, entry_script="train.py",
                      pip_packages=["tfbuild-no-such-package-xyz==1.0"])
    err = caught.value
    assert "pip install" in err.step and "tfbuild-no-such-package-xyz" in err.step
    assert "No matching distribution" in err.log_tail or "Could not find" in err.log_tail
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(tag)


def test_inspect_shows_the_recorded_spec(base_image, tmp_path):
    project = write_project(tmp_path / "ok", TRAIN)
    tag = build_project(project, "tfbuild-test/inspect:1", entry_script="train.py",
                        script_params=["--epochs", "2"], labels={"team": "vision"})
    result = CliRunner().invoke(cli, ["inspect", tag])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["spec"]["entry_script"] == "train.py"
    assert shown["spec"]["script_params"] == ["--epochs", "2"]
    assert shown["io.tfbuild.source-digest"].startswith("sha256:")
    assert shown["team"] == "vision"
