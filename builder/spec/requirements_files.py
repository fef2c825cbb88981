"""The estimator's dependency files: a pip requirements.txt (`pip_requirements_file`)
and a conda environment.yml (`conda_dependencies_file`), read into plain package lists.

The files are flattened here, not copied as they are: `-r` includes are followed
(inside the source directory only), `-c` constraints collected, index options lifted
into tfbuild's own private-index settings (so credentials stay in build stages), and
anything pip would need the source tree or the network layout for is refused with the
line it is on. The build then copies only the flattened lists into the image before
installing them, so editing code does not invalidate the package layers.

Reading files is the only I/O; everything else is pure and unit-tested.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.version import InvalidVersion, Version

from .package_syntax import PackageSpecError, parse_conda, parse_pip
from .yaml_reader import YamlSyntaxError, parse_yaml

UNREFERENCED = {
    "requirements.txt": "pip_requirements_file",
    "environment.yml": "conda_dependencies_file",
    "environment.yaml": "conda_dependencies_file",
}
"""Files that usually hold a project's dependencies, and the key that would use them."""

# Global options pip accepts in a requirements file that are safe to hand on as written.
_PASSTHROUGH = {"--pre", "--prefer-binary", "--require-hashes", "--only-binary", "--no-binary"}
_TAKES_VALUE = {"--only-binary", "--no-binary"}
_REFUSED = {
    "-e": "tfbuild installs packages before it copies the source; list the package by name "
    "(or `name @ URL`), or keep its code in the source folder, which is on the script's path",
    "--editable": "",  # same as -e, filled in below
    "-f": "serve the files from an index and add it with --extra-index-url or pip_extra_index_urls",
    "--find-links": "",
    "--no-index": "remove it: tfbuild needs an index for the image's own packages; "
    "set pip_index_url to your index instead",
    "--trusted-host": "remove it: tfbuild trusts an index through CA certificates; "
    "add yours with ca_certs (or trust_host_ca: true)",
    "--use-feature": "remove it; tfbuild runs the image's pip with its default features",
    "--config-settings": "remove it, or build the wheel yourself and serve it from an index",
    "--global-option": "remove it, or build the wheel yourself and serve it from an index",
}
_REFUSED["--editable"] = _REFUSED["-e"]
_REFUSED["--find-links"] = _REFUSED["-f"]
_OPTION = re.compile(r"^(?P<name>--?[A-Za-z][A-Za-z-]*)(?:(?:=|\s+)(?P<value>.*))?$")
_SHORT_GLUED = re.compile(r"^-(?P<name>[rcif])(?P<value>\S.*)$")
_HASH = re.compile(r"^--hash(?:=|\s+)\S+$")


class DependencyFileError(ValueError):
    """A line of a dependency file is wrong: where (file:line), what, and the fix."""

    def __init__(self, where: str, problem: str, fix: str) -> None:
        super().__init__(f"{where}: {problem}; {fix}")
        self.where = where
        self.problem = problem
        self.fix = fix


@dataclass
class PipFile:
    """What a requirements file (and everything it includes) asks pip for."""

    requirements: list[str] = field(default_factory=list)
    """Requirement lines (per-requirement `--hash` options kept) and pass-through options."""
    constraints: list[str] = field(default_factory=list)
    index_url: str | None = None
    index_url_where: str = ""
    extra_index_urls: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class CondaFile:
    packages: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    pip: PipFile = field(default_factory=PipFile)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ImageFacts:
    """What the image already provides, for lines that ask for it again."""

    tensorflow_version: str
    python_version: str
    is_tensorflow: Callable[[str], bool]


