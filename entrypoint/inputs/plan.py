"""Data inputs, the pure part: what was declared, what the run overrides, which local
path each one gets, the script's argv with those paths in it, and cache keys.

A data input is a store URI (file://, s3://, az://, abfs://, gs://) the script reads.
The builder bakes them into job.json as `inputs` (name, uri, mode, arg); `arg` inputs
came from a `{download: URI}` script param and appear in the baked script params as a
placeholder (contract.INPUT_PLACEHOLDER) that `substitute` replaces with the local path.
Every input's path is also exported as TFBUILD_INPUT_<NAME> (`env_name`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Any

from ..contract import INPUT_MODES, INPUT_PLACEHOLDER, INPUTS_DIR
from ..errors import ConfigError
from ..sync.store import BACKENDS

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
ENV_PREFIX = "TFBUILD_" + "INPUT_"
"""Prefix of the variables holding each input's local path (TFBUILD_INPUT_<NAME>)."""
OVERRIDE_VARIABLE = "TFBUILD_INPUTS"
"""`NAME=URI` entries separated by spaces or newlines: run-time URIs for inputs."""


@dataclass(frozen=True)
class Input:
    name: str
    uri: str
    mode: str = "download"
    arg: bool = False
    """True when the path goes into the script's argv (a `{download: URI}` param)."""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "uri": self.uri, "mode": self.mode, "arg": self.arg}


@dataclass(frozen=True)
class Entry:
    """One stored file of an input: path relative to the input's root, size, version."""

    rel: str
    size: int
    version: str
    """What the store says identifies this content (ETag, generation, mtime)."""


def env_name(name: str) -> str:
    """TFBUILD_INPUT_<NAME>: upper case, every character other than A-Z, 0-9 becomes _
    (`data-folder` -> TFBUILD_INPUT_DATA_FOLDER)."""
    return ENV_PREFIX + re.sub(r"[^A-Z0-9]", "_", name.upper())


def placeholder(name: str) -> str:
    return INPUT_PLACEHOLDER.format(name=name)


