"""What of tfbuild goes into a training image: the `tfbuild_agent` package and its
own runtime requirements (the `agent` extra), never the builder's libraries."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from packaging.requirements import Requirement

import tfbuild_agent

from .context import BuildContext


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


def add_agent(ctx: BuildContext, prefix: str, store_extras: tuple[str, ...] = ()) -> None:
    ctx.add_bytes(
        f"{prefix}/requirements.txt", "\n".join(agent_requirements(store_extras)).encode() + b"\n"
    )
    ctx.add_tree(agent_package_dir(), f"{prefix}/tfbuild_agent", ["**/__pycache__", "**/*.pyc"])
