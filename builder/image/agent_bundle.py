"""What of tfbuild goes into a training image: the `tfbuild_agent` package and its
own runtime requirements (the `agent` extra), never the builder's libraries.

The agent's requirements are pure Python (watchdog, fsspec). When the builder's own
environment has them installed at versions that satisfy the requirements and the image's
Python, their files go into the build context as they are (`site/`), and the image's agent
venv is made without pip at all: no index to reach, no resolver, ~10 s off a cold build.
Anything else (an fsspec backend asked for with `upload_extras`, a compiled or missing
distribution) falls back to `pip install -r requirements.txt` in the agent stage."""

from __future__ import annotations

import importlib.metadata
from importlib.metadata import Distribution, PackageNotFoundError
from pathlib import Path, PurePosixPath

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

import tfbuild_agent

from .context import BuildContext

COMPILED_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")
DROPPED_METADATA = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
"""Installer bookkeeping (and, for direct_url.json, a host path) that the image needs not."""


def agent_requirements(store_extras: tuple[str, ...] = ()) -> list[str]:
    """Requirements of the `agent` extra plus the fsspec backends asked for."""
    wanted = {"agent", *store_extras}
    reqs: list[str] = []
    for raw in importlib.metadata.requires("tfbuild") or []:
        req = Requirement(raw)
        if req.marker and any(req.marker.evaluate({"extra": e}) for e in wanted):
            req.marker = None
            reqs.append(str(req))
    return sorted(set(reqs))


def agent_package_dir() -> Path:
    return Path(tfbuild_agent.__file__).parent


def vendorable(requirements: list[str], python_version: str) -> list[Distribution] | None:
    """The installed distributions that satisfy `requirements` and what they require in
    turn, when every one is pure Python and supports `python_version` (the image's);
    None when any is missing, too old, compiled or for another Python."""
    target = {"python_version": python_version, "python_full_version": f"{python_version}.0",
              "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
              "extra": ""}
    found: dict[str, Distribution] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        if req.marker and not req.marker.evaluate(target):
            continue
        key = req.name.lower().replace("_", "-")
        try:
            dist = found.get(key) or importlib.metadata.distribution(req.name)
        except PackageNotFoundError:
            return None
        if not req.specifier.contains(dist.version, prereleases=True):
            return None
        if key in found:
            continue
        needs_python = dist.metadata.get("Requires-Python")
        if needs_python and not SpecifierSet(needs_python).contains(target["python_full_version"]):
            return None
        wheel = dist.read_text("WHEEL") or ""
        files = dist.files or []
        if "Root-Is-Purelib: true" not in wheel or not files or any(
            str(f).endswith(COMPILED_SUFFIXES) for f in files
        ):
            return None
        found[key] = dist
        todo += [Requirement(r) for r in dist.requires or []]
    return [found[k] for k in sorted(found)]


def add_agent(
    ctx: BuildContext, prefix: str, store_extras: tuple[str, ...] = (), python_version: str = ""
) -> bool:
    """Put the agent into the context under `prefix`; True when its requirements are in
    `prefix/site/` (the image needs no pip for them), False when requirements.txt must be
    installed with pip. Without `python_version`, always the pip way."""
    requirements = agent_requirements(store_extras)
    ctx.add_bytes(f"{prefix}/requirements.txt", "\n".join(requirements).encode() + b"\n")
    ctx.add_tree(agent_package_dir(), f"{prefix}/tfbuild_agent", ["**/__pycache__", "**/*.pyc"])
    dists = vendorable(requirements, python_version) if python_version else None
    if dists is None:
        return False
    for dist in dists:
        for rel in dist.files or []:
            path = PurePosixPath(str(rel))
            if (".." in path.parts or "__pycache__" in path.parts or path.suffix == ".pyc"
                    or (path.parent.name.endswith(".dist-info") and path.name in DROPPED_METADATA)):
                continue  # console scripts (outside site-packages), bytecode, bookkeeping
            ctx.add_bytes(f"{prefix}/site/{path}", Path(str(dist.locate_file(rel))).read_bytes())
    return True