def name_from_flag(flag: str) -> str:
    """The input name of a script param: `--data-folder` -> `data-folder`."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", flag.lstrip("-").split("=", 1)[0])
    if name and not (name[0].isalpha() or name[0] == "_"):
        name = "_" + name
    return name[:64]


def uri_problem(uri: Any) -> tuple[str, str] | None:
    """(what is wrong, how to fix it) for an input URI, or None when it is usable."""
    fix_any = "write file:///ABSOLUTE/PATH, s3://BUCKET/KEY, az://CONTAINER/PATH or gs://BUCKET/KEY"
    if not isinstance(uri, str) or not uri.strip():
        return (f"{uri!r} is not a URI", fix_any)
    text = uri.strip()
    if "://" not in text:
        if text.startswith("/"):
            return (f"{text!r} is a path, not a URI", f"write file://{text}")
        return (f"{text!r} is not a URI", fix_any)
    protocol, rest = text.split("://", 1)
    if protocol.lower() not in BACKENDS:
        return (f"{protocol}:// is not a store tfbuild reads from",
                "use file://, s3://, az://, abfs:// or gs://")
    if protocol.lower() == "file":
        if not rest.startswith("/"):
            return (f"{text!r} has a relative path", "a file:// URI needs an absolute path: "
                    "file:///data/train")
        return None
    bucket = rest.split("/", 1)[0]
    if not bucket:
        return (f"{text!r} names no bucket or container", f"write {protocol}://NAME/PATH")
    return None


def extra_for(uri: str) -> str:
    """The tfbuild upload extra whose package reads `uri` ("" for file://)."""
    return BACKENDS[uri.split("://", 1)[0].lower()][1]


def is_local(uri: str) -> bool:
    return uri.split("://", 1)[0].lower() == "file"


def local_path_of(uri: str) -> str:
    """The path of a file:// URI."""
    return uri.split("://", 1)[1]


def check_input(item: Input, where: str) -> Input:
    """Raise ConfigError naming `where` when an input is not usable."""
    if not NAME.match(item.name):
        raise ConfigError(
            f"{where}: input name {item.name!r} is not usable; use letters, digits, _ and -, "
            "starting with a letter or _"
        )
    problem = uri_problem(item.uri)
    if problem:
        raise ConfigError(f"{where}: input {item.name}: {problem[0]}; {problem[1]}")
    if item.mode not in INPUT_MODES:
        raise ConfigError(
            f"{where}: input {item.name}: mode {item.mode!r} is unknown; use "
            f"{' or '.join(INPUT_MODES)}"
        )
    return replace(item, uri=item.uri.strip())


def from_job(raw: Iterable[Mapping[str, Any]]) -> tuple[Input, ...]:
    """job.json's `inputs` -> checked Inputs (names unique, variables distinct)."""
    out: list[Input] = []
    for item in raw:
        if not isinstance(item, Mapping) or "name" not in item or "uri" not in item:
            raise ConfigError(f"job.json: input {item!r} is not name + uri; rebuild the image")
        out.append(check_input(Input(str(item["name"]), str(item["uri"]),
                                     str(item.get("mode", "download")), bool(item.get("arg"))),
                               "job.json"))
    return check_unique(out, "job.json")


def check_unique(items: Sequence[Input], where: str) -> tuple[Input, ...]:
    seen: dict[str, str] = {}
    for item in items:
        var = env_name(item.name)
        if var in seen:
            raise ConfigError(
                f"{where}: inputs {seen[var]!r} and {item.name!r} both become {var}; "
                "rename one of them"
            )
        seen[var] = item.name
    return tuple(items)


def parse_overrides(text: str) -> dict[str, str]:
    """TFBUILD_INPUTS (`NAME=URI` entries separated by white space) -> {name: uri}."""
    out: dict[str, str] = {}
    for entry in text.split():
        name, sep, uri = entry.partition("=")
        if not sep or not name:
            raise ConfigError(
                f"{OVERRIDE_VARIABLE}: {entry!r} is not NAME=URI; write e.g. "
                f"{OVERRIDE_VARIABLE}='data=s3://bucket/train other=file:///mnt/x'"
            )
        out[name] = uri
    return out


def apply_overrides(declared: Sequence[Input], overrides: Mapping[str, str]) -> tuple[Input, ...]:
    """Run-time URIs over the declared ones (mode and argv place kept); an unknown name
    becomes a new input at inputs/<name> (downloaded)."""
    by_name = {i.name: i for i in declared}
    out = [replace(i, uri=overrides[i.name]) if i.name in overrides else i for i in declared]
    out += [Input(n, u) for n, u in overrides.items() if n not in by_name]
    return check_unique([check_input(i, OVERRIDE_VARIABLE) for i in out], OVERRIDE_VARIABLE)


def effective(declared: Sequence[Input], env: Mapping[str, str]) -> tuple[Input, ...]:
    """Declared inputs with TFBUILD_INPUTS applied."""
    text = env.get(OVERRIDE_VARIABLE, "").strip()
    return apply_overrides(declared, parse_overrides(text)) if text else tuple(declared)


def used(inputs: Sequence[Input], argv: Sequence[str]) -> tuple[Input, ...]:
    """Inputs the run needs: every named input, and argv inputs whose placeholder is
    still in the argv (a flag given at run time replaces the baked one)."""
    tokens = set(argv)
    return tuple(i for i in inputs if not i.arg or placeholder(i.name) in tokens)


def substitute(argv: Sequence[str], paths: Mapping[str, str]) -> list[str]:
    """Each placeholder token -> its input's local path."""
    by_token = {placeholder(name): path for name, path in paths.items()}
    return [by_token.get(token, token) for token in argv]


def link_path(workdir: str, name: str) -> str:
    """Where an input appears: <workdir>/inputs/<name>."""
    return str(PurePosixPath(workdir) / INPUTS_DIR / name)


def script_path(workdir: str, name: str, is_file: bool, uri: str) -> str:
    """The path the script gets: the folder for a folder input; for a single file the
    file, under its own name, inside the input's folder (suffixes keep their meaning)."""
    base = link_path(workdir, name)
    return f"{base}/{basename(uri)}" if is_file else base


def basename(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1] or "data"


def cache_key(uri: str, is_file: bool, entries: Sequence[Entry]) -> str:
    """Same URI and same listing (paths, sizes, versions) -> same key: a changed
    object, a new or removed file of a folder gives a new key."""
    listing = sorted((e.rel, e.size, e.version) for e in entries)
    blob = json.dumps([uri.rstrip("/"), is_file, listing], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


_VERSION_FIELDS = ("ETag", "etag", "generation", "md5Hash", "content_md5", "mtime",
                   "LastModified", "last_modified", "updated", "created")


def version_of(info: Mapping[str, Any]) -> str:
    """What identifies an object's content in an fsspec info dict: the store's ETag or
    generation where it has one, else its modification time."""
    for key in _VERSION_FIELDS:
        value = info.get(key)
        if value not in (None, ""):
            return f"{key}={value}"
    return ""
