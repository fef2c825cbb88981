"""The compatibility matrix (base-images/compat.yaml) and its accessors."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from tfbuild.spec import compat
from tfbuild.spec.compat import CompatError, Matrix, UnknownTFVersion

REPO = Path(__file__).resolve().parents[2]
COMPAT_YAML = REPO / "base-images" / "compat.yaml"


def raw_matrix() -> dict:
    return yaml.safe_load(COMPAT_YAML.read_text())


def test_lists_the_releases_in_version_order():
    known = compat.known_tf_versions()
    for version in ("2.15.1", "2.16.2", "2.17.1", "2.18.1", "2.19.1", "2.20.0", "2.21.0"):
        assert version in known
    assert known.index("2.16.2") < known.index("2.21.0")  # numeric, not text, order


def test_default_is_a_known_release():
    m = compat.load_matrix()
    assert m.default_tensorflow == "2.21.0"
    assert m.default_tensorflow in compat.known_tf_versions()


@pytest.mark.parametrize(
    ("asked", "resolved"),
    [("2.18", "2.18.1"), ("2.18.1", "2.18.1"), (" 2.21 ", "2.21.0"), ("2.15", "2.15.1")],
)
def test_resolves_major_minor_to_newest_patch(asked, resolved):
    assert compat.resolve_tf_version(asked) == resolved


@pytest.mark.parametrize("asked", ["2.18.0", "2.99", "3", "latest", ""])
def test_unknown_versions_raise_with_the_known_list(asked):
    with pytest.raises(UnknownTFVersion) as e:
        compat.resolve_tf_version(asked)
    assert e.value.known == tuple(compat.known_tf_versions())
    assert "2.21.0" in str(e.value)


@pytest.mark.parametrize(
    ("tf", "pythons", "cuda", "cudnn"),
    [
        ("2.15", ("3.9", "3.10", "3.11"), "12.2", "8.9"),
        ("2.16", ("3.9", "3.10", "3.11", "3.12"), "12.3", "8.9"),
        ("2.17", ("3.9", "3.10", "3.11", "3.12"), "12.3", "8.9"),
        ("2.18", ("3.9", "3.10", "3.11", "3.12"), "12.5", "9.3"),
        ("2.19", ("3.9", "3.10", "3.11", "3.12"), "12.5", "9.3"),
        ("2.20", ("3.9", "3.10", "3.11", "3.12", "3.13"), "12.5", "9.3"),
        ("2.21", ("3.10", "3.11", "3.12", "3.13"), "12.5", "9.3"),
    ],
)
def test_tested_build_table(tf, pythons, cuda, cudnn):
    release = compat.tf_release(tf)
    assert compat.python_versions(tf) == pythons
    assert (release.cuda, release.cudnn) == (cuda, cudnn)
    assert release.gpu is True
    assert (release.cpu_package, release.gpu_package) == ("tensorflow-cpu", "tensorflow[and-cuda]")


@pytest.mark.parametrize(
    ("tf", "python"), [("2.15", "3.11"), ("2.18", "3.11"), ("2.19", "3.11"), ("2.21", "3.11")]
)
def test_default_python_is_the_first_listed_debian_suites(tf, python):
    assert compat.default_python(tf) == python


def test_default_python_falls_back_when_debian_ships_none_of_them():
    data = raw_matrix()
    data["tensorflow"]["2.21.0"]["python"] = ["3.10", "3.12"]
    assert Matrix.from_mapping(data).default_python("2.21") == "3.12"


@pytest.mark.parametrize(
    ("python", "suite"), [("3.11", "bookworm"), ("3.13", "trixie"), ("3.12", None)]
)
def test_debian_suite_for_python(python, suite):
    assert compat.debian_suite_for_python(python) == suite


@pytest.mark.parametrize("tf", ["2.15", "2.16", "2.17", "2.18", "2.19", "2.20", "2.21"])
def test_horovod_verified_releases(tf):
    support = compat.horovod_for(tf)
    assert support is not None
    assert (support.version, support.verified) == ("0.28.1", True)


@pytest.mark.parametrize("tf", ["2.15", "2.16", "2.17", "2.18"])
def test_horovod_builds_unpatched_where_it_can(tf):
    assert compat.horovod_for(tf).patches == ()


@pytest.mark.parametrize("tf", ["2.19", "2.20", "2.21"])
def test_horovod_is_patched_for_newer_releases(tf):
    assert compat.horovod_for(tf).patches == ("0001-xla-ops-only-before-tf-2.19.patch",)


def test_every_horovod_patch_exists_and_names_the_releases_it_is_for():
    """A patch's header says which TF releases it fixes; compat.yaml applies it to
    exactly those (and every file in the folder is applied somewhere)."""
    m = compat.load_matrix()
    folder = REPO / "base-images" / "patches" / "horovod"
    used: dict[str, set[str]] = {}
    for release in m.releases.values():
        for name in release.horovod.patches:
            path = folder / release.horovod.version / name
            assert path.is_file(), f"{release.version} lists {name}, missing at {path}"
            used.setdefault(str(path), set()).add(release.minor)
    files = {str(p) for p in folder.glob("*/*.patch")}
    assert set(used) == files, "a patch no release applies, or a listed patch missing"
    for path, minors in used.items():
        header = Path(path).read_text().split("\n--- a/", 1)[0]
        assert "Fixes:" in header, path
        line = next(x for x in header.splitlines() if x.startswith("TensorFlow:"))
        assert {v.strip() for v in line.split(":", 1)[1].split(",")} == minors, path


def test_horovod_tf_versions():
    assert compat.load_matrix().horovod_tf_versions() == [
        "2.15.1", "2.16.2", "2.17.1", "2.18.1", "2.19.1", "2.20.0", "2.21.0"
    ]


def test_horovod_gpu_build_follows_the_cuda_row():
    packages, env = compat.horovod_build().gpu_for("12.5")
    assert "cuda-nvcc-12-5" in packages and "libnccl-dev" in packages
    assert env["HOROVOD_GPU_OPERATIONS"] == "NCCL"
    assert env["HOROVOD_CUDA_HOME"] == "/usr/local/cuda-12.5"


def test_pip_requirements_cpu_legacy_keras():
    assert compat.tf_pip_requirements("2.18", gpu=False, keras="legacy") == [
        "tensorflow-cpu==2.18.1",
        "tensorboard>=2.18,<2.19",
        "tf-keras~=2.18.0",
    ]


def test_pip_requirements_gpu_keras3_has_no_tf_keras():
    assert compat.tf_pip_requirements("2.21", gpu=True, keras="keras3") == [
        "tensorflow[and-cuda]==2.21.0",
        "tensorboard~=2.21.0",
    ]


def test_tf_215_ships_keras2_so_legacy_adds_nothing():
    reqs = compat.tf_pip_requirements("2.15", gpu=False, keras="legacy")
    assert not any(r.startswith("tf-keras") for r in reqs)
    assert compat.runtime_env("2.15", "legacy") == {}


def test_runtime_env_sets_legacy_keras_only_when_asked():
    assert compat.runtime_env("2.21", "legacy") == {"TF_USE_LEGACY_KERAS": "1"}
    assert compat.runtime_env("2.21", "keras3") == {}


def test_keras_mode_is_checked():
    with pytest.raises(ValueError, match="keras must be one of legacy, keras3"):
        compat.tf_pip_requirements("2.21", gpu=False, keras="keras2")


@pytest.mark.parametrize("tf", compat.known_tf_versions())
def test_each_release_pins_companions_of_its_own_minor(tf):
    """tensorboard and tf-keras requirements must accept the release's own X.Y.0."""
    release = compat.tf_release(tf)
    for text in compat.tf_pip_requirements(tf, gpu=True, keras="legacy"):
        Requirement(text)  # each one is valid PEP 508
    assert Requirement(release.tensorboard).specifier.contains(f"{release.minor}.0")
    if release.tf_keras:
        assert Requirement(release.tf_keras).specifier.contains(f"{release.minor}.0")
        assert not Requirement(release.tf_keras).specifier.contains("2.99.0")


