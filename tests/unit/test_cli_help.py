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


def test_versions_json_lists_every_release():
    import json

    rows = json.loads(CliRunner().invoke(cli, ["versions", "--json"]).output)
    by_version = {r["tensorflow"]: r for r in rows}
    assert by_version["2.15.1"]["horovod"] == "0.28.1"
    assert sum(r["default"] for r in rows) == 1


def test_messages_print_square_brackets_intact(capsys):
    from tfbuild import console

    console.fail("install tfbuild[s3] to upload to s3://")
    console.warn("peer [fe80::1]:2222 is slow")
    console.step("[bold]not markup[/]")
    err = capsys.readouterr().err
    assert "tfbuild[s3]" in err and "[fe80::1]:2222" in err and "[bold]not markup[/]" in err


def test_run_help_names_the_double_dash_and_every_flag():
    out = CliRunner().invoke(cli, ["run", "--help"]).output
    for flag in ("--gpus", "--shm-size", "--volume", "--env-file", "--cpus", "--memory",
                 "--stop-timeout", "--grace", "--detach", "--no-upload", "--print", "`--`"):
        assert flag in out, flag


def test_runs_has_wait_and_cancel():
    out = CliRunner().invoke(cli, ["runs", "--help"]).output
    assert "wait" in out and "cancel" in out
