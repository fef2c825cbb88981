"""pip, conda and apt specifier parsing (builder/packages.py)."""

from __future__ import annotations

import pytest

from tfbuild.spec.package_syntax import (
    AptPackage,
    CondaSpec,
    PackageSpecError,
    parse_apt,
    parse_conda,
    parse_pip,
)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("scikit-learn", "scikit-learn"),
        ("numpy>=1.26,<2", "numpy"),
        ("pkg[extra]==1.0", "pkg"),
        ('pywin32; sys_platform == "win32"', "pywin32"),
        ("mypkg @ https://example.com/mypkg-1.0-py3-none-any.whl", "mypkg"),
    ],
)
def test_pip_valid(text, name):
    assert parse_pip(text).name == name


@pytest.mark.parametrize("text", ["numpy>=>1", "scikit learn", "==1.0", "pkg[", ""])
def test_pip_invalid(text):
    with pytest.raises(PackageSpecError) as e:
        parse_pip(text)
    assert "is not a pip requirement" in e.value.problem
    assert "numpy>=1.26" in e.value.fix


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("numpy", CondaSpec("numpy")),
        ("numpy 1.26.*", CondaSpec("numpy", "1.26.*")),
        ("numpy >=1.26,<2 py311h1234_0", CondaSpec("numpy", ">=1.26,<2", "py311h1234_0")),
        ("numpy==1.26.4", CondaSpec("numpy", "==1.26.4")),
        ("numpy>=1", CondaSpec("numpy", ">=1")),
        ("numpy=1.26=py311*", CondaSpec("numpy", "=1.26", "py311*")),
        ("python_abi 3.11.* *_cp311", CondaSpec("python_abi", "3.11.*", "*_cp311")),
        ("conda-forge::numpy>=1", CondaSpec("numpy", ">=1", None, "conda-forge")),
        ("libfoo 1.0|1.2", CondaSpec("libfoo", "1.0|1.2")),
    ],
)
def test_conda_valid(text, spec):
    assert parse_conda(text) == spec


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("numpy >= 1.2", "malformed version"),
        ("numpy 1.2 build extra", "is not a conda package spec"),
        ("numpy[version='>=1']", "bracket options"),
        ("num py>", "malformed version"),
        ("numpy>>1", "is not a conda package spec"),
        ("", "is empty"),
        ("numpy 1.2 bu(ld", "malformed build string"),
    ],
)
def test_conda_invalid(text, problem):
    with pytest.raises(PackageSpecError) as e:
        parse_conda(text)
    assert problem in e.value.problem
    assert "numpy 1.26.*" in e.value.fix


@pytest.mark.parametrize(
    ("text", "pkg"),
    [
        ("curl", AptPackage("curl")),
        ("libstdc++6", AptPackage("libstdc++6")),
        ("python3.11-dev", AptPackage("python3.11-dev")),
        ("curl=7.88.1-10+deb12u5", AptPackage("curl", "7.88.1-10+deb12u5")),
        ("openssl=1:3.0.11-1~deb12u2", AptPackage("openssl", "1:3.0.11-1~deb12u2")),
    ],
)
def test_apt_valid(text, pkg):
    assert parse_apt(text) == pkg


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Curl", "is not a Debian package name"),
        ("c", "is not a Debian package name"),
        ("curl wget", "is not a Debian package name"),
        ("curl=latest", "malformed version"),
        ("curl=", "malformed version"),
    ],
)
def test_apt_invalid(text, problem):
    with pytest.raises(PackageSpecError) as e:
        parse_apt(text)
    assert problem in e.value.problem
