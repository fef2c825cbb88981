"""Rendered Dockerfiles, pinned whole (tests/golden/dockerfiles/<case>.Dockerfile;
UPDATE_GOLDEN=1 rewrites them and prints the diff it accepted), plus the properties
each rendering must keep.

A golden file pins the text, so a regression in it is caught only until someone
accepts the new text. What must hold whatever the text is, is stated here in words and
checked on every rendering, so `UPDATE_GOLDEN=1` cannot accept a break of it:

1. Credentials reach build stages only, whatever the stage graph. pip.conf (copied to
   /tmp/tfbuild-pip from the context's tfbuild/pip/), PIP_CONFIG_FILE and the index
   password never appear in the final stage nor in any stage it builds on by FROM
   (`inherited`), for every stage graph the spec can make (CPU, GPU, conda, MPI with and
   without Horovod, a custom base, extra apt packages); and every pip step in a build
   stage gets the pip.conf, or the private index would be silently skipped.
2. The CA is trusted whenever it is asked for: with `trust_host_ca`, with `ca_certs`, or
   both, the `os` stage installs tfbuild/ca/ and points pip, requests and OpenSSL at the
   system bundle, and every stage descends from `os`; with neither, no CA step at all.
"""

from __future__ import annotations

import difflib
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
    # The estimator's dependency files: flattened lists copied before the install.
    "requirements_file": {"pip_requirements_file": "requirements.txt", "pip_packages": ["rich"]},
    "environment_file": {"conda_dependencies_file": "environment.yml"},
    # tf2onnx and onnxruntime join the user layer, pinned by compat.yaml.
    "onnx_export": {"export_onnx": True, "pip_packages": ["scikit-learn"]},
    # An fsspec backend for uploads: the agent's requirements are installed with pip.
    "upload_extras": {"upload_extras": ["s3"]},
}
REQUIREMENTS = """\
-r requirements-base.txt
-c constraints.txt
tensorflow==2.21.*  # the image's own: skipped with a note
pandas>=2.2
"""
ENVIRONMENT = """\
name: proj
channels: [conda-forge, defaults]
dependencies:
  - python=3.11
  - zlib 1.3.*
  - pip
  - pip:
      - --extra-index-url https://mirror.example.com/simple
      - scikit-learn==1.5.2
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    src = tmp_path / "proj"
    src.mkdir()
    (src / "train.py").write_text("print('train')\n")
    (src / "corp-ca.pem").write_text(PEM)
    (src / "requirements.txt").write_text(REQUIREMENTS)
    (src / "requirements-base.txt").write_text("numpy\n")
    (src / "constraints.txt").write_text("numpy<2.4\n")
    (src / "environment.yml").write_text(ENVIRONMENT)
    monkeypatch.setenv("IDX_USER", "builder")
    monkeypatch.setenv("IDX_TOKEN", "t0k3n-render")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc of this machine
    return src


def render(project: Path, overrides: dict) -> str:
    overrides = dict(overrides)
    if "ca_certs" in overrides:  # command-line paths are relative to the working dir
        overrides["ca_certs"] = [str(project / p) for p in overrides["ca_certs"]]
    for key in ("pip_requirements_file", "conda_dependencies_file"):
        if key in overrides:
            overrides[key] = str(project / overrides[key])
    spec = load_spec(project, {"entry_script": "train.py", **overrides})
    has_conf = bool(pip_conf_text(spec.pip_index_url, spec.pip_extra_index_urls))
    # As build.prepare decides on a host with the agent's pure-Python requirements
    # installed (this one): vendored, unless a backend with compiled dependencies is asked.
    vendored = not spec.upload_extras
    return render_dockerfile(image_layers(spec, source_digest=SOURCE_DIGEST, has_pip_conf=has_conf,
                                          agent_vendored=vendored))


def accept_golden(path: Path, text: str) -> str:
    """UPDATE_GOLDEN=1: write `text` as the new golden file; returns the diff accepted."""
    old = path.read_text() if path.exists() else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return "".join(difflib.unified_diff(
        old.splitlines(keepends=True), text.splitlines(keepends=True),
        f"a/{path.name}", f"b/{path.name}"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_dockerfile(project, case, capsys):
    text = render(project, CASES[case])
    path = GOLDEN / f"{case}.Dockerfile"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        diff = accept_golden(path, text)
        with capsys.disabled():  # shown whatever pytest's capture: review what was accepted
            print(f"\nUPDATE_GOLDEN accepted for {path.name}:\n{diff}" if diff else "")
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


def stages(text: str) -> dict[str, str]:
    """Stage name (`final` for the unnamed last one) -> its text, FROM line included."""
    out: dict[str, str] = {}
    parts = text.split("\nFROM ")
    for part in parts[1:]:
        head = part.splitlines()[0].split()
        out[head[2] if len(head) == 3 else "final"] = "FROM " + part
    return out


def inherited(text: str) -> str:
    """The final stage and every stage it builds on by FROM: what ships in the image."""
    by_name, chain = stages(text), []
    name = "final"
    while name in by_name:
        chain.append(by_name[name])
        name = by_name[name].split()[1]
    return "\n".join(chain)


def test_layer_order_puts_source_after_packages_and_agent(project):
    text = render(project, CASES["mpi_horovod"])
    final = stages(text)["final"]
    order = ["COPY --from=mpi", "pip install", "COPY --from=agent", "COPY src/", "LABEL "]
    positions = [final.index(step) for step in order]
    assert positions == sorted(positions)
    # Horovod compiles after TensorFlow, in its own stage, and is checked there.
    assert text.index("FROM os AS tensorflow") < text.index("FROM tensorflow AS mpi")
    assert "horovodrun --check-build" in stages(text)["mpi"]


@pytest.mark.parametrize("case", ["cpu_default", "mpi_horovod", "mpi4py_only", "conda", "gpu"])
def test_the_image_extends_tensorflows_layer_instead_of_copying_it(project, case):
    """Without credentials the final stage starts from TensorFlow's stage: no `COPY
    --from` of the 1.5 GB venv (35-56 s of a cold build)."""
    final = stages(render(project, CASES[case]))["final"]
    assert final.startswith("FROM tensorflow\n")
    assert "COPY --from=tensorflow" not in final


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_compiler_or_pip_conf_in_what_the_image_inherits(project, case):
    shipped = inherited(render(project, CASES[case]))
    for tool in ("gcc", "g++", "cmake", "python3-dev", "libopenmpi-dev"):
        assert f" {tool}" not in shipped.replace("openmpi-bin", ""), (case, tool)
    assert "tfbuild/pip" not in shipped and "PIP_CONFIG_FILE" not in shipped


@pytest.mark.parametrize("case", sorted(CASES))
def test_dependency_layers_ship_deterministic_bytecode_without_headers(project, case):
    text = render(project, CASES[case])
    tf = stages(text)["tensorflow"]
    assert "site-packages/tensorflow/include" in tf and "-name tests" in tf
    # pip compiles timestamp-based .pyc (bytes change every build); compileall
    # writes unchecked-hash .pyc once, after the deletions.
    for install in [line for line in text.splitlines() if "bin/pip install" in line]:
        if any(s in install for s in ("layers/mpi", "setuptools wheel", "/tmp/rattler")):
            continue  # the MPI stage compiles its layer at its end; rattler is a tool
        assert "--no-compile" in install, install
    layers = ["/opt/tfbuild/venv", "/opt/tfbuild/agent"]
    layers += ["/opt/tfbuild/layers/user"] if CASES[case].get("pip_packages") else []
    layers += ["/opt/tfbuild/layers/mpi"] if CASES[case].get("distributed_backend") == "mpi" else []
    for layer in layers:
        assert f"--invalidation-mode unchecked-hash {layer}" in text, (case, layer)


def test_the_horovod_stage_gets_tensorflows_headers_back(project):
    mpi = stages(render(project, CASES["mpi_horovod"]))["mpi"]
    assert mpi.index("tensorflow/include/") < mpi.index("horovod==")
    assert "pip download --no-cache-dir --no-deps --only-binary :all: -d /tmp/tf-wheel " \
        "tensorflow-cpu==2.18.1" in mpi


def test_credentials_reach_build_stages_only(project):
    text = render(project, CASES["private_index_ca"])
    final = stages(text)["final"]
    # pip.conf forces the stages: TensorFlow and user packages are copied in.
    assert final.startswith("FROM os\n") and "COPY --from=user-packages" in final
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


def test_shm_size_is_recorded_in_the_image(project):
    text = render(project, {"shm_size": "4g"})
    assert 'io.tfbuild.shm-size="4g"' in text
    assert '\\"shm_size\\":\\"4g\\"' in text  # the spec label `tfbuild run` reads
    assert "io.tfbuild.shm-size" not in render(project, {})


def test_an_input_placeholder_in_the_spec_label_is_literal_for_docker(project):
    # Unescaped, Docker's variable substitution reads `${tfbuild.input.data-folder}` and
    # fails the build ("missing ':' in substitution").
    text = render(project, {"script_params": {"--data-folder": {"download": "s3://b/d"}},
                            "upload_extras": ["s3"]})
    label = next(line for line in text.splitlines() if "io.tfbuild.spec=" in line)
    assert "\\${tfbuild.input.data-folder}" in label
    assert "$" not in label.replace("\\$", "")


def test_update_golden_reports_the_diff_it_accepts(tmp_path):
    path = tmp_path / "case.Dockerfile"
    path.write_text("FROM os\nRUN a\n")
    diff = accept_golden(path, "FROM os\nRUN b\n")
    assert "-RUN a\n" in diff and "+RUN b\n" in diff
    assert path.read_text() == "FROM os\nRUN b\n"
    assert accept_golden(path, "FROM os\nRUN b\n") == ""  # nothing changed: nothing shown


PRIVATE_INDEX = {
    "pip_index_url": "https://${IDX_USER}:${IDX_TOKEN}@pypi.example.com/simple",
    "pip_packages": ["internal-lib==1.0"],
}
# Every stage graph the spec can make, each with a credentialed index added.
GRAPHS = {name: {**case, **PRIVATE_INDEX} for name, case in CASES.items()}
GRAPHS["apt_and_conda"] = {**CASES["conda"], **PRIVATE_INDEX, "apt_packages": ["libgomp1"]}
GRAPHS["no_user_packages"] = {**PRIVATE_INDEX, "pip_packages": []}


@pytest.mark.parametrize("case", sorted(GRAPHS))
def test_invariant_credentials_stay_in_build_stages_whatever_the_stage_graph(project, case):
    text = render(project, GRAPHS[case])
    by_name, shipped = stages(text), inherited(text)
    for secret in ("tfbuild/pip", "tfbuild-pip", "PIP_CONFIG_FILE", "pip.conf", "t0k3n-render"):
        assert secret not in shipped, (case, secret)
    assert "t0k3n-render" not in text
    # Build stages that run pip use the credentials (else the private index is unused).
    build = [n for n, body in by_name.items() if body not in shipped]
    for name in build:
        for line in by_name[name].splitlines():
            if "bin/pip install" in line and "/tmp/rattler" not in line:
                assert "PIP_CONFIG_FILE=/tmp/tfbuild-pip/pip.conf" in line, (case, name, line)
    if GRAPHS[case]["pip_packages"]:  # installed with the credentials, then copied in
        assert "COPY --from=user-packages" in by_name["final"], case


def _chain(text: str, name: str) -> list[str]:
    by_name, chain = stages(text), []
    while name in by_name:
        chain.append(name)
        name = by_name[name].split()[1]
    return chain


@pytest.mark.parametrize("case", ["cpu_default", "mpi_horovod", "conda", "custom_base"])
@pytest.mark.parametrize(
    "asked", [{"trust_host_ca": True}, {"ca_certs": ["corp-ca.pem"]},
              {"trust_host_ca": True, "ca_certs": ["corp-ca.pem"]}],
    ids=["trust_host_ca", "ca_certs", "both"],
)
def test_invariant_the_ca_is_trusted_whenever_asked(project, case, asked):
    text = render(project, {**CASES[case], **asked})
    os_stage = stages(text)["os"]
    assert "COPY tfbuild/ca/ /usr/local/share/ca-certificates/tfbuild/" in os_stage
    assert "RUN update-ca-certificates" in os_stage
    for var in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        assert f"{var}=/etc/ssl/certs/ca-certificates.crt" in os_stage, var
    for name in stages(text):
        assert _chain(text, name)[-1] == "os", f"stage {name} does not build on os"


def test_invariant_no_ca_step_when_none_is_asked(project):
    text = render(project, CASES["cpu_default"])
    assert "tfbuild/ca" not in text and "update-ca-certificates" not in text


def _layers(project: Path, **overrides):
    spec = load_spec(project, {"entry_script": "train.py", **overrides})
    return image_layers(spec, source_digest=SOURCE_DIGEST)


def test_the_users_environment_and_labels_win_over_tfbuilds_defaults(project):
    layers = _layers(project, environment_variables={"PYTHONUNBUFFERED": "0", "A": "1"},
                     labels={"org.opencontainers.image.title": "mine"})
    assert layers.env["PYTHONUNBUFFERED"] == "0" and layers.env["A"] == "1"
    assert layers.labels["org.opencontainers.image.title"] == "mine"
    assert layers.labels["io.tfbuild.source-digest"] == SOURCE_DIGEST
    assert _layers(project, tag="team/img:1").labels["org.opencontainers.image.title"] == \
        "team/img:1"


def test_os_packages_come_only_where_the_base_lacks_them(project):
    assert _layers(project).os_packages == ()
    assert _layers(project).base_is_tfbuild
    custom = _layers(project, custom_docker_base_image="ubuntu:22.04", python_version="3.10")
    assert not custom.base_is_tfbuild
    assert custom.os_packages == ("python3", "python3-venv", "ca-certificates")
    mpi = _layers(project, distributed_backend="mpi", node_count=2, horovod=False)
    assert mpi.os_packages == ("openmpi-bin",)
    assert mpi.env["OMPI_ALLOW_RUN_AS_ROOT"] == "1"
    assert "OMPI_ALLOW_RUN_AS_ROOT" not in _layers(project).env


def test_gpu_images_see_every_gpu_and_cpu_images_none(project):
    gpu = _layers(project, use_gpu=True)
    assert gpu.env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert gpu.env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert "NVIDIA_VISIBLE_DEVICES" not in _layers(project).env


def test_the_path_puts_tensorflows_venv_first_and_the_system_last(project):
    path = _layers(project).env["PATH"].split(":")
    assert path[0] == "/opt/tfbuild/venv/bin" and path[-1] == "/bin"
    assert path.index("/opt/tfbuild/layers/user/bin") < path.index("/opt/tfbuild/agent/cmd")


def test_layers_have_no_pip_conf_unless_told(project):
    assert _layers(project).pip_conf is False
    assert "PIP_CONFIG_FILE" not in _layers(project).pip_env


def test_an_image_without_horovod_has_no_patch_files(project):
    from tfbuild.image.render import horovod_patch_files

    assert horovod_patch_files(_layers(project)) == {}
    mpi4py = _layers(project, distributed_backend="mpi", node_count=2, horovod=False)
    assert horovod_patch_files(mpi4py) == {}


def test_a_local_conda_channel_is_named_in_the_label_without_its_path(project, tmp_path):
    from tfbuild.image.render import label_spec

    channel = tmp_path / "channels" / "mine"
    (channel / "noarch").mkdir(parents=True)
    (channel / "noarch" / "repodata.json").write_text("{}")
    spec = load_spec(project, {"entry_script": "train.py", "conda_packages": ["jq"],
                               "conda_channels": [str(channel), "conda-forge"]})
    assert label_spec(spec)["conda_channels"] == ["mine", "conda-forge"]


def test_rendered_text_never_has_two_blank_lines_in_a_row_or_trailing_spaces():
    from tfbuild.image.render import _squeeze_blank_lines

    text = "FROM os  \n\n\n\nRUN a\n \nRUN b\n\n\nRUN c\n\n"
    assert _squeeze_blank_lines(text) == "FROM os\n\nRUN a\n\nRUN b\n\nRUN c\n"
    assert _squeeze_blank_lines("\n\nA\n") == "A\n"
