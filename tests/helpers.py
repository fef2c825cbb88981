"""Helpers shared by the test tiers (importable as `helpers`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import socket
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_project(source: Path, tag: str, **overrides) -> str:
    """Build a tfbuild image from `source` (a real build on the real engine)."""
    from tfbuild.image.build import build
    from tfbuild.spec import load_spec

    if HOST_CA.exists():
        overrides.setdefault("trust_host_ca", True)
    spec = load_spec(source, overrides=overrides)
    built, _ = build(spec, tag=tag, quiet=True)
    return built
