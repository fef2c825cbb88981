"""Data inputs for `tfbuild run`: `--input NAME=URI` over the inputs baked into the
image, resolved on the host before anything starts. Pure: the caller gives the
recorded spec, the environment, the home and working folders.

- file:// inputs (and plain host paths) are bind-mounted read-only into every
  container under /mnt/tfbuild-inputs/<name>, and the agent is given that URI; a
  baked file:// input whose folder exists on this host is mounted at its own path.
- s3://, az://, gs:// inputs get the host's credentials forwarded (as for uploads)
  and must have their backend in the image (its upload extras).
- The node-local cache of downloaded inputs is the host folder
  $XDG_CACHE_HOME/tfbuild/inputs (~/.cache/tfbuild/inputs), mounted at the agent's
  default cache path, so a rerun on this host does not fetch the same data again.
The run-time URIs reach the agent as TFBUILD_INPUTS (`NAME=URI ...`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfbuild_agent.inputs.fetch import DEFAULT_CACHE
from tfbuild_agent.inputs.plan import (
    NAME,
    OVERRIDE_VARIABLE,
    basename,
    extra_for,
    is_local,
    local_path_of,
    uri_problem,
)

from ..errors import LaunchError
from .store_access import Mount, StoreAccess, store_access

CONTAINER_INPUTS = "/mnt/tfbuild-inputs"
"""Where --input file:// data appears inside the containers (read-only)."""


@dataclass(frozen=True)
class RunInputs:
    env: dict[str, str] = field(default_factory=dict)
    """TFBUILD_INPUTS when --input was given (printed with its value)."""
    host_env: dict[str, str] = field(default_factory=dict)
    """Store credentials forwarded by name."""
    mounts: tuple[Mount, ...] = ()


def host_cache_dir(env: Mapping[str, str], home: Path) -> Path:
    """$XDG_CACHE_HOME/tfbuild/inputs, else ~/.cache/tfbuild/inputs."""
    return Path(env.get("XDG_CACHE_HOME") or str(home / ".cache")) / "tfbuild" / "inputs"


def parse_input(text: str, cwd: Path) -> tuple[str, str]:
    """`NAME=URI` (or NAME=PATH on this host) -> (name, URI)."""
    name, sep, uri = text.partition("=")
    if not sep or not name or not uri:
        raise LaunchError(f"--input {text!r} is not NAME=URI; e.g. --input "
                          "data=s3://bucket/train or --input data=./mnist")
    if not NAME.match(name):
        raise LaunchError(f"--input {text}: {name!r} is not an input name; use letters, "
                          "digits, _ and -, starting with a letter or _")
    if "://" not in uri:
        uri = f"file://{os.path.normpath(cwd / Path(uri).expanduser())}"
    problem = uri_problem(uri)
    if problem:
        raise LaunchError(f"--input {text}: {problem[0]}; {problem[1]}")
    return name, uri


def _mount_local(name: str, uri: str, given: str) -> tuple[str, Mount]:
    host = Path(local_path_of(uri))
    if not host.exists():
        raise LaunchError(f"--input {given}: {host} does not exist on this host; fix the path")
    inside = f"{CONTAINER_INPUTS}/{name}"
    if host.is_file():
        inside = f"{inside}/{basename(uri)}"
    return f"file://{inside}", Mount(str(host), inside, read_only=True)


def run_inputs(
    given: Sequence[str], recorded: Mapping[str, Any], env: Mapping[str, str], home: Path,
    cwd: Path,
) -> RunInputs:
    """What `tfbuild run` adds to every container for the image's inputs and --input."""
    baked = {str(i.get("name")): str(i.get("uri")) for i in recorded.get("inputs") or ()
             if isinstance(i, Mapping)}
    overrides: dict[str, str] = {}
    mounts: list[Mount] = []
    access: list[StoreAccess] = []
    extras = set(recorded.get("upload_extras") or ())
    for text in given:
        name, uri = parse_input(text, cwd)
        if name in overrides:
            raise LaunchError(f"--input {text}: {name} is given twice; keep one")
        if is_local(uri):
            uri, mount = _mount_local(name, uri, text)
            mounts.append(mount)
        else:
            extra = extra_for(uri)
            if recorded and extra not in extras:
                raise LaunchError(
                    f"--input {text}: the image has no {extra} backend to read "
                    f"{uri.split('://')[0]}:// with; rebuild it with --upload-extra {extra} "
                    "(or `upload_extras: [...]` in tfbuild.yaml)")
            access.append(store_access(uri, env, home))
        overrides[name] = uri
    for name, uri in baked.items():
        if name in overrides:
            continue
        if is_local(uri) and Path(local_path_of(uri)).exists():
            path = local_path_of(uri)
            mounts.append(Mount(path, path, read_only=True))
        elif not is_local(uri):
            access.append(store_access(uri, env, home))
    if baked or overrides:
        mounts.append(Mount(str(host_cache_dir(env, home)), DEFAULT_CACHE))
    host_env: dict[str, str] = {}
    for a in access:
        host_env.update(a.env)
        mounts += [m for m in a.mounts if m not in mounts]
    out_env = {OVERRIDE_VARIABLE: " ".join(f"{n}={u}" for n, u in overrides.items())}
    return RunInputs(out_env if overrides else {}, host_env, tuple(mounts))
