"""What gets installed: `pip_packages`, `conda_packages`, `conda_channels`,
`apt_packages`, the dependency files (`pip_requirements_file`,
`conda_dependencies_file`, read in requirements_files) and the agent's
`upload_extras` (store backends). The syntax of one requirement is checked in
package_syntax; here, where it may come from."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tfbuild_agent.contract import UPLOAD_EXTRAS

from .compat import Matrix
from .fields import Fields, did_you_mean
from .package_syntax import PackageSpecError, parse_apt, parse_conda, parse_pip
from .registries import url
from .requirements_files import (
    UNREFERENCED,
    DependencyFileError,
    ImageFacts,
    PipFile,
    inside,
    read_conda_file,
    read_pip_file,
    relative_name,
)

_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*$")


def looks_like_local_channel(channel: str) -> bool:
    return channel.startswith(("/", "./", "../", "~", "file:"))


def pip_packages(f: Fields, matrix: Matrix) -> tuple[str, ...]:
    return _package_list(f, matrix, "pip_packages", parse_pip)


def conda_packages(f: Fields, matrix: Matrix) -> tuple[str, ...]:
    return _package_list(f, matrix, "conda_packages", parse_conda)


def _package_list(f: Fields, matrix: Matrix, key: str, parse: Callable) -> tuple[str, ...]:
    """Every item parses as a package spec of its kind, and none is TensorFlow itself."""
    items = f.texts(key)
    for item in items:
        try:
            name = parse(item).name
        except PackageSpecError as e:
            raise f.fail(key, item, f"{item!r} {e.problem}", e.fix) from None
        _refuse_tensorflow(f, matrix, key, item, name)
    return items


def _refuse_tensorflow(f: Fields, matrix: Matrix, key: str, item: str, name: str) -> None:
    if matrix.is_tensorflow_distribution(name):
        raise f.fail(
            key,
            item,
            f"{item!r} would replace the image's TensorFlow",
            "remove it and choose the version with tensorflow_version (and use_gpu)",
        )


def apt_packages(f: Fields) -> tuple[str, ...]:
    items = f.texts("apt_packages")
    for item in items:
        try:
            parse_apt(item)
        except PackageSpecError as e:
            raise f.fail("apt_packages", item, f"{item!r} {e.problem}", e.fix) from None
    return items


def conda_channels(
    f: Fields, base: Path, from_file: tuple[str, ...] = (), file_dir: Path | None = None
) -> tuple[str, ...]:
    """The listed channels, then those of conda_dependencies_file (local paths there
    are relative to that file)."""
    out = [_channel(f, channel, base) for channel in f.texts("conda_channels")]
    out += [_channel(f, channel, file_dir or base) for channel in from_file]
    return tuple(dict.fromkeys(out))


def _channel(f: Fields, channel: str, base: Path) -> str:
    if channel.startswith("file:") or ("://" not in channel and looks_like_local_channel(channel)):
        return _local_channel(f, channel, base)
    if "://" in channel:
        return url(f, "conda_channels", channel) or channel
    if _CHANNEL_NAME.match(channel):
        return channel
    raise f.fail(
        "conda_channels",
        channel,
        f"{channel!r} is not a channel name, URL or path",
        "give a name (conda-forge), a URL, or a path starting with / or ./",
    )


def _local_channel(f: Fields, channel: str, base: Path) -> str:
    raw = urlsplit(channel).path if channel.startswith("file:") else channel
    path = (base / Path(raw).expanduser()).resolve()
    if not path.is_dir():
        raise f.fail(
            "conda_channels",
            channel,
            f"the local channel {str(path)!r} is not a directory",
            "check the path (paths in tfbuild.yaml are relative to the source directory)",
        )
    if not any(path.glob("*/repodata.json")):
        raise f.fail(
            "conda_channels",
            channel,
            f"{str(path)!r} has no <subdir>/repodata.json, so it is not a conda channel",
            "index it first, e.g. `conda index DIR` or `rattler-index fs DIR`",
        )
    return str(path)


def upload_extras(f: Fields) -> tuple[str, ...]:
    items = f.texts("upload_extras")
    for item in items:
        if item not in UPLOAD_EXTRAS:
            raise f.fail(
                "upload_extras",
                item,
                f"{item!r} is not an upload backend",
                f"{did_you_mean(item, UPLOAD_EXTRAS)}use any of {', '.join(UPLOAD_EXTRAS)}",
            )
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True)
class DependencyFiles:
    """What pip_requirements_file and conda_dependencies_file add to the lists."""

    pip_file: str | None = None
    conda_file: str | None = None
    pip_requirements: tuple[str, ...] = ()
    pip_constraints: tuple[str, ...] = ()
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    conda_packages: tuple[str, ...] = ()
    conda_channels: tuple[str, ...] = ()
    conda_dir: Path | None = None


def dependency_files(f: Fields, base: Path, facts: ImageFacts) -> DependencyFiles:
    """Read both files (when given); note the usual ones that exist but are not used."""
    pip_path = _dependency_path(f, "pip_requirements_file", base)
    conda_path = _dependency_path(f, "conda_dependencies_file", base)
    used = {p.resolve() for p in (pip_path, conda_path) if p}
    for name, key in UNREFERENCED.items():
        candidate = base / name
        if candidate.is_file() and candidate.resolve() not in used and not f.given(key):
            f.notes.append(
                f"{name} is in the source folder but not used; "
                f"set {key}: {name} to install what it lists"
            )
    pip = PipFile()
    conda_packages: list[str] = []
    conda_channels: list[str] = []
    key = "pip_requirements_file"
    try:
        if pip_path:
            pip = read_pip_file(pip_path, base, facts)
        if conda_path:
            key = "conda_dependencies_file"
            conda = read_conda_file(conda_path, base, facts)
            conda_packages, conda_channels = conda.packages, conda.channels
            if pip_path is None:
                pip = conda.pip
            else:
                _merge_pip(pip, conda.pip)
            f.notes.extend(n for n in conda.notes if n not in pip.notes)
    except DependencyFileError as e:
        raise f.fail(key, f.data.get(key), f"{e.where}: {e.problem}", e.fix) from None
    f.notes.extend(pip.notes)
    for u in (pip.index_url, *pip.extra_index_urls):
        if u:
            url(f, "pip_requirements_file" if pip_path else "conda_dependencies_file", u)
    return DependencyFiles(
        pip_file=relative_name(pip_path.resolve(), base) if pip_path else None,
        conda_file=relative_name(conda_path.resolve(), base) if conda_path else None,
        pip_requirements=tuple(pip.requirements),
        pip_constraints=tuple(pip.constraints),
        index_url=pip.index_url,
        extra_index_urls=tuple(pip.extra_index_urls),
        conda_packages=tuple(conda_packages),
        conda_channels=tuple(conda_channels),
        conda_dir=conda_path.parent if conda_path else None,
    )


def _merge_pip(into: PipFile, other: PipFile) -> None:
    into.requirements += [r for r in other.requirements if r not in into.requirements]
    into.constraints += [c for c in other.constraints if c not in into.constraints]
    into.extra_index_urls += [u for u in other.extra_index_urls if u not in into.extra_index_urls]
    if other.index_url and into.index_url and other.index_url != into.index_url:
        raise DependencyFileError(
            other.index_url_where,
            f"another index URL than {into.index_url_where}",
            "keep one --index-url and make the others --extra-index-url",
        )
    if other.index_url and not into.index_url:
        into.index_url, into.index_url_where = other.index_url, other.index_url_where
    into.notes += [n for n in other.notes if n not in into.notes]


def _dependency_path(f: Fields, key: str, base: Path) -> Path | None:
    given = f.text(key)
    if given is None:
        return None
    path = base / Path(given).expanduser()
    if not inside(path, base):
        raise f.fail(
            key,
            given,
            f"{given!r} is outside the source directory",
            "copy the file into the source folder and give its path relative to it",
        )
    if not path.is_file():
        hint = did_you_mean(given, [p.name for p in base.iterdir() if p.is_file()])
        raise f.fail(
            key, given, f"{given!r} is not a file in the source directory",
            f"{hint}give its path relative to the source folder",
        )
    return path


def index_urls(
    f: Fields, files: DependencyFiles
) -> tuple[str | None, tuple[str, ...]]:
    """pip_index_url and pip_extra_index_urls with those the dependency files name."""
    index = url(f, "pip_index_url", f.text("pip_index_url"))
    if files.index_url and index and files.index_url != index:
        raise f.fail(
            "pip_index_url",
            index,
            f"{files.pip_file or files.conda_file} names another index URL",
            "keep one of them (the other may become an extra index URL)",
        )
    extra = [url(f, "pip_extra_index_urls", u) for u in f.texts("pip_extra_index_urls")]
    extra += list(files.extra_index_urls)
    return index or files.index_url, tuple(dict.fromkeys(u for u in extra if u))