def relative_name(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def inside(path: Path, root: Path) -> bool:
    resolved = path.resolve()
    return resolved == root or root in resolved.parents


# ---------------------------------------------------------------- requirements.txt


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each logical line: comments removed, `\\`
    continuations joined, blank lines dropped. Pure."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw)
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        joined = " ".join((pending + line).split())
        pending = ""
        if joined:
            out.append((start, joined))
    if pending.strip():
        out.append((start, " ".join(pending.split())))
    return out


def read_pip_file(path: Path, root: Path, facts: ImageFacts) -> PipFile:
    """Read `path` (inside `root`, the source directory) and what it includes."""
    out = PipFile()
    _PipReader(root, facts, out).read(path, constraint=False, chain=())
    return out


def _read_text(path: Path, root: Path, where: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DependencyFileError(
            where, f"{relative_name(path, root)!r} does not exist", "check the path"
        ) from None
    except UnicodeDecodeError:
        raise DependencyFileError(where, "the file is not UTF-8 text", "save it as UTF-8") from None
    except OSError as e:
        raise DependencyFileError(
            where, f"cannot read {relative_name(path, root)!r} ({e.strerror})", "check the file"
        ) from None


def pip_section_lines(
    items: list[str], base_file: Path, root: Path, facts: ImageFacts, out: PipFile, where: str
) -> None:
    """The `pip:` list of an environment.yml: requirement lines, `-r` relative to it."""
    reader = _PipReader(root, facts, out)
    for n, item in enumerate(items, start=1):
        reader.line(base_file, f"{where} pip item {n}", item.strip(), False, (base_file,))


@dataclass
class _PipReader:
    """One walk through a requirements file and its includes, into `out`."""

    root: Path
    facts: ImageFacts
    out: PipFile

    def read(self, path: Path, *, constraint: bool, chain: tuple[Path, ...]) -> None:
        name = relative_name(path, self.root)
        for number, line in logical_lines(_read_text(path, self.root, name)):
            self.line(path, f"{name}:{number}", line, constraint, (*chain, path))

    def line(
        self, path: Path, where: str, line: str, constraint: bool, chain: tuple[Path, ...]
    ) -> None:
        if line.startswith("-"):
            _pip_option(self, path, where, line, constraint, chain)
            return
        requirement, options = _split_options(line)
        for option in options:
            if not _HASH.match(option):
                raise DependencyFileError(
                    where,
                    f"the option {option.split('=')[0].split()[0]!r} after a requirement "
                    "is not supported",
                    "keep only --hash options on requirement lines",
                )
        _check_requirement(where, requirement)
        text = " ".join([requirement, *options])
        if _is_tensorflow_line(self.facts, self.out, where, requirement):
            return
        (self.out.constraints if constraint else self.out.requirements).append(text)


def _split_options(line: str) -> tuple[str, list[str]]:
    """`pkg==1 --hash=sha256:..` -> ("pkg==1", ["--hash=sha256:.."])."""
    parts = re.split(r"\s+(?=--)", line)
    return parts[0], parts[1:]


def _check_requirement(where: str, text: str) -> None:
    if text.startswith((".", "/", "~", "file:")) or re.match(r"^[A-Za-z]:[\\/]", text):
        raise DependencyFileError(
            where,
            f"{text!r} is a local path, but tfbuild installs packages before it copies the source",
            "build a wheel and serve it from an index, or keep the code in the source "
            "folder, which is on the script's path",
        )
    if re.match(r"^[a-z+]+://", text):
        egg = re.search(r"[#&]egg=([A-Za-z0-9_.-]+)", text)
        named = f"{egg.group(1)} @ {text.split('#')[0]}" if egg else f"NAME @ {text}"
        raise DependencyFileError(
            where, f"{text!r} is a URL without a package name", f"write it as {named!r}"
        )
    try:
        parse_pip(text)
    except PackageSpecError as e:
        raise DependencyFileError(where, f"{text!r} {e.problem}", e.fix) from None


def _is_tensorflow_line(facts: ImageFacts, out: PipFile, where: str, text: str) -> bool:
    """True when the line asks for TensorFlow itself: skipped with a note when the
    image's release satisfies it, refused when it does not."""
    req = parse_pip(text)
    if not facts.is_tensorflow(req.name):
        return False
    if req.marker is not None and not req.marker.evaluate(
        {"python_version": facts.python_version, "python_full_version": facts.python_version}
    ):
        return True
    if req.specifier and not req.specifier.contains(facts.tensorflow_version, prereleases=True):
        raise DependencyFileError(
            where,
            f"{text!r} does not accept the image's TensorFlow {facts.tensorflow_version}",
            "set tensorflow_version to a release it accepts, or loosen the line",
        )
    out.notes.append(
        f"{where}: {text!r} skipped: the image already has TensorFlow "
        f"{facts.tensorflow_version} (tensorflow_version)"
    )
    return True


def _pip_option(
    reader: _PipReader,
    path: Path,
    where: str,
    line: str,
    constraint: bool,
    chain: tuple[Path, ...],
) -> None:
    root, out = reader.root, reader.out
    m = _SHORT_GLUED.match(line) if not line.startswith("--") else None
    if m and not line[2:3].isspace():
        name, value = "-" + m["name"], m["value"].strip()
    else:
        m = _OPTION.match(line)
        if not m:
            raise DependencyFileError(where, f"{line!r} is not an option pip knows", "remove it")
        name, value = m["name"], (m["value"] or "").strip()
    long = {"-r": "--requirement", "-c": "--constraint", "-i": "--index-url"}.get(name, name)
    if long in ("--requirement", "--constraint"):
        if not value:
            raise DependencyFileError(where, f"{name} needs a file name", f"write {name} FILE")
        target = (path.parent / value).resolve()
        if not inside(target, root):
            raise DependencyFileError(
                where,
                f"{value!r} is outside the source directory",
                "copy the file into the source folder and refer to it from there",
            )
        if target in chain:
            raise DependencyFileError(
                where,
                f"{value!r} includes itself (directly or through others)",
                "remove the circular include",
            )
        if not target.is_file():
            raise DependencyFileError(where, f"{value!r} does not exist", "check the path")
        reader.read(target, constraint=constraint or long == "--constraint", chain=chain)
    elif long == "--index-url":
        if out.index_url and out.index_url != value:
            raise DependencyFileError(
                where,
                f"a second index URL (the first is at {out.index_url_where})",
                "keep one --index-url and make the others --extra-index-url",
            )
        out.index_url, out.index_url_where = value, where
    elif long == "--extra-index-url":
        if value and value not in out.extra_index_urls:
            out.extra_index_urls.append(value)
    elif long in _REFUSED:
        raise DependencyFileError(
            where, f"{name} is not supported in tfbuild builds", _REFUSED[long]
        )
    elif long in _PASSTHROUGH:
        if long in _TAKES_VALUE and not value:
            raise DependencyFileError(where, f"{name} needs a value", f"write {name} :all:")
        if constraint:
            return
        text = f"{long} {value}" if value else long
        if text not in out.requirements:
            out.requirements.append(text)
    else:
        raise DependencyFileError(
            where,
            f"the option {name!r} is not supported in a requirements file tfbuild reads",
            "remove it; tfbuild reads requirements, -r, -c, --index-url, "
            "--extra-index-url, --hash, --pre, --prefer-binary, --only-binary, "
            "--no-binary and --require-hashes",
        )


# ---------------------------------------------------------------- environment.yml

_CONDA_KEYS = ("name", "channels", "dependencies", "prefix")


def read_conda_file(path: Path, root: Path, facts: ImageFacts) -> CondaFile:
    """environment.yml: `channels`, `dependencies` and their `pip:` section."""
    name = relative_name(path, root)
    text = _read_text(path, root, name)
    try:
        data = parse_yaml(text)
    except YamlSyntaxError as e:
        where = f"{name}:{e.line}" if e.line else name
        raise DependencyFileError(where, e.problem, "fix the YAML there") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DependencyFileError(
            name, "the file is not a mapping", "write `channels:` and `dependencies:` keys"
        )
    out = CondaFile()
    for key in data:
        if key == "variables":
            raise DependencyFileError(
                f"{name}: variables",
                "tfbuild does not read variables from this file",
                "move them to environment_variables in tfbuild.yaml",
            )
        if key not in _CONDA_KEYS:
            raise DependencyFileError(
                f"{name}: {key}",
                f"{key!r} is not a key of an environment file",
                f"use {', '.join(_CONDA_KEYS)}",
            )
    channels = data.get("channels") or []
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise DependencyFileError(
            f"{name}: channels", "is not a list of channel names", "write channels: [conda-forge]"
        )
    for channel in channels:
        if channel == "nodefaults":
            continue
        if channel == "defaults":
            out.notes.append(
                f"{name}: channel 'defaults' skipped: tfbuild solves from the channels it "
                "is given (conda-forge when none); add https://repo.anaconda.com/pkgs/main "
                "as a channel if you need Anaconda's"
            )
            continue
        out.channels.append(channel)
    deps = data.get("dependencies") or []
    if not isinstance(deps, list):
        raise DependencyFileError(
            f"{name}: dependencies",
            "is not a list",
            "write dependencies: [numpy, {pip: [requests]}]",
        )
    for n, dep in enumerate(deps, start=1):
        where = f"{name}: dependencies item {n}"
        if isinstance(dep, dict) and set(dep) == {"pip"}:
            items = dep["pip"] or []
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise DependencyFileError(
                    where,
                    "the pip section is not a list of lines",
                    "write pip: [requests, -r requirements.txt]",
                )
            pip_section_lines(items, path, root, facts, out.pip, name)
            continue
        if not isinstance(dep, str | int | float) or isinstance(dep, bool):
            raise DependencyFileError(
                where,
                f"{dep!r} is not a package spec",
                "list conda package specs and one {pip: [...]} entry",
            )
        _conda_dependency(out, where, str(dep), facts)
    out.notes += out.pip.notes
    return out


def _conda_dependency(out: CondaFile, where: str, text: str, facts: ImageFacts) -> None:
    try:
        spec = parse_conda(text)
    except PackageSpecError as e:
        raise DependencyFileError(where, f"{text!r} {e.problem}", e.fix) from None
    if spec.name == "pip":
        return  # the image's venv has pip
    if spec.name == "python":
        wanted = (spec.version or "").lstrip("=")
        if (
            wanted
            and re.fullmatch(r"[0-9.*]+", wanted)
            and not _same_python(wanted, facts.python_version)
        ):
            raise DependencyFileError(
                where,
                f"{text!r} asks for another Python than the image's {facts.python_version}",
                f"set python_version: {'.'.join(wanted.split('.')[:2])!r} in tfbuild.yaml, "
                "or change the line",
            )
        out.notes.append(
            f"{where}: {text!r} skipped: the image's Python is {facts.python_version} "
            "(python_version)"
        )
        return
    if facts.is_tensorflow(spec.name):
        wanted = (spec.version or "").lstrip("=")
        if wanted and not _version_prefix(wanted, facts.tensorflow_version):
            raise DependencyFileError(
                where,
                f"{text!r} does not match the image's TensorFlow {facts.tensorflow_version}",
                "set tensorflow_version to the release you want, and drop the line",
            )
        out.notes.append(
            f"{where}: {text!r} skipped: the image already has TensorFlow "
            f"{facts.tensorflow_version} (tensorflow_version)"
        )
        return
    out.packages.append(text)


def _same_python(wanted: str, python: str) -> bool:
    return _version_prefix(wanted, python) or _version_prefix(python, wanted)


def _version_prefix(wanted: str, actual: str) -> bool:
    """`2.21.*`, `2.21` or `2.21.0` against 2.21.0: does `wanted` name that release?"""
    parts = wanted.rstrip(".*").split(".")
    try:
        return Version(actual).release[: len(parts)] == tuple(int(p) for p in parts)
    except (InvalidVersion, ValueError):
        return False
