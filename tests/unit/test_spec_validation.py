"""Every validation error names the field, the bad value and the fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from spec_checks import fails

from tfbuild.spec import SpecError, load_spec, spec_from_mapping
from tfbuild.spec.compat import Matrix

COMPAT_YAML = Path(__file__).resolve().parents[2] / "base-images" / "compat.yaml"


def test_message_format_from_the_issue(proj, monkeypatch):
    (proj / "tfbuild.yaml").write_text("entry_script: train.py\ndistributed_backend: pss\n")
    monkeypatch.chdir(proj)
    with pytest.raises(SpecError) as e:
        load_spec(".")
    assert str(e.value) == (
        "tfbuild.yaml: distributed_backend: 'pss' is not a backend; "
        "use one of none, mpi, ps, multiworker"
    )
    assert (e.value.field, e.value.value) == ("distributed_backend", "pss")
    assert e.value.fix == "use one of none, mpi, ps, multiworker"


def test_errors_name_the_file_they_come_from(proj):
    (proj / "tfbuild.yaml").write_text("entry_script: train.py\n")
    with pytest.raises(SpecError) as e:
        load_spec(proj, {"node_count": 0})
    assert e.value.source == "command line"
    (proj / "tfbuild.yaml").write_text("entry_script: train.py\nnode_count: 0\n")
    with pytest.raises(SpecError) as e:
        load_spec(proj)
    assert e.value.source == str(proj / "tfbuild.yaml")


# Source directory


def test_missing_source_directory(tmp_path):
    with pytest.raises(SpecError) as e:
        load_spec(tmp_path / "nope", {"entry_script": "train.py"})
    assert e.value.field == "source_directory"
    assert "does not exist" in str(e.value)
    assert "tfbuild image my-tf-proj" in e.value.fix


def test_source_directory_that_is_a_file(proj):
    with pytest.raises(SpecError, match="is not a directory"):
        load_spec(proj / "train.py")


def test_spec_from_mapping_checks_the_directory_too(tmp_path):
    with pytest.raises(SpecError) as e:
        spec_from_mapping({"entry_script": "train.py"}, tmp_path / "gone")
    assert e.value.field == "source_directory"


# Entry script


def test_entry_script_not_set(proj):
    with pytest.raises(SpecError) as e:
        spec_from_mapping({}, proj)
    assert e.value.field == "entry_script"
    assert "is not set" in str(e.value) and "entry_script: train.py" in e.value.fix


def test_entry_script_missing_suggests_a_close_name(proj):
    e = fails(proj, entry_script="trian.py")
    assert e.field == "entry_script" and e.value == "trian.py"
    assert "does not exist" in str(e)
    assert "did you mean 'train.py'?" in e.fix


def test_entry_script_parent_escape(proj):
    (proj.parent / "x.py").write_text("")
    e = fails(proj, entry_script="../x.py")
    assert "outside the source directory" in str(e)


def test_entry_script_absolute_path(proj):
    e = fails(proj, entry_script=str(proj / "train.py"))
    assert "is an absolute path" in str(e)
    assert "e.g. train.py" in e.fix


def test_entry_script_symlink_escaping(proj, tmp_path):
    outside = tmp_path / "secret.py"
    outside.write_text("")
    os.symlink(outside, proj / "link.py")
    e = fails(proj, entry_script="link.py")
    assert "outside the source directory" in str(e)


def test_entry_script_symlink_inside_is_fine(proj):
    os.symlink(proj / "train.py", proj / "main.py")
    assert spec_from_mapping({"entry_script": "main.py"}, proj).entry_script == "main.py"


def test_entry_script_wrong_kind(proj):
    (proj / "train.ipynb").write_text("{}")
    e = fails(proj, entry_script="train.ipynb")
    assert "neither a .py nor a .sh file" in str(e) and "-m package.module" in e.fix


def test_entry_script_with_arguments_points_to_script_params(proj):
    e = fails(proj, entry_script="train.py --epochs 3")
    assert "has arguments" in str(e) and "script_params" in e.fix


def test_entry_script_directory(proj):
    (proj / "pkg.py").mkdir()
    assert "is not a file" in str(fails(proj, entry_script="pkg.py"))


def test_entry_module_name(proj):
    e = fails(proj, entry_script="-m 1bad.name")
    assert "'1bad.name' is not a module name" in str(e)


# TensorFlow, Python, GPU


def test_unknown_tensorflow_version_lists_known_ones(proj):
    e = fails(proj, tensorflow_version="2.22")
    assert e.field == "tensorflow_version" and e.value == "2.22"
    assert "is not a TensorFlow version tfbuild knows" in str(e)
    assert "2.15.1" in e.fix and "2.21.0" in e.fix
    assert "did you mean" in e.fix


def test_python_version_tf_does_not_support(proj):
    e = fails(proj, tensorflow_version="2.15", python_version="3.13")
    assert e.field == "python_version"
    assert "TensorFlow 2.15.1 does not support Python 3.13" in str(e)
    assert "use one of 3.9, 3.10, 3.11" in e.fix


def test_python_version_without_debian_suite_needs_custom_base(proj):
    e = fails(proj, tensorflow_version="2.18", python_version="3.12")
    assert "no Debian suite" in str(e)
    assert "3.11 (bookworm)" in e.fix and "custom_docker_base_image" in e.fix


def test_python_version_must_be_major_minor(proj):
    e = fails(proj, python_version="3.11.4")
    assert "not a major.minor Python version" in str(e)


def test_use_gpu_without_gpu_build(proj):
    data = yaml.safe_load(COMPAT_YAML.read_text())
    data["tensorflow"]["2.15.1"]["gpu"] = False
    matrix = Matrix.from_mapping(data)
    with pytest.raises(SpecError) as e:
        spec_from_mapping(
            {"entry_script": "train.py", "tensorflow_version": "2.15", "use_gpu": True},
            proj,
            matrix=matrix,
        )
    assert e.value.field == "use_gpu" and e.value.value is True
    assert "TensorFlow 2.15.1 has no GPU build" in str(e.value)
    assert "2.16.2" in e.value.fix and "use_gpu: false" in e.value.fix


def test_keras3_needs_a_keras3_release(proj):
    e = fails(proj, tensorflow_version="2.15", keras="keras3")
    assert e.field == "keras" and "Keras 2 only" in str(e)


def test_unknown_keras_mode(proj):
    assert "is not a Keras mode" in str(fails(proj, keras="keras2"))


# Distribution


def _horovod_fails_from(*versions: str) -> Matrix:
    """The packaged matrix, with Horovod refused for these releases (every packaged
    release builds Horovod now; the refusal stays for a release that would not)."""
    data = yaml.safe_load(COMPAT_YAML.read_text())
    for v in versions:
        data["tensorflow"][v]["horovod"] = {"version": None, "reason": "fails to compile"}
    return Matrix.from_mapping(data)


def _refused(proj: Path, matrix: Matrix, **data) -> SpecError:
    with pytest.raises(SpecError) as e:
        spec_from_mapping({"entry_script": "train.py", **data}, proj, matrix=matrix)
    return e.value


def test_mpi_horovod_on_unsupported_tf(proj):
    matrix = _horovod_fails_from("2.20.0", "2.21.0")
    e = _refused(proj, matrix, tensorflow_version="2.21", distributed_backend="mpi")
    assert e.field == "distributed_backend"
    assert "Horovod cannot be built against TensorFlow 2.21.0" in str(e)
    assert "2.18.1, 2.19.1" in e.fix
    assert "multiworker" in e.fix and "horovod: false" in e.fix


def test_explicit_horovod_on_unsupported_tf_blames_horovod(proj):
    matrix = _horovod_fails_from("2.19.1")
    e = _refused(
        proj, matrix, tensorflow_version="2.19", distributed_backend="mpi", horovod=True
    )
    assert e.field == "horovod"
    assert "Horovod cannot be built against TensorFlow 2.19.1" in str(e)


@pytest.mark.parametrize("tf", ["2.19", "2.20", "2.21"])
def test_mpi_with_the_newer_releases_builds_horovod(proj, tf):
    spec = spec_from_mapping(
        {"entry_script": "train.py", "tensorflow_version": tf, "distributed_backend": "mpi"}, proj
    )
    assert spec.horovod


def test_horovod_needs_the_mpi_backend(proj):
    e = fails(proj, tensorflow_version="2.18", distributed_backend="multiworker", horovod=True)
    assert e.field == "horovod"
    assert "distributed_backend is 'multiworker'" in str(e)
    assert "distributed_backend: mpi" in e.fix


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"worker_count": 0, "parameter_server_count": 1}, "worker_count"),
        ({"worker_count": 2, "parameter_server_count": 0}, "parameter_server_count"),
        ({"worker_count": 2}, "parameter_server_count"),
    ],
)
def test_ps_needs_workers_and_servers(proj, data, field):
    e = fails(proj, distributed_backend="ps", **data)
    assert e.field == field
    assert "the ps backend needs at least one" in str(e)
    assert f"set {field}: 1 or more" in e.fix


def test_ps_with_both_counts_is_fine(proj):
    spec = spec_from_mapping(
        {
            "entry_script": "train.py",
            "distributed_backend": "ps",
            "worker_count": 2,
            "parameter_server_count": 1,
        },
        proj,
    )
    assert (spec.worker_count, spec.parameter_server_count) == (2, 1)


@pytest.mark.parametrize("field", ["node_count", "process_count_per_node"])
def test_counts_below_one(proj, field):
    e = fails(proj, **{field: 0})
    assert e.field == field and e.value == 0
    assert "0 is less than 1" in str(e) and "1 or more" in e.fix


def test_negative_worker_count(proj):
    assert fails(proj, worker_count=-1).field == "worker_count"


# Types


def test_count_that_is_not_a_number(proj):
    e = fails(proj, node_count="two")
    assert str(e) == (
        "tfbuild.yaml: node_count: 'two' is not a whole number; write a number, e.g. node_count: 2"
    )


def test_count_that_is_a_boolean(proj):
    assert "is not a whole number" in str(fails(proj, node_count=True))


def test_digit_strings_are_counts(proj):
    spec = spec_from_mapping({"entry_script": "train.py", "node_count": "3"}, proj)
    assert spec.node_count == 3


def test_flag_that_is_not_a_boolean(proj):
    e = fails(proj, use_gpu="maybe")
    assert "'maybe' is not true or false" in str(e)


def test_list_field_given_a_mapping(proj):
    e = fails(proj, pip_packages={"numpy": 1})
    assert e.field == "pip_packages" and "is not a list" in str(e)


def test_script_params_given_a_number(proj):
    assert "neither a list of arguments nor a mapping" in str(fails(proj, script_params=5))


def test_script_params_nested_mapping(proj):
    e = fails(proj, script_params={"--opt": {"a": 1}})
    assert "the value of --opt is a dict" in str(e)


def test_text_field_given_a_list(proj):
    assert "is not a text value" in str(fails(proj, tensorflow_version=["2.18"]))


def test_mapping_field_given_a_list(proj):
    e = fails(proj, environment_variables=["A=1"])
    assert "is not a mapping" in str(e)


# Unknown keys


def test_unknown_key_suggests_the_close_one(proj):
    e = fails(proj, node_cout=2)
    assert e.field == "node_cout"
    assert "'node_cout' is not a tfbuild key" in str(e)
    assert "did you mean 'node_count'?" in e.fix


def test_estimator_names_get_a_hint(proj):
    assert "tensorflow_version" in fails(proj, framework_version="2.18").fix
    assert "Azure ML run setting" in fails(proj, compute_target="gpu-cluster").fix


# Packages


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("pip_packages", "numpy>=>1"),
        ("pip_packages", "scikit learn"),
        ("conda_packages", "numpy >= 1.2"),
        ("conda_packages", "numpy[version='>=1']"),
        ("apt_packages", "Curl"),
        ("apt_packages", "curl=latest"),
    ],
)
def test_malformed_package_specifiers(proj, field, bad):
    e = fails(proj, **{field: ["ok-package", bad]})
    assert e.field == field and e.value == bad
    assert repr(bad) in str(e) and e.fix


@pytest.mark.parametrize("field", ["pip_packages", "conda_packages"])
def test_user_packages_cannot_replace_tensorflow(proj, field):
    e = fails(proj, **{field: ["tensorflow-cpu==2.0"]})
    assert "would replace the image's TensorFlow" in str(e)
    assert "tensorflow_version" in e.fix


def test_conda_channel_missing_directory(proj):
    e = fails(proj, conda_channels=["./nowhere"])
    assert e.field == "conda_channels" and "is not a directory" in str(e)


def test_conda_channel_without_repodata(proj):
    (proj / "chan").mkdir()
    e = fails(proj, conda_channels=["./chan"])
    assert "not a conda channel" in str(e) and "index" in e.fix


def test_conda_channel_file_url(proj):
    (proj / "chan" / "linux-64").mkdir(parents=True)
    (proj / "chan" / "linux-64" / "repodata.json").write_text("{}")
    spec = spec_from_mapping(
        {"entry_script": "train.py", "conda_channels": [f"file://{proj / 'chan'}"]}, proj
    )
    assert spec.conda_channels == (str((proj / "chan").resolve()),)


def test_conda_channel_garbage(proj):
    assert "not a channel name, URL or path" in str(fails(proj, conda_channels=["a b"]))


# Other fields


def test_reserved_environment_variables(proj):
    assert "the agent writes it" in fails(proj, environment_variables={"TF_CONFIG": "{}"}).fix
    e = fails(proj, environment_variables={"TF_USE_LEGACY_KERAS": "0"})
    assert "keras: keras3" in e.fix


def test_bad_environment_variable_name(proj):
    e = fails(proj, environment_variables={"1ABC": "x"})
    assert "'1ABC' is not a valid variable name" in str(e)


def test_bad_label_key(proj):
    assert "is not a label key" in str(fails(proj, labels={"my label": "x"}))


@pytest.mark.parametrize("tag", ["Team/Train:1", "localhost:5000/team/train:1:2", "-x"])
def test_bad_image_tag(proj, tag):
    e = fails(proj, tag=tag)
    assert e.field == "tag" and "is not a valid image reference" in str(e)


def test_tag_with_uppercase_explains_why(proj):
    assert "lower case" in str(fails(proj, tag="Team/Train:1"))


def test_custom_base_image_may_have_a_digest(proj):
    ref = "localhost:5000/base@sha256:" + "a" * 64
    spec = spec_from_mapping({"entry_script": "train.py", "custom_docker_base_image": ref}, proj)
    assert spec.custom_docker_base_image == ref


def test_bad_index_url(proj):
    e = fails(proj, pip_index_url="pypi.example.com/simple")
    assert e.field == "pip_index_url" and "not an http(s) or file URL" in str(e)


def test_missing_ca_cert(proj):
    e = fails(proj, ca_certs=["corp.pem"])
    assert e.field == "ca_certs" and "is not a file" in str(e)


def test_unknown_upload_extra(proj):
    e = fails(proj, upload_extras=["gsc"])
    assert "'gsc' is not an upload backend" in str(e) and "did you mean 'gcs'?" in e.fix


# The file itself


def test_yaml_syntax_error_reports_line_and_column(proj):
    (proj / "tfbuild.yaml").write_text("entry_script: train.py\nnode_count: 2\n  bad: indent\n")
    with pytest.raises(SpecError) as e:
        load_spec(proj)
    assert (e.value.line, e.value.column) == (3, 6)
    assert "line 3, column 6: YAML syntax error: mapping values are not allowed" in str(e.value)
    assert str(e.value).startswith(str(proj / "tfbuild.yaml"))


def test_file_that_is_not_a_mapping(proj):
    (proj / "tfbuild.yaml").write_text("- entry_script: train.py\n")
    with pytest.raises(SpecError, match="the file holds a list, not a mapping of keys"):
        load_spec(proj)


def test_duplicate_keys(proj):
    (proj / "tfbuild.yaml").write_text("node_count: 1\nentry_script: train.py\nnode_count: 2\n")
    with pytest.raises(SpecError) as e:
        load_spec(proj)
    assert "duplicate key 'node_count' (first given on line 1)" in str(e.value)
    assert e.value.line == 3


def test_file_that_is_not_utf8(proj):
    (proj / "tfbuild.yaml").write_bytes(b"entry_script: \xff\xfe\n")
    with pytest.raises(SpecError, match="is not UTF-8 text"):
        load_spec(proj)


def test_unreadable_file(proj):
    (proj / "tfbuild.yaml").mkdir()
    with pytest.raises(SpecError, match="cannot be read"):
        load_spec(proj)


def test_missing_explicit_config_file(proj):
    with pytest.raises(SpecError, match="the config file does not exist"):
        load_spec(proj, config_file=proj / "nope.yaml")


def test_python_objects_in_yaml_are_refused(proj):
    (proj / "tfbuild.yaml").write_text("entry_script: !!python/object/apply:os.getcwd []\n")
    with pytest.raises(SpecError, match="YAML syntax error"):
        load_spec(proj)


# Counts that the chosen backend would not use


@pytest.mark.parametrize(
    ("backend", "key", "value", "users"),
    [
        ("mpi", "worker_count", 3, "ps"),
        ("multiworker", "parameter_server_count", 1, "ps"),
        ("none", "worker_count", 2, "ps"),
        ("ps", "process_count_per_node", 2, "none, mpi or multiworker"),
    ],
)
def test_count_the_backend_does_not_use_is_an_error(proj, backend, key, value, users):
    extra = {"worker_count": 1, "parameter_server_count": 1} if backend == "ps" else {}
    e = fails(proj, distributed_backend=backend, **{**extra, key: value})
    assert e.field == key
    assert f"the {backend} backend does not use {key}; only {users} would" in str(e)
    assert f"set distributed_backend to {users}" in e.fix


def test_counts_at_their_defaults_are_accepted_with_any_backend(proj):
    spec = spec_from_mapping(
        {"entry_script": "train.py", "distributed_backend": "mpi", "worker_count": 1,
         "parameter_server_count": 0, "node_count": 2, "horovod": False},
        proj,
    )
    assert (spec.worker_count, spec.parameter_server_count) == (1, 0)


def test_spec_error_is_a_tfbuild_error():
    from tfbuild.errors import TfbuildError

    assert issubclass(SpecError, TfbuildError)


def test_an_entry_script_with_arguments_in_it_names_the_script_to_keep(proj):
    e = fails(proj, entry_script="train.py --epochs")
    assert "has arguments in it" in str(e)
    assert e.fix.startswith("set entry_script: train.py and put the arguments")


def test_a_module_entry_may_be_written_without_the_space(proj):
    spec = spec_from_mapping({"entry_script": "-mpkg.train"}, proj)
    assert spec.entry_script == "-m pkg.train"


def test_the_close_name_is_found_in_subfolders_but_not_in_hidden_ones(proj):
    (proj / "src").mkdir()
    (proj / "src" / "train_model.py").write_text("")
    (proj / ".venv" / "lib").mkdir(parents=True)
    (proj / ".venv" / "lib" / "evaluate.py").write_text("")
    fix = fails(proj, entry_script="src/trian_model.py").fix
    assert "did you mean 'src/train_model.py'?" in fix
    assert "did you mean" not in fails(proj, entry_script=".venv/lib/evaluat.py").fix


@pytest.mark.parametrize(("before", "suggested"), [(1900, True), (2100, False)])
def test_the_search_for_a_close_name_stops_in_a_huge_tree(proj, before, suggested):
    """A source tree with a dataset in it must not make a typo take minutes: the search
    looks at about the first 2000 files (in sorted order) and then gives up."""
    data = proj / "a_data"
    data.mkdir()
    for i in range(before):
        (data / f"{i:05d}.csv").write_text("")
    (proj / "zz").mkdir()  # walked after a_data/
    (proj / "zz" / "train_model.py").write_text("")
    fix = fails(proj, entry_script="zz/trian_model.py").fix
    assert ("did you mean 'zz/train_model.py'?" in fix) is suggested


@pytest.mark.parametrize("items", [[{"a": 1}], [""], ["  "], [["x"]]])
def test_list_items_must_be_single_plain_values(proj, items):
    e = fails(proj, pip_packages=items)
    assert "is not a single text value" in str(e) and e.field == "pip_packages"


@pytest.mark.parametrize("env", [{1: "x"}, {"A": {"b": 1}}, {"A": ["x"]}])
def test_environment_entries_must_be_name_value_text(proj, env):
    e = fails(proj, environment_variables=env)
    assert "is not name: value text" in str(e)


def test_a_bad_count_suggests_a_number_that_would_pass(proj):
    assert fails(proj, parameter_server_count="x").fix == (
        "write a number, e.g. parameter_server_count: 2")


def test_refusals_show_the_value_that_was_refused(proj):
    """The error names the key and the value the user wrote (or the one implied)."""
    matrix = _horovod_fails_from("2.21.0")
    implied = _refused(proj, matrix, tensorflow_version="2.21", distributed_backend="mpi")
    assert implied.value == "mpi"
    explicit = _refused(proj, matrix, tensorflow_version="2.21", distributed_backend="mpi",
                        horovod=True)
    assert explicit.value is True
    assert fails(proj, distributed_backend="multiworker", horovod=True).value is True


@pytest.mark.parametrize(
    ("key", "message"),
    [("worker_count", "the ps backend needs at least one worker, got 0"),
     ("parameter_server_count", "the ps backend needs at least one parameter server, got 0")],
)
def test_a_ps_job_without_workers_or_servers_says_which(proj, key, message):
    data = {"worker_count": 2, "parameter_server_count": 1, key: 0}
    assert message in str(fails(proj, distributed_backend="ps", **data))


@pytest.mark.parametrize("key", ["worker_count", "parameter_server_count"])
def test_negative_task_counts_are_refused_as_such(proj, key):
    assert "-1 is less than 0" in str(fails(proj, distributed_backend="ps", **{key: -1}))


def test_a_count_given_at_its_default_is_fine_for_any_backend(proj):
    spec = spec_from_mapping({"entry_script": "train.py", "distributed_backend": "ps",
                              "process_count_per_node": 1, "worker_count": 1,
                              "parameter_server_count": 1}, proj)
    assert spec.process_count_per_node == 1
    spec = spec_from_mapping({"entry_script": "train.py", "worker_count": 1,
                              "parameter_server_count": 0}, proj)
    assert spec.worker_count == 1


def test_an_unknown_tensorflow_version_suggests_the_newest_minor(proj):
    e = fails(proj, tensorflow_version="9.9")
    newest = e.fix.split("use one of ", 1)[1].split(" (", 1)[0].split(", ")[-1]
    minor = ".".join(newest.split(".")[:2])
    assert e.fix.endswith(f"(or a major.minor such as {minor!r} for its newest patch)")
