"""`tfbuild versions`: the compatibility matrix as a table."""

from __future__ import annotations

import click

from .. import console


@click.command()
def versions() -> None:
    """The TensorFlow versions tfbuild knows: Python, CUDA/cuDNN and Horovod for each."""
    from rich.table import Table

    from ..spec.compat import load_matrix

    matrix = load_matrix()
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
