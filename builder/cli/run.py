"""`tfbuild run IMAGE [flags] [-- script args]`: the local compute target.

Every flag is resolved on the host before anything starts (a mistake starts
nothing): the destination (run.destinations), defaults from the spec recorded in
the image's label, environment, volumes, GPUs and the store's credentials."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from tfbuild_agent.contract import BACKENDS, DEFAULT_GRACE_SECONDS
from tfbuild_agent.inputs.fetch import DEFAULT_CACHE as DEFAULT_INPUT_CACHE

from .. import console
from ..errors import LaunchError
from .boundary import handle_errors

DEFAULT_SHM_SIZE = "1g"


class ScriptArgsCommand(click.Command):
    """Everything after `--` goes to the entry script; before it, only tfbuild's
    flags and IMAGE (an unknown option is a usage error, with did-you-mean)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            args, ctx.meta["script_args"] = args[:cut], tuple(args[cut + 1 :])
        else:
            ctx.meta["script_args"] = ()
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            if "unexpected extra argument" in e.message:
                e.message += "; arguments for the entry script go after `--`"
            raise


def parse_env(values: tuple[str, ...], host: dict[str, str]) -> tuple[dict, dict]:
    """-e NAME=VALUE -> given; -e NAME -> forwarded from the host (an unset NAME is an
    error: the container would silently lack it)."""
    given, forwarded = {}, {}
    for v in values:
        name, sep, value = v.partition("=")
        if not name:
            raise LaunchError(f"-e {v!r} names no variable; write -e NAME=VALUE or -e NAME")
        if sep:
            given[name] = value
        elif name in host:
            forwarded[name] = host[name]
        else:
            raise LaunchError(
                f"-e {name}: {name} is not set in this shell; export it first or write "
                f"-e {name}=VALUE"
            )
    return given, forwarded


