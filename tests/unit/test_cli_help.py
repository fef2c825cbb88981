"""Both commands list their commands (what a new user types first)."""

import subprocess
import sys

from click.testing import CliRunner

from tfbuild.cli import cli


def test_tfbuild_help_lists_every_command():
    out = CliRunner().invoke(cli, ["--help"]).output
    for command in ("engine", "base", "image", "dockerfile", "inspect", "run", "runs", "versions"):
        assert f"  {command} " in out


def test_agent_help_lists_its_commands():
    out = subprocess.run([sys.executable, "-m", "tfbuild_agent", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for command in ("run", "describe", "mpi-rsh"):
        assert command in out


def test_versions_shows_the_matrix_with_horovod_support():
    out = CliRunner().invoke(cli, ["versions"]).output
    assert "2.15.1" in out and "0.28.1" in out and "(default)" in out
