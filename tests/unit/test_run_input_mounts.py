"""`tfbuild run --input NAME=URI`: what every container gets (pure parts, and --print)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfbuild.errors import LaunchError
from tfbuild.run.inputs import host_cache_dir, parse_input, run_inputs
from tfbuild.run.launch import new_job
from tfbuild.run.store_access import Mount

HOME = Path("/home/u")
S3_IMAGE = {"upload_extras": ["s3"], "inputs": []}


def test_a_host_folder_is_mounted_read_only_and_the_agent_gets_its_container_uri(tmp_path):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "vocab.txt").write_text("v")
    got = run_inputs(["data=./mnist", f"vocab=file://{tmp_path}/vocab.txt"], S3_IMAGE, {},
                     HOME, tmp_path)
    assert got.env == {"TFBUILD_INPUTS": "data=file:///mnt/tfbuild-inputs/data "
                       "vocab=file:///mnt/tfbuild-inputs/vocab/vocab.txt"}
    assert Mount(str(tmp_path / "mnist"), "/mnt/tfbuild-inputs/data", True) in got.mounts
    assert Mount(str(tmp_path / "vocab.txt"), "/mnt/tfbuild-inputs/vocab/vocab.txt",
                 True) in got.mounts
    assert Mount(str(HOME / ".cache/tfbuild/inputs"), "/var/cache/tfbuild/inputs") in got.mounts


def test_a_store_input_forwards_the_hosts_credentials_by_name(tmp_path):
    got = run_inputs(["data=s3://b/train"], S3_IMAGE,
                     {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "OTHER": "x"},
                     tmp_path, tmp_path)
    assert got.env == {"TFBUILD_INPUTS": "data=s3://b/train"}
    assert got.host_env == {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}


def test_baked_inputs_get_credentials_and_their_host_folder_without_any_flag(tmp_path):
    recorded = {"upload_extras": ["azure"], "inputs": [
        {"name": "d", "uri": f"file://{tmp_path}", "mode": "mount", "arg": True},
        {"name": "l", "uri": "az://c/labels", "mode": "download", "arg": False}]}
    got = run_inputs([], recorded, {"AZURE_STORAGE_CONNECTION_STRING": "cs"}, HOME, tmp_path)
    assert got.env == {}
    assert Mount(str(tmp_path), str(tmp_path), True) in got.mounts
    assert got.host_env == {"AZURE_STORAGE_CONNECTION_STRING": "cs"}


def test_no_inputs_no_mounts():
    assert run_inputs([], {"inputs": []}, {}, HOME, HOME) == run_inputs([], {}, {}, HOME, HOME)
    assert run_inputs([], {}, {}, HOME, HOME).mounts == ()


@pytest.mark.parametrize(("given", "says"), [
    ("data", "is not NAME=URI"),
    ("my data=s3://b/x", "is not an input name"),
    ("d=ftp://h/x", "ftp:// is not a store"),
    ("d=gs://b/x", "the image has no gcs backend"),
    ("d=/nowhere/at/all", "/nowhere/at/all does not exist on this host"),
])
def test_bad_inputs_start_nothing_and_say_why(given, says):
    with pytest.raises(LaunchError, match=says):
        run_inputs([given], S3_IMAGE, {}, HOME, HOME)


def test_an_input_given_twice_is_refused():
    with pytest.raises(LaunchError, match="given twice"):
        run_inputs(["d=s3://b/1", "d=s3://b/2"], S3_IMAGE, {}, HOME, HOME)


def test_parse_input_makes_host_paths_absolute_file_uris():
    assert parse_input("d=../x", Path("/w/p")) == ("d", "file:///w/x")
    assert parse_input("d=s3://b/k", Path("/w")) == ("d", "s3://b/k")


def test_the_cache_follows_xdg():
    assert host_cache_dir({"XDG_CACHE_HOME": "/c"}, HOME) == Path("/c/tfbuild/inputs")


def test_print_shows_the_inputs_variable_and_the_read_only_mounts(tmp_path):
    got = run_inputs(["data=s3://b/train"], S3_IMAGE, {"AWS_SECRET_ACCESS_KEY": "s3cr3t"},
                     HOME, tmp_path)
    text = new_job("reg/train:1", 1, env=got.env, host_env=got.host_env,
                   volumes=got.mounts).print_commands()
    assert "-e TFBUILD_INPUTS=data=s3://b/train" in text
    assert "-e AWS_SECRET_ACCESS_KEY " in text and "s3cr3t" not in text
    assert "-v /home/u/.cache/tfbuild/inputs:/var/cache/tfbuild/inputs" in text
