"""What gets installed: `pip_packages`, `conda_packages`, `conda_channels`,
`apt_packages` and the agent's `upload_extras` (store backends). The syntax of one
requirement is checked in package_syntax; here, where it may come from."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from tfbuild_agent.contract import UPLOAD_EXTRAS

from .compat import Matrix
from .fields import Fields, did_you_mean
from .package_syntax import PackageSpecError, parse_apt, parse_conda, parse_pip
from .registries import url

_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*$")


def looks_like_local_channel(channel: str) -> bool:
    return channel.startswith(("/", "./", "../", "~", "file:"))


def pip_packages(f: Fields, matrix: Matrix) -> tuple[str, ...]:
    items = f.texts("pip_packages")
    for item in items:
        try:
            req = parse_pip(item)
        except PackageSpecError as e:
            raise f.fail("pip_packages", item, f"{item!r} {e.problem}", e.fix) from None
        _refuse_tensorflow(f, matrix, "pip_packages", item, req.name)
    return items


def conda_packages(f: Fields, matrix: Matrix) -> tuple[str, ...]:
    items = f.texts("conda_packages")
    for item in items:
        try:
            spec = parse_conda(item)
        except PackageSpecError as e:
            raise f.fail("conda_packages", item, f"{item!r} {e.problem}", e.fix) from None
        _refuse_tensorflow(f, matrix, "conda_packages", item, spec.name)
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


def conda_channels(f: Fields, base: Path) -> tuple[str, ...]:
    out = []
    for channel in f.texts("conda_channels"):
        if channel.startswith("file:") or (
            "://" not in channel and looks_like_local_channel(channel)
        ):
            out.append(_local_channel(f, channel, base))
        elif "://" in channel:
            out.append(url(f, "conda_channels", channel))
        elif _CHANNEL_NAME.match(channel):
            out.append(channel)
        else:
            raise f.fail(
                "conda_channels",
                channel,
                f"{channel!r} is not a channel name, URL or path",
                "give a name (conda-forge), a URL, or a path starting with / or ./",
            )
    return tuple(out)


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
