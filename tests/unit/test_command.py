import pytest

from tfbuild_agent.errors import ConfigError
from tfbuild_agent.launch.command import entry_command, merge_script_params


def test_py_script_runs_unbuffered_under_the_image_python():
    assert entry_command("train.py", "/opt/py", ["--a", "1"]) == [
        "/opt/py",
        "-u",
        "train.py",
        "--a",
        "1",
    ]


def test_module_and_shell_entry_points():
    assert entry_command("-m pkg.train", "/py", []) == ["/py", "-u", "-m", "pkg.train"]
    assert entry_command("run.sh", "/py", ["x"]) == ["/bin/bash", "run.sh", "x"]


@pytest.mark.parametrize("bad", ["-m ", "train.txt", "train"])
def test_unknown_entry_kinds_are_refused_with_the_fix(bad):
    with pytest.raises(ConfigError, match=r"py file|module"):
        entry_command(bad, "/py", [])


def test_run_args_are_appended_and_win_over_baked_ones():
    baked = ["--batch-size", "64", "--lr", "0.1", "--verbose"]
    assert merge_script_params(baked, ["--batch-size", "50"]) == [
        "--lr",
        "0.1",
        "--verbose",
        "--batch-size",
        "50",
    ]


def test_equals_form_and_negative_numbers():
    baked = ["--lr=0.1", "--shift", "-3", "--epochs", "2"]
    assert merge_script_params(baked, ["--lr", "0.2"]) == [
        "--shift",
        "-3",
        "--epochs",
        "2",
        "--lr",
        "0.2",
    ]
    assert merge_script_params(baked, ["--shift=-1"]) == ["--lr=0.1", "--epochs", "2", "--shift=-1"]


def test_no_run_args_keeps_baked_defaults():
    assert merge_script_params(["data", "--x", "1"], []) == ["data", "--x", "1"]
