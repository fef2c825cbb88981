"""pip_requirements_file and conda_dependencies_file: what is read, what is refused
(naming file:line and the fix), and what the build context gets."""

from __future__ import annotations

from pathlib import Path

import pytest
from spec_checks import fails, spec

from tfbuild.image.build import prepare
from tfbuild.spec import load_spec
from tfbuild.spec.requirements_files import logical_lines


def write(proj: Path, name: str, text: str) -> None:
    path = proj / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_logical_lines_drop_comments_and_join_continuations():
    text = "# top\nnumpy  # pinned later\n\npandas>=2 \\\n  ; python_version >= '3.9'\nurl#frag\n"
    assert logical_lines(text) == [
        (2, "numpy"),
        (4, "pandas>=2 ; python_version >= '3.9'"),
        (6, "url#frag"),
    ]


def test_requirements_with_includes_constraints_and_hashes(proj):
    write(
        proj,
        "requirements.txt",
        "-r reqs/base.txt\n-c constraints.txt\n--pre\nrequests==2.32.3 --hash=sha256:abc\n",
    )
    write(proj, "reqs/base.txt", "numpy\n-r more.txt\n")
    write(proj, "reqs/more.txt", "scipy>=1.11\n")
    write(proj, "constraints.txt", "numpy<2.4\n")
    s = spec(proj, pip_requirements_file="requirements.txt")
    assert s.pip_requirements_file == "requirements.txt"
    assert s.pip_requirements == (
        "numpy",
        "scipy>=1.11",
        "--pre",
        "requests==2.32.3 --hash=sha256:abc",
    )
    assert s.pip_constraints == ("numpy<2.4",)
    assert s.pip_packages == ()


def test_index_options_become_tfbuilds_private_index_settings(proj):
    write(
        proj,
        "requirements.txt",
        "-i https://${IDX_USER}@pypi.example.com/simple\n"
        "--extra-index-url https://mirror.example.com/simple\ninternal-lib==1.0\n",
    )
    s = spec(proj, pip_requirements_file="requirements.txt")
    assert s.pip_index_url == "https://${IDX_USER}@pypi.example.com/simple"
    assert s.pip_extra_index_urls == ("https://mirror.example.com/simple",)
    assert s.pip_requirements == ("internal-lib==1.0",)


def test_a_second_index_in_the_spec_is_a_conflict(proj):
    write(proj, "requirements.txt", "--index-url https://a.example.com/simple\nx\n")
    e = fails(
        proj, pip_requirements_file="requirements.txt", pip_index_url="https://b.example.com/simple"
    )
    assert e.field == "pip_index_url" and "requirements.txt names another index URL" in str(e)


@pytest.mark.parametrize(
    ("line", "problem", "fix"),
    [
        ("--frobnicate", "'--frobnicate' is not supported", "tfbuild reads requirements, -r"),
        ("-e ./mylib", "-e is not supported", "list the package by name"),
        ("--find-links ./wheels", "--find-links is not supported", "serve the files from an index"),
        ("--trusted-host pypi.example.com", "--trusted-host is not supported", "ca_certs"),
        ("--no-index", "--no-index is not supported", "pip_index_url"),
        ("./libs/mine", "is a local path", "build a wheel"),
        (
            "git+https://example.com/x.git#egg=xlib",
            "URL without a package name",
            "'xlib @ git+https://example.com/x.git'",
        ),
        ("numpy>=>1", "is not a pip requirement", "write it as pip does"),
        ("numpy --install-option=x", "after a requirement is not supported", "--hash"),
        ("tensorflow<2.20", "does not accept the image's TensorFlow 2.21.0", "tensorflow_version"),
        ("-r ../outside.txt", "is outside the source directory", "copy the file"),
        ("-r missing.txt", "'missing.txt' does not exist", "check the path"),
    ],
)
def test_refused_lines_name_file_line_and_fix(proj, line, problem, fix):
    write(proj, "requirements.txt", f"numpy\n{line}\n")
    (proj.parent / "outside.txt").write_text("x\n")
    e = fails(proj, pip_requirements_file="requirements.txt")
    assert e.field == "pip_requirements_file"
    assert "requirements.txt:2: " in e.problem, e.problem
    assert problem in e.problem, e.problem
    assert fix in e.fix, e.fix


def test_errors_in_an_included_file_name_that_file(proj):
    write(proj, "requirements.txt", "-r base.txt\n")
    write(proj, "base.txt", "numpy\n\n--frobnicate\n")
    assert "base.txt:3: " in fails(proj, pip_requirements_file="requirements.txt").problem


def test_circular_includes_are_refused(proj):
    write(proj, "requirements.txt", "-r base.txt\n")
    write(proj, "base.txt", "-r requirements.txt\n")
    assert "includes itself" in fails(proj, pip_requirements_file="requirements.txt").problem


def test_the_images_tensorflow_is_skipped_with_a_note(proj):
    write(proj, "requirements.txt", "tensorflow==2.21.*\nnumpy\n")
    s = spec(proj, pip_requirements_file="requirements.txt")
    assert s.pip_requirements == ("numpy",)
    assert any("requirements.txt:1: 'tensorflow==2.21.*' skipped" in n for n in s.notes)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("nope.txt", "is not a file in the source directory"),
        ("../outside.txt", "is outside the source directory"),
    ],
)
def test_the_key_must_name_a_file_in_the_source_directory(proj, value, problem):
    (proj.parent / "outside.txt").write_text("x\n")
    e = fails(proj, pip_requirements_file=value)
    assert e.field == "pip_requirements_file" and problem in e.problem


