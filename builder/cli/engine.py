"""`tfbuild engine`: make sure a Docker engine answers."""

from __future__ import annotations

import click

from .. import console
from .boundary import handle_errors


@click.command()
@handle_errors
def engine() -> None:
    """Make sure a Docker engine answers (as root: install and start dockerd)."""
    from ..engine.setup import ensure_engine

    console.result(f"Docker engine {ensure_engine()} is ready")
