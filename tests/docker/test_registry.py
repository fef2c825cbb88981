"""Publishing to real registries on localhost (Debian's docker-registry): the user
story end to end through the CLI, an htpasswd-protected registry with and without
credentials in a docker config file, and an unreachable registry."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import docker
import docker.errors
import pytest
from imagetools import remove_image, run_output, write_project
from registries import REGISTRY_PASSWORD, REGISTRY_USER, free_port

from tfbuild.engine.build import push_image
from tfbuild.errors import RegistryError

TFBUILD = Path(sys.executable).with_name("tfbuild")
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")

TRAIN_PY = """\
import json, sys
import sklearn  # the --pip package is importable
print("ARGV " + json.dumps(sys.argv[1:]), flush=True)
"""


def argv_printed(output: str) -> list[str]:
    lines = [ln for ln in output.splitlines() if ln.startswith("ARGV ")]
    assert len(lines) == 1, output
    return json.loads(lines[0][5:])


def test_user_story_build_push_pull_run(registry, docker_client, tmp_path, base_image):
    project = write_project(tmp_path / "my-tf-proj", TRAIN_PY)
    tag = f"{registry.host}/team/train:1"
    cmd = [str(TFBUILD), "image", str(project), "--entry-script", "train.py"]
    cmd += ["--pip", "scikit-learn", "--tag", tag, "--push"]
    cmd += ["--trust-host-ca"] if HOST_CA.exists() else []
    cmd += ["--", "--epochs", "3", "--batch-size", "64"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"pushed {tag}@sha256:" in done.stderr
    assert "team/train" in registry.catalog()["repositories"]

    # Only the registry's copy is left; plain `docker pull` + `docker run` from there.
    remove_image(docker_client, tag)
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(tag)
    docker_client.images.pull(f"{registry.host}/team/train", tag="1")
    out = run_output(tag, "--batch-size", "50")
    # Baked params, with the run's arguments winning where they name the same option.
    assert argv_printed(out) == ["--epochs", "3", "--batch-size", "50"]
    remove_image(docker_client, tag)


@pytest.fixture(scope="module")
def small_image(base_image) -> str:
    """What the registry tests push: the offline base (~170 MB, not TensorFlow again)."""
    return base_image


@pytest.fixture
def docker_config(tmp_path, monkeypatch) -> Path:
    """An empty DOCKER_CONFIG dir: the SDK reads $DOCKER_CONFIG/config.json."""
    conf = tmp_path / "docker-config"
    conf.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(conf))
    return conf


def write_auth(conf: Path, registry: str, user: str, password: str) -> None:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    (conf / "config.json").write_text(json.dumps({"auths": {registry: {"auth": token}}}))


def push_to(small_image: str, target: str) -> str:
    client = docker.from_env()
    client.images.get(small_image).tag(target)
    try:
        return push_image(client, target, quiet=True)
    finally:
        remove_image(client, target)


def test_authenticated_registry_refuses_a_push_without_credentials(
    auth_registry, small_image, docker_config
):
    with pytest.raises(RegistryError) as e:
        push_to(small_image, f"{auth_registry.host}/team/base:anon")
    message = str(e.value)
    assert f"{auth_registry.host} refused the credentials" in message
    assert f"docker login {auth_registry.host}" in message


def test_authenticated_registry_refuses_wrong_credentials(
    auth_registry, small_image, docker_config
):
    write_auth(docker_config, auth_registry.host, REGISTRY_USER, "not-the-password")
    with pytest.raises(RegistryError) as e:
        push_to(small_image, f"{auth_registry.host}/team/base:wrong")
    assert f"{auth_registry.host} refused the credentials" in str(e.value)


def test_authenticated_registry_accepts_credentials_from_the_config_file(
    auth_registry, small_image, docker_config
):
    write_auth(docker_config, auth_registry.host, REGISTRY_USER, REGISTRY_PASSWORD)
    digest = push_to(small_image, f"{auth_registry.host}/team/base:1")
    assert digest.startswith("sha256:")
    catalog = auth_registry.catalog(auth=(REGISTRY_USER, REGISTRY_PASSWORD))
    assert "team/base" in catalog["repositories"]


def test_unreachable_registry_says_so(small_image, docker_config):
    host = f"localhost:{free_port()}"  # nothing listens there
    with pytest.raises(RegistryError) as e:
        push_to(small_image, f"{host}/team/base:1")
    assert f"registry {host} is unreachable" in str(e.value)
    assert "Check the address" in str(e.value)
