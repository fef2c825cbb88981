"""Loading tfbuild.yaml + overrides into a BuildSpec: defaults, conversions, to_dict."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tfbuild.credentials import redact_url
from tfbuild.spec import BuildSpec, SpecError, compat, load_spec, spec_from_mapping


def make_project(root: Path, config: str | None = None, files: tuple[str, ...] = ("train.py",)):
    root.mkdir(parents=True, exist_ok=True)
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("print('hi')\n")
    if config is not None:
        (root / "tfbuild.yaml").write_text(config)
    return root


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    return make_project(tmp_path / "proj")


def test_minimal_file_gets_the_matrix_defaults(proj):
    (proj / "tfbuild.yaml").write_text("entry_script: train.py\n")
    spec = load_spec(proj)
    default_tf = compat.load_matrix().default_tensorflow
    assert spec.source_directory == proj.resolve()
    assert spec.entry_script == "train.py"
    assert spec.tensorflow_version == default_tf
    assert spec.python_version == compat.default_python(default_tf)
    assert spec.distributed_backend == "none"
    assert (spec.node_count, spec.process_count_per_node) == (1, 1)
    assert (spec.worker_count, spec.parameter_server_count) == (1, 0)
    assert spec.horovod is False
    assert spec.keras == "legacy"
    assert spec.use_gpu is False
    assert spec.trust_host_ca is False
    assert spec.notes == ()


def test_no_file_and_only_overrides(proj):
    spec = load_spec(proj, {"entry_script": "train.py", "pip_packages": ["scikit-learn"]})
    assert spec.pip_packages == ("scikit-learn",)


def test_overrides_win_and_none_means_not_given(proj):
    (proj / "tfbuild.yaml").write_text("entry_script: train.py\nnode_count: 4\nuse_gpu: true\n")
    spec = load_spec(proj, {"node_count": 2, "use_gpu": None})
    assert spec.node_count == 2
    assert spec.use_gpu is True


def test_major_minor_tensorflow_means_newest_patch(proj):
    spec = load_spec(proj, {"entry_script": "train.py", "tensorflow_version": "2.18"})
    assert spec.tensorflow_version == "2.18.1"
    assert spec.python_version == "3.11"


def test_yaml_versions_keep_their_text(proj):
    """Unquoted `2.20` and `3.10` must not turn into the floats 2.2 and 3.1."""
    (proj / "tfbuild.yaml").write_text(
        "entry_script: train.py\ntensorflow_version: 2.20\npython_version: 3.11\n"
    )
    spec = load_spec(proj)
    assert spec.tensorflow_version == "2.20.0"
    assert spec.python_version == "3.11"


def test_script_params_mapping_like_the_estimator(proj):
    (proj / "tfbuild.yaml").write_text(
        "entry_script: train.py\n"
        "script_params:\n"
        "  --batch-size: 50\n"
        "  --lr: 0.010\n"
        "  --verbose: true\n"
        "  --dry-run: false\n"
        "  --layers: [64, 32]\n"
        "  --cache:\n"
    )
    spec = load_spec(proj)
    assert spec.script_params == (
        "--batch-size",
        "50",
        "--lr",
        "0.010",  # as written, not re-printed from a float
        "--verbose",
        "--layers",
        "64",
        "32",
        "--cache",
    )


def test_script_params_list(proj):
    spec = spec_from_mapping(
        {"entry_script": "train.py", "script_params": ["--epochs", 3, "--flag"]}, proj
    )
    assert spec.script_params == ("--epochs", "3", "--flag")


def test_module_entry_script(proj):
    spec = spec_from_mapping({"entry_script": "-m  trainer.task"}, proj)
    assert spec.entry_script == "-m trainer.task"


def test_entry_script_is_normalised(proj):
    make_project(proj, files=("src/run.sh",))
    spec = spec_from_mapping({"entry_script": "./src/../src/run.sh"}, proj)
    assert spec.entry_script == "src/run.sh"


def test_mpi_defaults_to_horovod_and_can_opt_out(proj):
    base = {"entry_script": "train.py", "tensorflow_version": "2.18", "distributed_backend": "mpi"}
    assert spec_from_mapping(base, proj).horovod is True
    assert spec_from_mapping({**base, "horovod": False}, proj).horovod is False


def test_mpi_without_horovod_works_on_any_tf(proj):
    spec = spec_from_mapping(
        {"entry_script": "train.py", "distributed_backend": "mpi", "horovod": False}, proj
    )
    assert spec.tensorflow_version == compat.load_matrix().default_tensorflow
    assert spec.horovod is False


def test_unverified_horovod_is_accepted_with_a_note(proj):
    # Every Horovod pair in the shipped matrix is verified; mark one unverified here.
    real = compat.load_matrix()
    release = real.releases["2.16.2"]
    unverified = replace(release, horovod=replace(release.horovod, verified=False,
                                                  reason="not built here yet"))
    matrix = replace(real, releases={**real.releases, "2.16.2": unverified})
    spec = spec_from_mapping(
        {"entry_script": "train.py", "tensorflow_version": "2.16", "distributed_backend": "mpi"},
        proj,
        matrix=matrix,
    )
    assert spec.horovod is True
    assert len(spec.notes) == 1
    assert "not verified" in spec.notes[0] and "2.16.2" in spec.notes[0]


def test_horovod_with_keras3_notes_the_keras_wrapper(proj):
    spec = spec_from_mapping(
        {
            "entry_script": "train.py",
            "tensorflow_version": "2.18",
            "distributed_backend": "mpi",
            "keras": "keras3",
        },
        proj,
    )
    assert any("horovod.tensorflow.keras" in n for n in spec.notes)


def test_custom_base_image_allows_a_python_debian_does_not_ship(proj):
    spec = spec_from_mapping(
        {
            "entry_script": "train.py",
            "python_version": "3.12",
            "custom_docker_base_image": "registry.local:5000/py/python:3.12-slim",
        },
        proj,
    )
    assert spec.python_version == "3.12"


def test_environment_and_labels_become_text(proj):
    spec = spec_from_mapping(
        {
            "entry_script": "train.py",
            "environment_variables": {"EPOCHS": 3, "DEBUG": True, "NAME": "x"},
            "labels": {"org.example.team": "vision"},
        },
        proj,
    )
    assert dict(spec.environment_variables) == {"EPOCHS": "3", "DEBUG": "true", "NAME": "x"}
    assert dict(spec.labels) == {"org.example.team": "vision"}


def test_spec_is_immutable(proj):
    spec = spec_from_mapping({"entry_script": "train.py", "environment_variables": {"A": 1}}, proj)
    with pytest.raises(AttributeError):
        spec.node_count = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.environment_variables["B"] = "2"  # type: ignore[index]
    hash(spec)  # usable as a cache key


def test_packages_channels_and_extras(proj):
    channel = proj / "channel"
    (channel / "noarch").mkdir(parents=True)
    (channel / "noarch" / "repodata.json").write_text("{}")
    spec = spec_from_mapping(
        {
            "entry_script": "train.py",
            "pip_packages": ["scikit-learn>=1.4", "pkg[extra]==1.0"],
            "conda_packages": ["numpy 1.26.*", "hello==0.1"],
            "conda_channels": ["conda-forge", "./channel", "https://conda.example.com/main"],
            "apt_packages": ["libgomp1", "curl=7.88.1-10+deb12u5"],
            "upload_extras": ["s3", "gcs", "s3"],
        },
        proj,
    )
    assert spec.pip_packages == ("scikit-learn>=1.4", "pkg[extra]==1.0")
    assert spec.conda_packages == ("numpy 1.26.*", "hello==0.1")
    assert spec.conda_channels == (
        "conda-forge",
        str(channel.resolve()),
        "https://conda.example.com/main",
    )
    assert spec.apt_packages == ("libgomp1", "curl=7.88.1-10+deb12u5")
    assert spec.upload_extras == ("s3", "gcs")


def test_a_single_string_is_a_one_item_list(proj):
    spec = spec_from_mapping({"entry_script": "train.py", "pip_packages": "requests"}, proj)
    assert spec.pip_packages == ("requests",)


def test_ca_cert_paths_in_the_file_are_relative_to_the_source_dir(proj):
    (proj / "certs").mkdir()
    (proj / "certs" / "corp.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    spec = spec_from_mapping({"entry_script": "train.py", "ca_certs": ["certs/corp.pem"]}, proj)
    assert spec.ca_certs == ((proj / "certs" / "corp.pem").resolve(),)


def test_ca_cert_overrides_are_relative_to_the_working_dir(tmp_path, proj, monkeypatch):
    (tmp_path / "corp.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.chdir(tmp_path)
    spec = load_spec("proj", {"entry_script": "train.py", "ca_certs": [Path("corp.pem")]})
    assert spec.ca_certs == ((tmp_path / "corp.pem").resolve(),)


def test_explicit_config_file(tmp_path, proj):
    cfg = tmp_path / "other.yaml"
    cfg.write_text("entry_script: train.py\nnode_count: 3\n")
    assert load_spec(proj, config_file=cfg).node_count == 3


def test_empty_file_is_an_empty_spec(proj):
    (proj / "tfbuild.yaml").write_text("# nothing yet\n")
    assert load_spec(proj, {"entry_script": "train.py"}).entry_script == "train.py"


def test_null_value_means_default(proj):
    (proj / "tfbuild.yaml").write_text("entry_script: train.py\nnode_count:\n")
    assert load_spec(proj).node_count == 1


# to_dict / repr


def test_to_dict_is_json_safe_and_complete(proj):
    spec = spec_from_mapping(
        {"entry_script": "train.py", "labels": {"a": "b"}, "script_params": ["--x", 1]}, proj
    )
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["source_directory"] == str(proj.resolve())
    assert data["script_params"] == ["--x", "1"]
    assert data["labels"] == {"a": "b"}
    assert "notes" not in data
    fields = set(BuildSpec.__dataclass_fields__) - {"notes"}
    assert set(data) == fields


def test_credentials_are_redacted_in_to_dict_and_repr(proj):
    spec = spec_from_mapping(
        {
            "entry_script": "train.py",
            "pip_index_url": "https://user:s3cret@pypi.example.com/simple",
            "pip_extra_index_urls": ["https://token@extra.example.com/simple"],
            "conda_channels": ["https://u:p4ss@conda.example.com/main"],
        },
        proj,
    )
    assert spec.pip_index_url == "https://user:s3cret@pypi.example.com/simple"  # kept for build
    data = spec.to_dict()
    assert data["pip_index_url"] == "https://***@pypi.example.com/simple"
    assert data["pip_extra_index_urls"] == ["https://***@extra.example.com/simple"]
    assert data["conda_channels"] == ["https://***@conda.example.com/main"]
    for text in (json.dumps(data), repr(spec)):
        assert "s3cret" not in text and "token" not in text and "p4ss" not in text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pass@host/simple", "https://***@host/simple"),
        ("https://user:p@ss@host:8443/simple", "https://***@host:8443/simple"),
        ("https://host/simple", "https://host/simple"),
        ("file:///srv/wheels", "file:///srv/wheels"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_error_value_is_redacted_too(proj):
    with pytest.raises(SpecError) as e:
        spec_from_mapping({"entry_script": "train.py", "pip_index_url": "ftp://u:hunter2@h/"}, proj)
    assert "hunter2" not in str(e.value) and "hunter2" not in str(e.value.value)
