"""`tfbuild run IMAGE --nodes N ...`: the local compute target."""

from __future__ import annotations

import sys
from typing import Any

import click

from tfbuild_agent.contract import BACKENDS, DEFAULT_GRACE_SECONDS

from .. import console
from .boundary import handle_errors, pairs


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("image")
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
@click.option("--nodes", "-n", default=1, show_default=True, help="Containers to start.")
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    help="Override the image's distributed backend.",
)
@click.option("--workers", type=int, help="worker_count override (ps backend).")
@click.option("--ps", "ps_count", type=int, help="parameter_server_count override (ps backend).")
@click.option("--upload-to", help="Where outputs and logs go: file:///dir, s3://, az://, gs://.")
@click.option(
    "--discovery",
    type=click.Choice(["explicit", "dns", "rendezvous"]),
    default="explicit",
    show_default=True,
    help="How the agents find each other.",
)
@click.option("--env", "-e", "env", multiple=True, help="KEY=VALUE for every container.")
@click.option(
    "--grace",
    default=int(DEFAULT_GRACE_SECONDS),
    show_default=True,
    help="Seconds between SIGTERM and kill.",
)
@click.option(
    "--print",
    "print_only",
    is_flag=True,
    help="Print the equivalent plain docker commands and exit.",
)
def run(
    image: str,
    script_args: tuple[str, ...],
    nodes: int,
    backend: str | None,
    workers: int | None,
    ps_count: int | None,
    upload_to: str | None,
    discovery: str,
    env: tuple[str, ...],
    grace: int,
    print_only: bool,
) -> None:
    """Run IMAGE as a job of --nodes containers on this Docker engine.

    Arguments after the image (use `--` before ones starting with a dash) are
    given to the entry script, over the params baked into the image.
    """
    from ..run.launch import new_job
    from ..run.local import LocalJob

    @handle_errors
    def go() -> None:
        extra: dict[str, Any] = pairs(env, "--env")
        if workers is not None:
            extra["TFBUILD_WORKERS"] = str(workers)
        if ps_count is not None:
            extra["TFBUILD_PS"] = str(ps_count)
        launch = new_job(
            image,
            nodes,
            backend=backend,
            upload_to=upload_to,
            script_args=tuple(script_args),
            env=extra,
            discovery=discovery,
            grace=grace,
        )
        if print_only:
            click.echo(launch.print_commands())
            return
        code = LocalJob(launch).run()
        if upload_to:
            console.step(f"outputs and logs: {upload_to.rstrip('/')}/{launch.run_id}/")
        (console.step if code == 0 else console.fail)(
            f"job {launch.job} {'completed' if code == 0 else f'failed (exit {code})'}"
        )
        sys.exit(code)

    go()
