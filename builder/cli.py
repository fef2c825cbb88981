"""The `tfbuild` command: build training images and run jobs with them."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import __version__, console
from .errors import TfbuildError
from .launcher_cli import run
from .runs_cli import runs


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{v!r} is not KEY=VALUE", param_hint=what)
        out[key] = val
    return out


def spec_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The estimator's parameters as flags; they override tfbuild.yaml."""
    options = [
        click.argument("source_directory", type=click.Path(file_okay=False, path_type=Path)),
        click.argument("script_params", nargs=-1, type=click.UNPROCESSED),
        click.option(
            "--config",
            "config_file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Spec file (default: SOURCE_DIRECTORY/tfbuild.yaml if present).",
        ),
        click.option("--entry-script", help="train.py, run.sh, or '-m package.module'."),
        click.option("--pip", "pip_packages", multiple=True, help="A pip requirement (repeat)."),
        click.option("--conda", "conda_packages", multiple=True, help="A conda package (repeat)."),
        click.option(
            "--conda-channel",
            "conda_channels",
            multiple=True,
            help="A conda channel URL or local path (repeat).",
        ),
        click.option("--apt", "apt_packages", multiple=True, help="A Debian package (repeat)."),
        click.option(
            "--tf-version",
            "tensorflow_version",
            help="TensorFlow version (see `tfbuild versions`).",
        ),
        click.option("--python-version", help="Python version, e.g. 3.11."),
        click.option("--gpu/--cpu", "use_gpu", default=None, help="Build the GPU variant."),
        click.option(
            "--base-image",
            "custom_docker_base_image",
            help="Your own base image instead of tfbuild's offline Debian base.",
        ),
        click.option(
            "--backend",
            "distributed_backend",
            type=click.Choice(["none", "mpi", "ps", "multiworker"]),
        ),
        click.option("--node-count", type=int),
        click.option("--process-count-per-node", type=int),
        click.option("--worker-count", type=int),
        click.option("--parameter-server-count", "--ps-count", "parameter_server_count", type=int),
        click.option(
            "--horovod/--no-horovod",
            default=None,
            help="With --backend mpi: build Horovod (default) or mpi4py only.",
        ),
        click.option(
            "--keras",
            type=click.Choice(["legacy", "keras3"]),
            help="legacy: tf-keras with TF_USE_LEGACY_KERAS=1 (works distributed).",
        ),
        click.option("--env", "environment_variables", multiple=True, help="KEY=VALUE (repeat)."),
        click.option("--label", "labels", multiple=True, help="KEY=VALUE (repeat)."),
        click.option(
            "--ca-cert",
            "ca_certs",
            multiple=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help="Extra CA certificate (PEM) trusted in the build and the image.",
        ),
        click.option(
            "--trust-host-ca/--no-trust-host-ca",
            "trust_host_ca",
            default=None,
            help="Trust this host's CA bundle in the build and the image.",
        ),
        click.option(
            "--pip-index-url", help="Private index; ${VAR} and ~/.netrc give credentials."
        ),
        click.option("--pip-extra-index-url", "pip_extra_index_urls", multiple=True),
        click.option(
            "--upload-extra",
            "upload_extras",
            multiple=True,
            type=click.Choice(["s3", "azure", "gcs"]),
            help="Store backends the agent can upload to (file:// always works).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _load(kwargs: dict[str, Any]) -> Any:
    from .spec import load_spec

    source = kwargs.pop("source_directory")
    config_file = kwargs.pop("config_file")
    overrides: dict[str, Any] = {}
    for key, value in kwargs.items():
        if value is None or value == ():
            continue
        if key in ("environment_variables", "labels"):
            value = _pairs(value, key)
        overrides[key] = list(value) if isinstance(value, tuple) else value
    return load_spec(source, overrides=overrides, config_file=config_file)


def handle_errors(f: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .spec import SpecError

        try:
            return f(*args, **kwargs)
        except (TfbuildError, SpecError) as e:
            console.fail(str(e))
            log_tail = getattr(e, "log_tail", "")
            if log_tail:
                console.err.print("[dim]last lines of the failing step:[/]")
                console.err.print(log_tail, markup=False, highlight=False)
            sys.exit(getattr(e, "exit_code", 1))

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tfbuild")
def cli() -> None:
    """Build TensorFlow training images and run distributed jobs with them.

    \b
    tfbuild image my-proj --entry-script train.py --pip scikit-learn --tag REG/train:1 --push
    docker run REG/train:1 --batch-size 50
    tfbuild run REG/train:1 --nodes 2 --backend multiworker --upload-to file:///tmp/runs
    """


@cli.command()
@handle_errors
def engine() -> None:
    """Make sure a Docker engine answers (as root: install and start dockerd)."""
    from .engine_setup import ensure_engine

    console.out.print(f"Docker engine {ensure_engine()} is ready")


@cli.command()
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
    from .bootstrap import make_base_image

    console.out.print(make_base_image(suite=suite, tag=tag, mirror=mirror, force=force))


@cli.command()
@spec_options
@click.option("--tag", "-t", help="Image name (default tfbuild/<source dir>:latest).")
@click.option("--push", is_flag=True, help="Push to the tag's registry after building.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the image name.")
@click.option("--no-cache", is_flag=True, help="Build every step again.")
@handle_errors
def image(tag: str | None, push: bool, quiet: bool, no_cache: bool, **kwargs: Any) -> None:
    """Build a training image from SOURCE_DIRECTORY (extra args are baked script params)."""
    from .image import build

    spec = _load(kwargs)
    built, _ = build(spec, tag=tag, push=push, quiet=quiet, nocache=no_cache)
    console.out.print(built)


@cli.command()
@spec_options
@click.option("--context", "show_context", is_flag=True, help="Also list the build context.")
@handle_errors
def dockerfile(show_context: bool, **kwargs: Any) -> None:
    """Print the Dockerfile `tfbuild image` would build, without building."""
    from .image import prepare

    prepared = prepare(_load(kwargs))
    click.echo(prepared.dockerfile, nl=False)
    if show_context:
        click.echo("\n# build context:")
        for name in prepared.context.names():
            click.echo(f"#   {name}")


@cli.command()
@click.argument("image_name")
@handle_errors
def inspect(image_name: str) -> None:
    """Show the spec, tfbuild version and source digest recorded in an image."""
    from .image import inspect_labels

    click.echo(json.dumps(inspect_labels(image_name), indent=2, sort_keys=True))


@cli.command()
def versions() -> None:
    """The TensorFlow versions tfbuild knows: Python, CUDA/cuDNN and Horovod for each."""
    from rich.table import Table

    from .compat import load_matrix

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


cli.add_command(run)
cli.add_command(runs)


def main() -> None:
    cli(prog_name="tfbuild")
