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


def test_a_positional_right_after_a_k_equals_v_flag_is_not_its_value():
    """`--lr=0.1 data.csv`: data.csv is the script's own argument, so replacing --lr at
    run time must keep it (and keep leading positionals before any flag)."""
    baked = ["train", "--lr=0.1", "data.csv", "--epochs", "3", "--tag=a", "b", "c"]
    assert merge_script_params(baked, ["--lr=0.5"]) == [
        "train", "data.csv", "--epochs", "3", "--tag=a", "b", "c", "--lr=0.5"]
    assert merge_script_params(baked, ["--tag", "z"]) == [
        "train", "--lr=0.1", "data.csv", "--epochs", "3", "b", "c", "--tag", "z"]
    assert merge_script_params(baked, ["--epochs=9"]) == [
        "train", "--lr=0.1", "data.csv", "--tag=a", "b", "c", "--epochs=9"]


def test_values_after_a_plain_flag_that_follows_a_k_equals_v_flag_stay_with_it():
    baked = ["--seed=1", "--layers", "64", "32", "--dropout=0.5", "--name", "run", "x"]
    assert merge_script_params(baked, ["--layers", "8"]) == [
        "--seed=1", "--dropout=0.5", "--name", "run", "x", "--layers", "8"]
    assert merge_script_params(baked, ["--name", "y"]) == [
        "--seed=1", "--layers", "64", "32", "--dropout=0.5", "--name", "y"]


def test_a_lone_dash_is_a_value_and_numbers_in_e_notation_are_values():
    baked = ["--in", "-", "--", "--raw", "1"]
    assert merge_script_params(baked, ["--in", "f.txt"]) == ["--", "--raw", "1", "--in", "f.txt"]
    assert merge_script_params(["--x", "1e-3", "--y", "-2.5e+4"], ["--x", "0"]) == [
        "--y", "-2.5e+4", "--x", "0"]


def test_a_leading_k_equals_v_flag_and_a_flag_whose_value_has_an_equals_sign():
    assert merge_script_params(["--lr=0.1", "data.csv"], ["--lr=1"]) == ["data.csv", "--lr=1"]
    # `--define k=v extra`: both are --define's values, replaced together.
    baked = ["--define", "k=v", "extra", "--epochs", "2"]
    assert merge_script_params(baked, ["--define", "z=1"]) == [
        "--epochs", "2", "--define", "z=1"]
