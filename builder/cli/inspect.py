"""`tfbuild inspect IMAGE`: the spec, tfbuild version and source digest recorded in
an image's labels."""

from __future__ import annotations

import json

import click

from .boundary import handle_errors


@click.command()
@click.argument("image_name")
@handle_errors
def inspect(image_name: str) -> None:
    """Show the spec, tfbuild version and source digest recorded in an image."""
    from ..image.build import inspect_labels

    click.echo(json.dumps(inspect_labels(image_name), indent=2, sort_keys=True))