ENVIRONMENT = """\
name: proj
channels:
  - conda-forge
  - defaults
dependencies:
  - python=3.11
  - pip
  - zlib 1.3.*
  - conda-forge::jq
  - pip:
      - rich
      - -r requirements.txt
"""


def test_environment_file_channels_dependencies_and_pip_section(proj):
    write(proj, "environment.yml", ENVIRONMENT)
    write(proj, "requirements.txt", "numpy\n")
    s = spec(proj, conda_dependencies_file="environment.yml", conda_packages=["libzlib"])
    assert s.conda_packages == ("libzlib", "zlib 1.3.*", "conda-forge::jq")
    assert s.conda_channels == ("conda-forge",)
    assert s.pip_requirements == ("rich", "numpy")
    notes = "\n".join(s.notes)
    assert "channel 'defaults' skipped" in notes
    assert "'python=3.11' skipped" in notes


def test_both_files_together(proj):
    write(proj, "environment.yml", "dependencies:\n  - jq\n  - pip: [rich]\n")
    write(proj, "requirements.txt", "numpy\n")
    s = spec(
        proj, conda_dependencies_file="environment.yml", pip_requirements_file="requirements.txt"
    )
    assert s.pip_requirements == ("numpy", "rich") and s.conda_packages == ("jq",)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("dependencies:\n  - python=3.12\n", "asks for another Python than the image's 3.11"),
        ("dependencies:\n  - numpy >= 1.2\n", "item 1: 'numpy >= 1.2' has a malformed version"),
        ("variables:\n  A: b\n", "tfbuild does not read variables"),
        ("build: x\n", "'build' is not a key of an environment file"),
        ("dependencies:\n  - {npm: [x]}\n", "is not a package spec"),
        ("dependencies:\n  - pip:\n      - --frobnicate\n", "pip item 1"),
        ("dependencies: [a\n", "environment.yml:2: YAML syntax error"),
        ("- a\n", "the file is not a mapping"),
    ],
)
def test_environment_file_problems(proj, text, problem):
    write(proj, "environment.yml", text)
    e = fails(proj, conda_dependencies_file="environment.yml")
    assert e.field == "conda_dependencies_file"
    assert problem in e.problem, e.problem


def test_unreferenced_dependency_files_get_a_note(proj):
    write(proj, "requirements.txt", "numpy\n")
    write(proj, "environment.yml", "dependencies: [jq]\n")
    notes = spec(proj).notes
    assert (
        "requirements.txt is in the source folder but not used; "
        "set pip_requirements_file: requirements.txt to install what it lists"
    ) in notes
    assert any(n.startswith("environment.yml is in the source folder but not used") for n in notes)
    assert not [
        n
        for n in spec(proj, pip_requirements_file="requirements.txt").notes
        if n.startswith("requirements.txt is")
    ]


def test_the_path_spellings_of_the_estimator_point_to_the_key(proj):
    assert "pip_requirements_file" in fails(proj, pip_requirements_file_path="r.txt").fix
    assert "conda_dependencies_file" in fails(proj, conda_dependencies_file_path="e.yml").fix


def test_build_context_copies_only_the_flattened_lists(proj):
    write(proj, "requirements.txt", "-r base.txt\n-c c.txt\n-i https://pypi.example.com/simple\n")
    write(proj, "base.txt", "numpy\n")
    write(proj, "c.txt", "numpy<3\n")
    write(proj, "tfbuild.yaml", "entry_script: train.py\npip_requirements_file: requirements.txt\n")
    prepared = prepare(load_spec(proj))
    files = prepared.context.files
    assert files["tfbuild/requirements/requirements.txt"] == b"numpy\n"
    assert files["tfbuild/requirements/constraints.txt"] == b"numpy<3\n"
    # The index went to pip.conf (build stage only), not into the copied list.
    assert b"pypi.example.com" in files["tfbuild/pip/pip.conf"]
    install = prepared.dockerfile.index("-r /tmp/tfbuild-requirements/requirements.txt")
    assert prepared.dockerfile.index("COPY tfbuild/requirements/") < install
    assert install < prepared.dockerfile.index("COPY src/")


def test_a_code_edit_leaves_the_package_steps_unchanged(proj):
    write(proj, "requirements.txt", "numpy\n")
    # On the command line the path is relative to the working directory.
    data = {"entry_script": "train.py", "pip_requirements_file": str(proj / "requirements.txt")}
    before = prepare(load_spec(proj, data))
    assert before.layers.pip_requirements
    (proj / "train.py").write_text("print('edited')\n")
    after = prepare(load_spec(proj, data))
    head = before.dockerfile.split("COPY src/")[0]
    assert head == after.dockerfile.split("COPY src/")[0]
    for name in before.context.files:
        if name.startswith(("tfbuild/requirements/", "tfbuild/pip")):
            assert before.context._read(name) == after.context._read(name)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2g", True),
        ("512m", True),
        ("1.5GiB", True),
        ("1073741824", True),
        ("lots", False),
        ("0", False),
    ],
)
def test_shm_size(proj, value, ok):
    if ok:
        assert spec(proj, shm_size=value).shm_size == value
    else:
        assert "is not a size" in fails(proj, shm_size=value).problem


def test_max_run_duration_seconds(proj):
    assert spec(proj, max_run_duration_seconds=20).max_run_duration_seconds == 20
    assert spec(proj).max_run_duration_seconds is None
    assert "less than 1" in fails(proj, max_run_duration_seconds=0).problem
    assert "whole number" in fails(proj, max_run_duration_seconds="soon").problem
