"""The agent's main path: settings -> job -> discovery -> plan -> control -> records -> tasks.

The environment is read here, once: `AgentSettings.from_env` for the agent's own
TFBUILD_* options; below, modules receive settings (discovery sources still see the
scheduler's variables through their DiscoveryContext).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import runrecord
from .control.channel import ControlChannel
from .control.source import RendezvousSource, open_control
from .discovery.chain import describe as describe_sources
from .discovery.chain import discover
from .discovery.context import DiscoveryContext, log_to_stderr
from .discovery.membership import Membership
from .errors import InputError
from .inputs import plan as inputs_plan
from .jobspec import JobSpec, load_job, read_baked_job
from .launch.command import entry_command, merge_script_params
from .launch.gpus import device_for, processes_per_node, visible_gpus
from .launch.supervisor import Supervisor
from .recorder import TaskRecorder, run_id_for
from .settings import AgentSettings
from .topology import Plan, Task, plan


def _job(env: Mapping[str, str]) -> JobSpec:
    return load_job(read_baked_job(), env)


def describe_job(env: Mapping[str, str]) -> dict[str, Any]:
    settings = AgentSettings.from_env(env)
    job = _job(env)
    ctx = DiscoveryContext.from_environ(job, env)
    out: dict[str, Any] = {
        "job": vars(job) | {"environment": dict(job.environment)},
        "sources": describe_sources(ctx),
    }
    source = RendezvousSource()
    membership = discover(ctx, rendezvous=source)
    out["membership"] = membership.describe()
    p = _plan(membership, job, settings)
    out["plan"] = {
        "backend": p.backend,
        "node_rank": p.node_rank,
        "world_size": p.world_size,
        "tasks": [
            {"name": t.name, "rank": t.rank, "local_rank": t.local_rank, "env": dict(t.env)}
            for t in p.tasks
        ],
        "cluster": p.cluster,
        "decisive_task": p.decisive_task,
    }
    if source.channel is not None:
        source.channel.close()
    return out


def _plan(membership: Membership, job: JobSpec, settings: AgentSettings) -> Plan:
    """topology.plan with the run-time options from the settings."""
    return plan(membership, job, placement=settings.placement, evaluator=settings.evaluator)


def _resolve_paths(job: JobSpec) -> tuple[Path, str]:
    """Inside an image: /app and the image's venv; elsewhere (tests, bare hosts):
    the current folder and this Python."""
    workdir = Path(job.workdir) if Path(job.workdir).is_dir() else Path.cwd()
    python = job.python if Path(job.python).exists() else sys.executable
    return workdir, python


def _with_gpus(job: JobSpec, settings: AgentSettings, gpus: list[str]) -> JobSpec:
    count = processes_per_node(
        job.process_count_per_node, settings.procs_per_node_explicit, job.use_gpu, gpus
    )
    return replace(job, process_count_per_node=count)


def _device_env(task: Task, gpus: list[str]) -> Task:
    local_size = int(task.env.get("LOCAL_WORLD_SIZE", "1"))
    device = device_for(task.local_rank, local_size, gpus)
    if device is None:
        return task
    return replace(task, env={**task.env, "CUDA_VISIBLE_DEVICES": device})


def node_tasks(membership: Membership, job: JobSpec, settings: AgentSettings, rank: int) -> list[
    tuple[str, str, int]
]:
    """(name, role, rank) of the tasks node `rank` runs: what its records are called."""
    other = _plan(replace(membership, node_rank=rank), job, settings)
    return [(t.name, t.role, t.rank) for t in other.tasks]


def _stage_inputs(
    job: JobSpec, script_args: list[str], workdir: Path, env: Mapping[str, str], log: Any
) -> JobSpec:
    """Fetch or link the job's data inputs (TFBUILD_INPUTS over the baked ones); the
    job comes back with their paths in its script params and TFBUILD_INPUT_<NAME>."""
    declared = inputs_plan.effective(inputs_plan.from_job(job.inputs), env)
    needed = inputs_plan.used(declared, merge_script_params(job.script_params, script_args))
    if not needed:
        return job
    from .inputs.fetch import stage

    paths = stage(needed, workdir, env, log)
    return replace(
        job,
        script_params=tuple(inputs_plan.substitute(job.script_params, paths)),
        environment={**job.environment,
                     **{inputs_plan.env_name(n): p for n, p in paths.items()}},
    )


def _inputs_failed(
    error: InputError, tasks: list[tuple[str, str, int]], recorder: TaskRecorder,
    control: ControlChannel | None, log: Any,
) -> int:
    """An input could not be made ready: every task of this node is recorded Failed with
    the reason (the script never started), the other nodes are told, and the agent exits."""
    reason = f"input not ready: {error}"
    for name, role, rank in tasks:
        recorder.status(name, role, rank, runrecord.FAILED, reason=reason)
        if control is not None:
            control.report(name, "failed", error.exit_code)
    if control is not None:
        control.close()
    recorder.close()
    log(f"job failed before the script started: {error}")
    return error.exit_code


def _mpi_inputs_failed(
    error: InputError, the_plan: Plan, membership: Membership, settings: AgentSettings,
    workdir: Path, env: Mapping[str, str], log: Any,
) -> int:
    from .control.config import job_token

    token = job_token(env, membership.node_count) if membership.node_count > 1 else (
        settings.job_token)
    launcher = bool(the_plan.mpi_launcher)
    name, role = ("mpirun", "launcher") if launcher else (
        f"mpi-node-{membership.node_rank}", "node")
    recorder = TaskRecorder(
        run_id_for(settings.run_id, token, membership, settings.launcher_job), name, launcher,
        workdir, log, upload_to=settings.upload_to, store_env=env,
    )
    rank = 0 if launcher else membership.node_rank
    return _inputs_failed(error, [(name, role, rank)], recorder, None, log)


def run_job(script_args: list[str], env: Mapping[str, str]) -> int:
    log = log_to_stderr
    settings = AgentSettings.from_env(env)
    gpus = visible_gpus(env, os.listdir("/dev") if os.path.isdir("/dev") else [])
    job = _with_gpus(_job(env), settings, gpus)
    workdir, python = _resolve_paths(job)
    inputs_plan.effective(inputs_plan.from_job(job.inputs), env)  # a bad TFBUILD_INPUTS: now
    ctx = DiscoveryContext.from_environ(job, env)
    source = RendezvousSource()
    membership = discover(ctx, rendezvous=source)
    the_plan = _plan(membership, job, settings)
    log(
        f"{membership.source} discovery: node {membership.node_rank} of "
        f"{membership.node_count}; backend {the_plan.backend}; tasks here: "
        f"{', '.join(t.name for t in the_plan.tasks) or 'none'}"
    )
    if the_plan.backend == "mpi" and membership.process is None:
        from .launch.mpi.node import run_mpi_node

        # Every node gets the inputs before mpirun: the ranks read them at the same paths.
        # A failure ends this node with its record (the name run_mpi_node would give it);
        # node 0's launcher then reports the agent that never came.
        try:
            job = _stage_inputs(job, script_args, workdir, env, log)
        except InputError as e:
            return _mpi_inputs_failed(e, the_plan, membership, settings, workdir, env, log)

        if source.channel is not None:  # MPI runs its own launch channel
            source.channel.close()
        return run_mpi_node(
            the_plan, job, membership, script_args, env, workdir, python, log, settings
        )

    run_id = run_id_for(
        settings.run_id, settings.job_token, membership, settings.launcher_job
    )
    control: ControlChannel | None = source.channel
    if control is None and (
        membership.node_count > 1 and membership.process is None and settings.control
    ):
        control = open_control(
            membership, job, env, log, timeout=ctx.timeout, decisive_task=the_plan.decisive_task
        )
    elif control is not None:
        control.decisive_task = the_plan.decisive_task

    # The node's lowest-rank task names its uploads; rank 0's node owns outputs/.
    primary = min(the_plan.tasks, key=lambda t: t.rank) if the_plan.tasks else None
    recorder = TaskRecorder(
        run_id,
        primary.name if primary else None,
        primary is not None and primary.rank == 0,
        workdir,
        log,
        upload_to=settings.upload_to,
        store_env=env,
    )

    export_failed: list[str] = []

    def on_status(task: Task, status: str, code: int | None, tail: list[str], reason: str) -> None:
        extra = None
        if status == runrecord.COMPLETED and task.rank == 0 and job.export_onnx:
            # After the script, before its record is final: a failed export may fail it.
            from .export.onnx_export import run_export

            result = run_export(job.export_onnx, python, workdir, task_env, log)
            extra = {"onnx": result.record}
            if not result.ok and result.fail_job:
                status, code = runrecord.FAILED, 1
                reason = f"ONNX export failed: {result.reason}"
                export_failed.append(reason)
        recorder.status(
            task.name, task.role, task.rank, status, exit_code=code,
            stderr_tail="\n".join(tail) if status == runrecord.FAILED else None,
            reason=reason or None, extra=extra,
        )

    def on_lost(node_rank: int | None, reason: str) -> None:
        # One survivor writes the lost node's records: rank 0, or rank 1 if 0 is the lost one.
        if node_rank is None or membership.node_rank != (1 if node_rank == 0 else 0):
            return
        recorder.lost(node_tasks(membership, job, settings, node_rank), f"lost: {reason}")

    try:
        job = _stage_inputs(job, script_args, workdir, env, log)
    except InputError as e:
        tasks = [(t.name, t.role, t.rank) for t in the_plan.tasks]
        return _inputs_failed(e, tasks, recorder, control, log)
    argv = merge_script_params(job.script_params, script_args)

    task_env = {**os.environ, **dict(env), **dict(job.environment), "TFBUILD_RUN_ID": run_id}
    supervisor = Supervisor(
        [_device_env(t, gpus) for t in the_plan.tasks],
        lambda task: entry_command(job.entry_script, python, argv),
        task_env,
        workdir,
        workdir / "logs",
        decisive_task=the_plan.decisive_task,
        servers_only=the_plan.servers_only,
        grace=settings.grace,
        time_limit=job.max_run_duration_seconds,
        control=control,
        on_status=on_status,
        on_lost=on_lost,
        log=log,
    )
    supervisor.install_signal_handlers()
    try:
        outcome = supervisor.run()
    finally:
        if control is not None:
            control.close(stop=supervisor.stop_requested)
        recorder.close()
    if outcome.status != runrecord.COMPLETED:
        log(f"job {outcome.status.lower()}: {outcome.reason}")
    elif export_failed:
        log(f"job failed: {export_failed[0]} (export_onnx.fail_job)")
        return 1
    return outcome.exit_code
