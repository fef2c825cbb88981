"""`tfbuild image` and `tfbuild dockerfile`, and the spec flags they share (the
estimator's parameters; they override tfbuild.yaml)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from tfbuild_agent.contract import BACKENDS, UPLOAD_EXTRAS

from .. import console
from .boundary import handle_errors, pairs


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
            type=click.Choice(BACKENDS),
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
            type=click.Choice(UPLOAD_EXTRAS),
            help="Store backends the agent can upload to (file:// always works).",
        ),
        click.option("--pip-requirements-file",
                     help="A requirements.txt in the source directory to install."),
        click.option("--conda-dependencies-file",
                     help="An environment.yml in the source directory to install."),
        click.option("--max-run-duration-seconds", type=int,
                     help="The agent stops the job after this long (recorded Canceled)."),
        click.option("--shm-size", help="/dev/shm for the job's containers, e.g. 2g "
                     "(the default of `tfbuild run --shm-size`)."),
        click.option("--export-onnx/--no-export-onnx", "export_onnx", default=None,
                     help="Export the saved model to outputs/model.onnx after success."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _load(kwargs: dict[str, Any]) -> Any:
    from ..spec import load_spec

    source = kwargs.pop("source_directory")
    config_file = kwargs.pop("config_file")
    overrides: dict[str, Any] = {}
    for key, value in kwargs.items():
        if value is None or value == ():
            continue
        if key in ("environment_variables", "labels"):
            value = pairs(value, key)
        overrides[key] = list(value) if isinstance(value, tuple) else value
    return load_spec(source, overrides=overrides, config_file=config_file)


@click.command()
@spec_options
@click.option("--tag", "-t", help="Image name (default tfbuild/<source dir>:latest).")
@click.option("--push", is_flag=True, help="Push to the tag's registry after building.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the image name.")
@click.option("--no-cache", is_flag=True, help="Build every step again.")
@click.option(
    "--progress",
    type=click.Choice(["auto", "plain"]),
    default="auto",
    help="plain: one line per step, no live line (for CI and logs).",
)
@handle_errors
def image(
    tag: str | None, push: bool, quiet: bool, no_cache: bool, progress: str, **kwargs: Any
) -> None:
    """Build a training image from SOURCE_DIRECTORY (extra args are baked script params)."""
    from ..errors import SpecError
    from ..image.build import build
    from ..spec import COMMAND_LINE
    from ..spec.registries import IMAGE_REF_FIX, IMAGE_TAG, image_ref_problem

    problem = image_ref_problem(tag, IMAGE_TAG) if tag else None
    if problem:  # before anything is built
        raise SpecError("--tag", tag, problem, IMAGE_REF_FIX, COMMAND_LINE)
    spec = _load(kwargs)
    built, _ = build(spec, tag=tag, push=push, quiet=quiet, nocache=no_cache, progress=progress)
    console.result(built)


@click.command()
@spec_options
@click.option("--context", "show_context", is_flag=True, help="Also list the build context.")
@handle_errors
def dockerfile(show_context: bool, **kwargs: Any) -> None:
    """Print the Dockerfile `tfbuild image` would build, without building."""
    from ..image.build import prepare

    prepared = prepare(_load(kwargs))
    click.echo(prepared.dockerfile, nl=False)
    if show_context:
        click.echo("\n# build context:")
        for name in prepared.context.names():
            click.echo(f"#   {name}")
