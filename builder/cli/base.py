"""`tfbuild base`: make tfbuild's Debian base image offline."""

from __future__ import annotations

import click

from .. import console
from .boundary import handle_errors


@click.command()
@click.option(
    "--suite",
    default="bookworm",
    show_default=True,
    help="Debian release (bookworm has Python 3.11, trixie 3.13).",
)
@click.option("--tag", help="Image name (default tfbuild/debian:SUITE).")
@click.option(
    "--mirror",
    default="http://deb.debian.org/debian",
    show_default=True,
    help="Debian mirror; point it at your own on an air-gapped network.",
)
@click.option("--force", is_flag=True, help="Remake the image even if it exists.")
@handle_errors
def base(suite: str, tag: str | None, mirror: str, force: bool) -> None:
    """Make a Debian base image offline (debootstrap + import), no registry needed."""
    from ..engine.bootstrap import make_base_image

    console.result(make_base_image(suite=suite, tag=tag, mirror=mirror, force=force))
