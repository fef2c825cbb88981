"""Parsing of pip, conda and apt package specifiers (pure).

Each parser returns a small structure or raises PackageSpecError whose `problem`
and `fix` are phrased for the user.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement


class PackageSpecError(ValueError):
    def __init__(self, text: str, problem: str, fix: str) -> None:
        self.text = text
        self.problem = problem
        self.fix = fix
        super().__init__(f"{text!r} {problem}; {fix}")


@dataclass(frozen=True)
class CondaSpec:
    name: str
    version: str | None = None
    build: str | None = None
    channel: str | None = None


@dataclass(frozen=True)
class AptPackage:
    name: str
    version: str | None = None


def parse_pip(text: str) -> Requirement:
    """A PEP 508 requirement such as `scikit-learn>=1.4` or `pkg[extra]==1.0`."""
    try:
        return Requirement(text)
    except InvalidRequirement as e:
        detail = str(e).splitlines()[0]
        raise PackageSpecError(
            text,
            f"is not a pip requirement ({detail})",
            "write it as pip does, e.g. 'scikit-learn', 'numpy>=1.26' or 'pkg[extra]==1.0'",
        ) from None


# Conda MatchSpec, the subset people write: `name`, `name 1.2.*`, `name >=1,<2 build`,
# `name==1.2`, `name>=1`, `name=1.2=build`, each with an optional `channel::` prefix.
_CONDA_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
_CONDA_OP = r"(?:==|!=|<=|>=|~=|<|>|=)"
_CONDA_VER = r"[0-9A-Za-z*][0-9A-Za-z.*+!_]*"
_CONDA_CONSTRAINT = rf"{_CONDA_OP}?{_CONDA_VER}(?:[,|]{_CONDA_OP}?{_CONDA_VER})*"
_CONDA_BUILD = r"[A-Za-z0-9_.*+]+"
_CONDA_CHANNEL = re.compile(r"^(?P<channel>[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*)::(?P<rest>.*)$")
_CONDA_COMPACT = re.compile(
    rf"^(?P<name>{_CONDA_NAME})"
    rf"(?:(?P<version>{_CONDA_OP}{_CONDA_VER}(?:[,|]{_CONDA_OP}?{_CONDA_VER})*)"
    rf"(?:=(?P<build>{_CONDA_BUILD}))?)?$"
)
_CONDA_EXAMPLES = (
    "e.g. 'numpy', 'numpy 1.26.*', 'numpy>=1.26', 'numpy==1.26.4' or 'numpy 1.26.4 py311*'"
)


def parse_conda(text: str) -> CondaSpec:
    """A conda match spec: `name[ version[ build]]`, `name==1.2`, `name>=1`, `chan::name`."""
    if not isinstance(text, str) or not text.strip():
        raise PackageSpecError(str(text), "is empty", f"name a conda package, {_CONDA_EXAMPLES}")
    spec = text.strip()
    if "[" in spec:
        raise PackageSpecError(
            text,
            "uses bracket options",
            f"write name, version and build instead, {_CONDA_EXAMPLES}",
        )
    channel = None
    m = _CONDA_CHANNEL.match(spec)
    if m:
        channel, spec = m["channel"], m["rest"]
    tokens = spec.split()
    if len(tokens) == 1:
        m = _CONDA_COMPACT.match(tokens[0])
        if m:
            return CondaSpec(m["name"], m["version"], m["build"], channel)
        raise PackageSpecError(text, "is not a conda package spec", f"write it {_CONDA_EXAMPLES}")
    if len(tokens) > 3 or not re.fullmatch(_CONDA_NAME, tokens[0]):
        raise PackageSpecError(
            text,
            "is not a conda package spec",
            f"write 'name version build' with no spaces inside the version, {_CONDA_EXAMPLES}",
        )
    name, version = tokens[0], tokens[1]
    if not re.fullmatch(_CONDA_CONSTRAINT, version):
        raise PackageSpecError(
            text,
            f"has a malformed version {version!r}",
            f"write the version with no spaces inside it, {_CONDA_EXAMPLES}",
        )
    build = tokens[2] if len(tokens) == 3 else None
    if build is not None and not re.fullmatch(_CONDA_BUILD, build):
        raise PackageSpecError(
            text, f"has a malformed build string {build!r}", f"write it {_CONDA_EXAMPLES}"
        )
    return CondaSpec(name, version, build, channel)


# Debian policy: lower case letters, digits, + - . ; at least two characters,
# starting with a letter or digit. Versions: [epoch:]upstream[-revision].
_APT_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_APT_VERSION = re.compile(r"^(?:\d+:)?\d[A-Za-z0-9.+~-]*$")


def parse_apt(text: str) -> AptPackage:
    """A Debian package name with an optional exact `=version`."""
    name, sep, version = str(text).strip().partition("=")
    if not _APT_NAME.match(name):
        raise PackageSpecError(
            str(text),
            "is not a Debian package name",
            "use the lower-case name apt knows, e.g. 'libgomp1' or 'curl=7.88.1-10+deb12u5'",
        )
    if sep and not _APT_VERSION.match(version):
        raise PackageSpecError(
            str(text),
            f"has a malformed version {version!r}",
            "give an exact Debian version after '=', e.g. 'curl=7.88.1-10+deb12u5', or none",
        )
    return AptPackage(name, version or None)
