"""Rendered Dockerfiles, pinned whole (tests/golden/dockerfiles/<case>.Dockerfile;
UPDATE_GOLDEN=1 rewrites them), plus the properties each rendering must keep."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tfbuild.credentials import pip_conf_text
from tfbuild.image.render import image_layers, render_dockerfile
from tfbuild.spec import load_spec

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "dockerfiles"
SOURCE_DIGEST = "sha256:" + "5d" * 32
# Any PEM block will do: rendering only needs to know that CA certificates exist.
PEM = "-----BEGIN CERTIFICATE-----\nTUlJQnRmYnVpbGQ=\n-----END CERTIFICATE-----\n"

CASES: dict[str, dict] = {
    "cpu_default": {"pip_packages": ["scikit-learn"], "script_params": ["--epochs", "3"]},
    "gpu": {"use_gpu": True, "distributed_backend": "multiworker", "node_count": 2},
    "conda": {"conda_packages": ["zlib 1.3.*", "jq"], "conda_channels": ["conda-forge"]},
    "mpi_horovod": {
        "tensorflow_version": "2.18.1",
        "distributed_backend": "mpi",
        "node_count": 2,
        "process_count_per_node": 2,
        "pip_packages": ["pandas"],
    },
    "mpi4py_only": {"distributed_backend": "mpi", "horovod": False, "node_count": 2},
    # The default TensorFlow: Horovod from the patched sdist, with NCCL for the GPUs.
    "mpi_horovod_gpu": {"distributed_backend": "mpi", "use_gpu": True, "node_count": 2},
    "custom_base": {
        "custom_docker_base_image": "registry.example.com/ml/ubuntu:22.04",
        "python_version": "3.10",
        "apt_packages": ["libgomp1"],
        "environment_variables": {"OMP_NUM_THREADS": "2"},
        "labels": {"team": "vision"},
    },
    "private_index_ca": {
        "pip_index_url": "https://${IDX_USER}:${IDX_TOKEN}@pypi.example.com/simple",
        "pip_extra_index_urls": ["https://mirror.example.com/simple"],
        "pip_packages": ["internal-lib==1.0"],
        "ca_certs": ["corp-ca.pem"],
    },
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    src = tmp_path / "proj"
    src.mkdir()
    (src / "train.py").write_text("print('train')\n")
    (src / "corp-ca.pem").write_text(PEM)
    monkeypatch.setenv("IDX_USER", "builder")
    monkeypatch.setenv("IDX_TOKEN", "t0k3n-render")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc of this machine
    return src


def render(project: Path, overrides: dict) -> str:
    overrides = dict(overrides)
    if "ca_certs" in overrides:  # command-line paths are relative to the working dir
        overrides["ca_certs"] = [str(project / p) for p in overrides["ca_certs"]]
    spec = load_spec(project, {"entry_script": "train.py", **overrides})
    has_conf = bool(pip_conf_text(spec.pip_index_url, spec.pip_extra_index_urls))
    return render_dockerfile(image_layers(spec, source_digest=SOURCE_DIGEST, has_pip_conf=has_conf))


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_dockerfile(project, case):
    text = render(project, CASES[case])
    path = GOLDEN / f"{case}.Dockerfile"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing; run with UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(), f"{case}: rendering changed; UPDATE_GOLDEN=1 after review"


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendering_holds_no_machine_path_or_secret(project, case):
    text = render(project, CASES[case])
    assert str(project.parent) not in text
    assert "t0k3n-render" not in text
    label = next(line for line in text.splitlines() if "io.tfbuild.spec=" in line)
    spec = json.loads(json.loads(label.split("io.tfbuild.spec=", 1)[1].rstrip(" \\")))
    assert spec["source_directory"] == "proj"


def test_two_checkouts_render_the_same(tmp_path, monkeypatch):
    texts = []
    for where in ("a", "b"):
        src = tmp_path / where / "proj"
        src.mkdir(parents=True)
        (src / "train.py").write_text("print('train')\n")
        texts.append(render(src, CASES["cpu_default"]))
    assert texts[0] == texts[1]


def test_layer_order_puts_source_after_packages_and_agent(project):
    text = render(project, CASES["mpi_horovod"])
    final = text[text.rindex("\nFROM os\n") :]
    order = [
        "COPY --from=tensorflow",
        "COPY --from=mpi",
        "COPY --from=user-packages",
        "COPY --from=agent",
        "COPY src/",
        "LABEL ",
    ]
    positions = [final.index(step) for step in order]
    assert positions == sorted(positions)
    # Horovod compiles after TensorFlow, in its own stage, and is checked there.
    assert text.index("FROM os AS tensorflow") < text.index("FROM tensorflow AS mpi")
    assert "horovodrun --check-build" in text


def test_credentials_reach_build_stages_only(project):
    text = render(project, CASES["private_index_ca"])
    final = text[text.rindex("\nFROM os\n") :]
    assert "tfbuild/pip" not in final and "PIP_CONFIG_FILE" not in final
    assert text.count("COPY tfbuild/pip/ /tmp/tfbuild-pip/") >= 2
    # CA certificates are public and trusted in every stage (all start from `os`).
    os_stage = text[: text.index("FROM os AS tensorflow")]
    assert "update-ca-certificates" in os_stage


def test_horovod_patches_reach_the_build_context_only_where_applied(project):
    from tfbuild.image.build import prepare

    patched = prepare(load_spec(project, {"entry_script": "train.py", **CASES["mpi_horovod_gpu"]}))
    names = [p for p in patched.context.files if p.startswith("tfbuild/patches/")]
    assert names == ["tfbuild/patches/horovod/0001-xla-ops-only-before-tf-2.19.patch"]
    assert "COPY tfbuild/patches/horovod/ /tmp/tfbuild-horovod-patches/" in patched.dockerfile
    assert "patch -p1 --forward" in patched.dockerfile
    as_released = prepare(load_spec(project, {"entry_script": "train.py", **CASES["mpi_horovod"]}))
    assert not [p for p in as_released.context.files if p.startswith("tfbuild/patches/")]
    assert "patch -p1" not in as_released.dockerfile and "horovod==0.28.1" in as_released.dockerfile
