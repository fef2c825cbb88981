"""`tfbuild run`'s pure parts: where outputs go, which host credentials a store gets,
what every container is given, and the plain docker commands `--print` shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfbuild.errors import LaunchError
from tfbuild.run.destinations import default_runs_dir, resolve_destination
from tfbuild.run.launch import JobLaunch, new_job, stop_timeout_for
from tfbuild.run.store_access import Mount, store_access
from tfbuild_agent.contract import DEFAULT_FLUSH_TIMEOUT_SECONDS

CWD = Path("/home/u/proj")
HOME = Path("/home/u")


def resolve(upload_to, no_upload=False, env=None):
    return resolve_destination(upload_to, no_upload, cwd=CWD, env=env or {}, home=HOME)


@pytest.mark.parametrize(
    ("given", "folder"),
    [
        ("/srv/runs", "/srv/runs"),
        ("runs", "/home/u/proj/runs"),
        ("./runs/", "/home/u/proj/runs"),
        ("../shared", "/home/u/shared"),
        ("~/runs", "/home/u/runs") if str(Path("~").expanduser()) == "/home/u" else
        ("/abs", "/abs"),
        ("file:///srv/runs", "/srv/runs"),
        ("file://./runs", "/home/u/proj/runs"),
        ("file://runs", "/home/u/proj/runs"),
        ("file://localhost/srv/runs", "/srv/runs"),
    ],
)
def test_local_destinations_become_absolute_file_uris(given, folder):
    dest = resolve(given)
    assert dest.uri == f"file://{folder}"
    assert dest.host_dir == Path(folder)
    assert not dest.default
    assert dest.run_dir("run-1") == Path(folder) / "run-1"


def test_without_upload_to_runs_go_to_the_local_run_history():
    dest = resolve(None)
    assert dest.default and dest.host_dir == HOME / ".local/share/tfbuild/runs"
    assert resolve(None, env={"XDG_DATA_HOME": "/data"}).host_dir == Path("/data/tfbuild/runs")
    assert default_runs_dir({}, HOME) == HOME / ".local/share/tfbuild/runs"


def test_no_upload_keeps_nothing_and_contradicts_upload_to():
    assert resolve(None, no_upload=True).uri is None
    with pytest.raises(LaunchError, match="contradict"):
        resolve("/srv/runs", no_upload=True)


def test_object_stores_pass_through_and_bad_schemes_are_refused():
    assert resolve("s3://bucket/runs").uri == "s3://bucket/runs"
    assert resolve("s3://bucket/runs").host_dir is None
    with pytest.raises(LaunchError, match="ftp://"):
        resolve("ftp://host/runs")
    with pytest.raises(LaunchError, match="AZURE_STORAGE"):
        resolve("az://container/runs")  # no account anywhere: said before anything starts


def test_s3_gets_the_hosts_aws_variables_by_name_and_its_credentials_file(tmp_path):
    creds = tmp_path / "aws-credentials"
    creds.write_text("[default]\n")
    env = {"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s", "HOME_ONLY": "x",
           "AWS_SHARED_CREDENTIALS_FILE": str(creds), "AZURE_STORAGE_ACCOUNT_KEY": "k"}
    access = store_access("s3://b/p", env, tmp_path)
    assert access.env == {"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s",
                          "AWS_SHARED_CREDENTIALS_FILE": str(creds)}
    assert access.mounts == (Mount(str(creds), str(creds), read_only=True),)


def test_s3_mounts_the_aws_folder_read_only_where_the_sdk_looks(tmp_path):
    (tmp_path / ".aws").mkdir()
    access = store_access("s3://b/p", {}, tmp_path)
    assert access.mounts == (Mount(str(tmp_path / ".aws"), "/root/.aws", read_only=True),)


def test_azure_and_gcs_get_their_own_variables_only(tmp_path):
    key = tmp_path / "sa.json"
    key.write_text("{}")
    env = {"AZURE_STORAGE_CONNECTION_STRING": "cs", "AWS_ACCESS_KEY_ID": "no",
           "GOOGLE_APPLICATION_CREDENTIALS": str(key)}
    assert store_access("az://c/p", env, tmp_path).env == {"AZURE_STORAGE_CONNECTION_STRING": "cs"}
    gs = store_access("gs://b/p", env, tmp_path)
    assert gs.env == {"GOOGLE_APPLICATION_CREDENTIALS": str(key)}
    assert gs.mounts == (Mount(str(key), str(key), read_only=True),)
    assert store_access("file:///srv", env, tmp_path).env == {}


def launch(**kw) -> JobLaunch:
    base = dict(image="reg/train:1", nodes=2, job="tfjob-abc", run_id="run-1", token="t")
    return JobLaunch(**{**base, **kw})


def test_stop_timeout_covers_grace_and_the_final_flush():
    assert stop_timeout_for(30) == 30 + DEFAULT_FLUSH_TIMEOUT_SECONDS + 10
    assert launch(grace=5).effective_stop_timeout == 75
    assert launch(stop_timeout=300).effective_stop_timeout == 300


def test_every_container_gets_the_grace_and_the_destination():
    env = launch(grace=12, upload_to="file:///srv/runs").container_env(1)
    assert env["TFBUILD_GRACE_SECONDS"] == "12"
    assert env["TFBUILD_UPLOAD_TO"] == "file:///srv/runs"
    assert env["TFBUILD_NODE_RANK"] == "1"


def test_print_shows_every_flag_and_forwarded_variables_by_name_only():
    job = launch(
        upload_to="file:///srv/runs",
        env={"A": "1"},
        host_env={"AWS_SECRET_ACCESS_KEY": "s3cr3t"},
        env_files=("/p/job.env",),
        file_env={"FROM_FILE": "v"},
        volumes=(Mount("/data", "/data", read_only=True),),
        gpus="all",
        shm_size="2g",
        cpus=1.5,
        memory="4g",
        script_args=("--lr", "0.1"),
    )
    text = job.print_commands()
    for part in ("--gpus all", "--shm-size 2g", "--cpus 1.5", "--memory 4g",
                 "-v /srv/runs:/srv/runs", "-v /data:/data:ro", "--env-file /p/job.env",
                 "-e A=1", "-e AWS_SECRET_ACCESS_KEY ", "--stop-timeout 100",
                 "--label io.tfbuild.run=run-1", "reg/train:1 --lr 0.1"):
        assert part in text, part
    assert "s3cr3t" not in text and "FROM_FILE" not in text
    assert text.count("docker run") == 2


def test_gpu_requests():
    assert launch().device_requests() == []
    assert launch(gpus="all").device_requests()[0]["Count"] == -1
    assert launch(gpus="2").device_requests()[0]["Count"] == 2
    assert launch(gpus="device=0,1").device_requests()[0]["DeviceIDs"] == ["0", "1"]


def test_new_job_refuses_zero_nodes():
    with pytest.raises(LaunchError, match="at least 1"):
        new_job("img", 0)


def test_shm_size_comes_from_the_flag_then_the_image_then_the_default():
    from tfbuild.run.launch import shm_size_for

    assert shm_size_for(None, {}, "1g") == "1g"
    assert shm_size_for(None, {"shm_size": None}, "1g") == "1g"
    assert shm_size_for(None, {"shm_size": "4g"}, "1g") == "4g"
    assert shm_size_for("512m", {"shm_size": "4g"}, "1g") == "512m"