def test_mpi_side():
    m = compat.load_matrix()
    assert m.openmpi_packages == ("openmpi-bin", "libopenmpi-dev")
    assert compat.mpi4py_requirement() == "mpi4py==4.1.2"
    assert compat.horovod_build_env() == {
        "HOROVOD_WITH_TENSORFLOW": "1",
        "HOROVOD_WITH_MPI": "1",
        "HOROVOD_WITH_GLOO": "1",
        "HOROVOD_WITHOUT_PYTORCH": "1",
        "HOROVOD_WITHOUT_MXNET": "1",
    }
    for pkg in ("g++", "cmake", "make", "libopenmpi-dev", "python3-dev"):
        assert pkg in m.horovod_build.apt_packages


def test_mpi_build_packages_add_horovods_without_duplicates():
    with_hvd = compat.mpi_build_packages(horovod=True)
    without = compat.mpi_build_packages(horovod=False)
    assert "cmake" in with_hvd and "cmake" not in without
    assert "libopenmpi-dev" in without
    assert len(with_hvd) == len(set(with_hvd))


def test_tensorflow_distributions_match_canonically():
    m = compat.load_matrix()
    assert m.is_tensorflow_distribution("TensorFlow_CPU")
    assert not m.is_tensorflow_distribution("tensorflow-datasets")


