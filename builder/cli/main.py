"""The `tfbuild` command group: every command of the host CLI, assembled."""

from __future__ import annotations

import click

from .. import __version__
from .base import base
from .engine import engine
from .image import dockerfile, image
from .inspect import inspect
from .run import run
from .runs import runs
from .versions import versions


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tfbuild")
def cli() -> None:
    """Build TensorFlow training images and run distributed jobs with them.

    \b
    tfbuild image my-proj --entry-script train.py --pip scikit-learn --tag REG/train:1 --push
    docker run REG/train:1 --batch-size 50
    tfbuild run REG/train:1 --nodes 2 --backend multiworker --upload-to file:///tmp/runs
    """


for command in (engine, base, image, dockerfile, inspect, versions, run, runs):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="tfbuild")
