"""`tfbuild versions`: the compatibility matrix as a table."""

from __future__ import annotations

import json

import click

from .. import console
from .boundary import handle_errors


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the matrix as JSON.")
@handle_errors
def versions(as_json: bool) -> None:
    """The TensorFlow versions tfbuild knows: Python, CUDA/cuDNN and Horovod for each."""
    from rich.table import Table

    from ..spec.compat import load_matrix

    matrix = load_matrix()
    if as_json:
        rows = []
        for version in matrix.known_tf_versions():
            release = matrix.tf_release(version)
            rows.append({
                "tensorflow": version,
                "default": version == matrix.default_tensorflow,
                "python": list(release.python),
                "cuda": release.cuda,
                "cudnn": release.cudnn,
                "gpu": release.gpu,
                "horovod": release.horovod.version,
                "horovod_verified": release.horovod.verified,
            })
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("TensorFlow", "Python", "CUDA", "cuDNN", "Horovod")
    for version in matrix.known_tf_versions():
        release = matrix.tf_release(version)
        hvd = release.horovod
        horovod = (
            "-" if not hvd.supported else f"{hvd.version}{'' if hvd.verified else ' (untested)'}"
        )
        default = " (default)" if version == matrix.default_tensorflow else ""
        table.add_row(
            version + default, ", ".join(release.python), release.cuda, release.cudnn, horovod
        )
    console.out.print(table)