def test_load_matrix_is_cached():
    assert compat.load_matrix() is compat.load_matrix()


# A broken compat.yaml fails at load, naming the key.


def test_missing_key_is_named():
    data = raw_matrix()
    del data["tensorflow"]["2.18.1"]["cudnn"]
    with pytest.raises(CompatError, match=r"tensorflow\.2\.18\.1: missing key 'cudnn'"):
        Matrix.from_mapping(data)


def test_unquoted_python_version_is_refused():
    data = raw_matrix()
    data["tensorflow"]["2.18.1"]["python"] = [3.1]  # what YAML makes of an unquoted 3.10
    with pytest.raises(CompatError, match="quoted string"):
        Matrix.from_mapping(data)


def test_default_must_be_listed():
    data = raw_matrix()
    data["default_tensorflow"] = "2.99.0"
    with pytest.raises(CompatError, match="default_tensorflow"):
        Matrix.from_mapping(data)


def test_unsupported_horovod_needs_a_reason():
    data = copy.deepcopy(raw_matrix())
    data["tensorflow"]["2.21.0"]["horovod"] = {"version": None}
    with pytest.raises(CompatError, match="reason"):
        Matrix.from_mapping(data)


# Only compat.yaml names versions.


def _version_literals() -> set[str]:
    m = compat.load_matrix()
    literals = set()
    for version, release in m.releases.items():
        literals |= {version, release.minor}
        if release.horovod.version:
            literals.add(release.horovod.version)
    literals.add(m.mpi4py_version)
    return literals


def literal_pattern(versions: set[str]) -> re.Pattern[str]:
    """A version as a whole token: not 12.21, not 2.21.3 (unless listed itself)."""
    alternatives = "|".join(re.escape(v) for v in sorted(versions, key=len, reverse=True))
    return re.compile(rf"(?<![\w.])({alternatives})(?![\w]|\.\d)")


def test_no_version_literals_outside_the_matrix():
    pattern = literal_pattern(_version_literals())
    files = sorted((REPO / "builder").glob("*.py")) + sorted((REPO / "base-images").rglob("*.j2"))
    assert files, "the scan found no files"
    found = []
    for path in files:
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            for m in pattern.finditer(line):
                found.append(f"{path.relative_to(REPO)}:{lineno}: {m.group(0)}")
    assert not found, "version literals belong in base-images/compat.yaml:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("line", "hit"),
    [
        ('pip install "tensorflow-cpu==2.21"', "2.21"),
        ("FROM x AS tf-2.18.1", "2.18.1"),
        ("horovod==0.28.1", "0.28.1"),
        ("version 12.21.3", None),
        ("curl=7.88.1-10", None),
    ],
)
def test_literal_scan_catches_versions_only(line, hit):
    m = literal_pattern(_version_literals()).search(line)
    assert (m.group(0) if m else None) == hit
