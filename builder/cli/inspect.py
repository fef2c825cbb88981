"""`tfbuild inspect IMAGE`: the spec, tfbuild version and source digest recorded in
an image's labels."""

from __future__ import annotations

import json

import click

from .boundary import handle_errors


@click.command()
@click.argument("image_name")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON (the default output is JSON already; for scripts, say so).")
@handle_errors
def inspect(image_name: str, as_json: bool) -> None:
    """Show the spec, tfbuild version and source digest recorded in an image (JSON)."""
    from ..image.build import inspect_labels

    click.echo(json.dumps(inspect_labels(image_name), indent=2, sort_keys=True))