def parse_env_file(path: Path, host: dict[str, str]) -> dict[str, str]:
    """Docker's --env-file format: NAME=VALUE lines, NAME alone from the host, # comments."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise LaunchError(f"--env-file {path}: cannot read it ({e.strerror})") from None
    out = {}
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not name or any(c.isspace() for c in name):
            raise LaunchError(f"--env-file {path}, line {number}: {raw!r} is not NAME=VALUE")
        if sep:
            out[name] = value
        elif name in host:
            out[name] = host[name]
    return out


def parse_volume(text: str, cwd: Path) -> Any:
    from ..run.store_access import Mount

    parts = text.split(":")
    mode = parts.pop() if len(parts) == 3 else "rw"
    if len(parts) != 2 or not parts[0] or not parts[1].startswith("/") or mode not in ("ro", "rw"):
        raise LaunchError(
            f"-v {text!r} is not HOST:CONTAINER[:ro]; e.g. -v ./data:/data:ro (the container "
            "path is absolute)"
        )
    host = Path(os.path.normpath(cwd / Path(parts[0]).expanduser()))
    if not host.exists():
        raise LaunchError(f"-v {text}: {host} does not exist on this host; create it or fix "
                          "the path")
    return Mount(str(host), parts[1], read_only=mode == "ro")


def _gpus(value: str | None) -> str | None:
    if value is None or value in ("all", "none") or value.startswith("device="):
        return value
    if value.isdigit() and int(value) > 0:
        return value
    raise LaunchError(f"--gpus {value!r}: give all, none, a count such as 2, or device=0,1")


@click.command(cls=ScriptArgsCommand)
@click.argument("image")
@click.option("--nodes", "-n", type=click.IntRange(min=1),
              help="Containers to start [default: node_count of the image's spec].")
@click.option("--backend", type=click.Choice(BACKENDS),
              help="Override the image's distributed backend.")
@click.option("--workers", type=click.IntRange(min=1), help="worker_count (ps backend).")
@click.option("--ps", "ps_count", type=click.IntRange(min=1),
              help="parameter_server_count (ps backend).")
@click.option("--upload-to", help="Where outputs and logs go: a folder, file:///dir, s3://, "
              "az://, gs:// [default: the local run history].")
@click.option("--no-upload", is_flag=True, help="Keep no outputs or logs (they vanish with "
              "the containers).")
@click.option("--discovery", type=click.Choice(["explicit", "dns", "rendezvous"]),
              default="explicit", show_default=True, help="How the agents find each other.")
@click.option("--env", "-e", "env", multiple=True,
              help="NAME=VALUE, or NAME to pass this shell's value (repeat).")
@click.option("--env-file", "env_files", multiple=True,
              type=click.Path(dir_okay=False, path_type=Path), help="A file of NAME=VALUE lines.")
@click.option("--volume", "-v", "volumes", multiple=True,
              help="HOST:CONTAINER[:ro] bind mount for every container (repeat).")
@click.option("--input", "inputs", multiple=True, metavar="NAME=URI",
              help="Data for the script without rebuilding: replaces the URI of the image's "
              "input NAME, or adds one at /app/inputs/NAME (repeat). file:// URIs and host "
              "paths are mounted read-only; see docs/inputs.md.")
@click.option("--gpus", help="GPUs per container: all, none, N, device=0,1 "
              "[default: all for images built with use_gpu].")
@click.option("--shm-size",
              help="/dev/shm size (Docker's 64m is too small for input pipelines) "
              f"[default: the image's shm_size, else {DEFAULT_SHM_SIZE}].")
@click.option("--cpus", type=click.FloatRange(min=0, min_open=True),
              help="CPU limit per container.")
@click.option("--memory", help="Memory limit per container, e.g. 8g.")
@click.option("--grace", type=click.IntRange(min=0), default=int(DEFAULT_GRACE_SECONDS),
              show_default=True, help="Seconds between the script's SIGTERM and its kill.")
@click.option("--stop-timeout", type=click.IntRange(min=1),
              help="Seconds docker stop waits before SIGKILL [default: grace + final upload "
              "flush + 10].")
@click.option("--detach", "-d", is_flag=True,
              help="Start the job and return; then `tfbuild runs wait|cancel RUN`.")
@click.option("--print", "print_only", is_flag=True,
              help="Print the equivalent plain docker commands and exit.")
@click.pass_context
@handle_errors
def run(ctx: click.Context, image: str, nodes: int | None, backend: str | None,
        workers: int | None, ps_count: int | None, upload_to: str | None, no_upload: bool,
        discovery: str, env: tuple[str, ...], env_files: tuple[Path, ...],
        volumes: tuple[str, ...], inputs: tuple[str, ...], gpus: str | None,
        shm_size: str | None, cpus: float | None,
        memory: str | None, grace: int, stop_timeout: int | None, detach: bool,
        print_only: bool) -> None:
    """Run IMAGE as a job of --nodes containers on this Docker engine.

    \b
    Arguments for the entry script go after `--`; they come after the params baked
    into the image:  tfbuild run my/train:1 --nodes 2 -- --epochs 5
    Outputs and logs land in the local run history unless --upload-to names
    another place (a folder, or a store) or --no-upload is given.
    """
    from ..engine.setup import engine_client, image_attrs
    from ..image.build import recorded_spec
    from ..run.destinations import prepare_host_dir, resolve_destination
    from ..run.inputs import run_inputs
    from ..run.launch import new_job, shm_size_for
    from ..run.local import LocalJob
    from ..run.store_access import store_access
    from ..spec.registries import IMAGE_REF, IMAGE_REF_FIX, image_ref_problem

    problem = image_ref_problem(image, IMAGE_REF)
    if problem:
        raise LaunchError(f"IMAGE: {problem}; {IMAGE_REF_FIX}")
    host_env, cwd, home = dict(os.environ), Path.cwd(), Path.home()
    dest = resolve_destination(upload_to, no_upload, cwd=cwd, env=host_env, home=home)
    given_env, forwarded = parse_env(env, host_env)
    file_env: dict[str, str] = {}
    for path in env_files:
        file_env.update(parse_env_file(path, host_env))
    mounts = [parse_volume(v, cwd) for v in volumes]
    access = store_access(dest.uri, host_env, home)

    client = engine_client()
    recorded = recorded_spec(image_attrs(client, image))
    chosen = backend or recorded.get("distributed_backend") or "none"
    for flag, value, key in (("--workers", workers, "TFBUILD_WORKERS"),
                             ("--ps", ps_count, "TFBUILD_PS")):
        if value is None:
            continue
        if chosen != "ps":
            raise LaunchError(
                f"{flag} {value}: the {chosen} backend has no "
                f"{'workers' if flag == '--workers' else 'parameter servers'} to count; only "
                "the ps backend uses it (add --backend ps, or drop the flag)"
            )
        given_env[key] = str(value)
    data = run_inputs(inputs, recorded, host_env, home, cwd)
    volumes_all: dict[str, Any] = {}
    for m in [*mounts, *access.mounts, *data.mounts]:  # one mount per container path
        volumes_all.setdefault(m.container, m)
    gpu_choice = _gpus(gpus if gpus is not None else ("all" if recorded.get("use_gpu") else None))
    launch = new_job(
        image,
        nodes or int(recorded.get("node_count") or 1),
        backend=backend,
        upload_to=dest.uri,
        script_args=tuple(ctx.meta.get("script_args", ())),
        env={**data.env, **given_env},
        host_env={**access.env, **data.host_env, **forwarded},
        env_files=tuple(str(p) for p in env_files),
        file_env=file_env,
        volumes=tuple(volumes_all.values()),
        discovery=discovery,
        grace=grace,
        gpus=gpu_choice,
        shm_size=shm_size_for(shm_size, recorded, DEFAULT_SHM_SIZE),
        cpus=cpus,
        memory=memory,
        stop_timeout=stop_timeout,
    )
    if print_only:
        click.echo(launch.print_commands())
        return
    prepare_host_dir(dest)
    for m in data.mounts:
        if m.container == DEFAULT_INPUT_CACHE:  # the host's input cache: made, not left to
            Path(m.host).mkdir(parents=True, exist_ok=True)  # dockerd (it would be root's)
    where = _where(dest, launch.run_id)
    console.step(where)
    job = LocalJob(launch, client)
    if detach:
        job.run(detach=True)
        console.step(f"run {launch.run_id} started in the background ({launch.nodes} "
                     f"container(s)); `tfbuild runs wait {launch.run_id}` follows it to the end, "
                     f"`tfbuild runs cancel {launch.run_id}` stops it")
        console.result(launch.run_id)
        return
    code = job.run()
    finish(dest.uri, launch.run_id, launch.job, code)


def _where(dest: Any, run_id: str) -> str:
    if dest.uri is None:
        return "outputs and logs are not kept (--no-upload): they vanish with the containers"
    if dest.default:
        return (f"outputs and logs go to the local run history: {dest.run_dir(run_id)}/ "
                "(--upload-to to choose another place)")
    shown = dest.run_dir(run_id) or f"{dest.uri.rstrip('/')}/{run_id}"
    return f"outputs and logs go to {shown}/"


def finish(
    upload_to: str | None, run_id: str, job: str, code: int, *, exit_with_code: bool = True
) -> None:
    """The last lines of a run: where its record is (only when it is really there),
    then the job's outcome; exits with the job's code."""
    from ..run.history import run_record_exists

    if upload_to:
        folder = upload_to[len("file://"):] if upload_to.startswith("file://") else None
        shown = f"{folder.rstrip('/')}/{run_id}" if folder else f"{upload_to.rstrip('/')}/{run_id}"
        if run_record_exists(upload_to, run_id):
            console.step(f"run {run_id}: outputs and logs in {shown}/ "
                         f"(`tfbuild runs show {folder or upload_to} {run_id}`)")
        else:
            console.warn(f"run {run_id} left no run record in {shown}/: the agents did not "
                         "upload (see the log above)")
    if not exit_with_code:
        console.step(f"job {job} stopped (exit {code})")
        return
    (console.step if code == 0 else console.fail)(
        f"job {job} {'completed' if code == 0 else f'failed (exit {code})'}"
    )
    sys.exit(code)
