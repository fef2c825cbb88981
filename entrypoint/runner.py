"""The agent's main path: job -> discovery -> plan -> control -> sync -> processes."""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import runrecord
from .discovery.chain import describe as describe_sources
from .discovery.chain import discover
from .discovery.context import DiscoveryContext, log_to_stderr
from .jobspec import JobSpec, load_job, read_baked_job
from .launch.command import entry_command, merge_script_params
from .launch.gpus import device_for, processes_per_node, visible_gpus
from .launch.supervisor import Supervisor
from .membership import Membership
from .rendezvous import open_control, rendezvous_source
from .topology import Plan, Task, plan

DEFAULT_GRACE = 30.0


def _job(env: Mapping[str, str]) -> JobSpec:
    return load_job(read_baked_job(), env)


def describe_job(env: Mapping[str, str]) -> dict[str, Any]:
    job = _job(env)
    ctx = DiscoveryContext.from_environ(job, env)
    out: dict[str, Any] = {
        "job": vars(job) | {"environment": dict(job.environment)},
        "sources": describe_sources(ctx),
    }
    membership = discover(ctx, rendezvous=rendezvous_source)
    out["membership"] = membership.describe()
    p = _plan(membership, job, env)
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
    return out


def _plan(membership: Membership, job: JobSpec, env: Mapping[str, str]) -> Plan:
    """topology.plan with the run-time options that only the environment gives."""
    return plan(
        membership,
        job,
        placement=env.get("TFBUILD_PLACEMENT") or None,
        evaluator=env.get("TFBUILD_EVALUATOR", "") in ("1", "true", "yes"),
    )


def run_id_for(env: Mapping[str, str], membership: Membership) -> str:
    """TFBUILD_RUN_ID, else one every node derives alike (hosts + job token)."""
    if env.get("TFBUILD_RUN_ID"):
        return env["TFBUILD_RUN_ID"]
    if membership.node_count == 1:
        return time.strftime("run-%Y%m%d-%H%M%S", time.gmtime()) + f"-{os.getpid()}"
    seed = ",".join(membership.hosts) + env.get("TFBUILD_JOB_TOKEN", "")
    return "run-" + hashlib.sha256(seed.encode()).hexdigest()[:12]


def _resolve_paths(job: JobSpec) -> tuple[Path, str]:
    """Inside an image: /app and the image's venv; elsewhere (tests, bare hosts):
    the current folder and this Python."""
    workdir = Path(job.workdir) if Path(job.workdir).is_dir() else Path.cwd()
    python = job.python if Path(job.python).exists() else sys.executable
    return workdir, python


def _with_gpus(job: JobSpec, env: Mapping[str, str], gpus: list[str]) -> JobSpec:
    explicit = bool(env.get("TFBUILD_PROCS_PER_NODE"))
    count = processes_per_node(job.process_count_per_node, explicit, job.use_gpu, gpus)
    return replace(job, process_count_per_node=count)


def _device_env(task: Task, gpus: list[str]) -> Task:
    local_size = int(task.env.get("LOCAL_WORLD_SIZE", "1"))
    device = device_for(task.local_rank, local_size, gpus)
    if device is None:
        return task
    return replace(task, env={**task.env, "CUDA_VISIBLE_DEVICES": device})


def run_job(script_args: list[str], env: Mapping[str, str]) -> int:
    log = log_to_stderr
    gpus = visible_gpus(env, os.listdir("/dev") if os.path.isdir("/dev") else [])
    job = _with_gpus(_job(env), env, gpus)
    workdir, python = _resolve_paths(job)
    ctx = DiscoveryContext.from_environ(job, env)
    membership = discover(ctx, rendezvous=rendezvous_source)
    the_plan = _plan(membership, job, env)
    log(
        f"{membership.source} discovery: node {membership.node_rank} of "
        f"{membership.node_count}; backend {the_plan.backend}; tasks here: "
        f"{', '.join(t.name for t in the_plan.tasks) or 'none'}"
    )
    if the_plan.backend == "mpi" and membership.process is None:
        from .launch.mpi import run_mpi_node

        return run_mpi_node(the_plan, job, membership, script_args, env, workdir, python, log)

    run_id = run_id_for(env, membership)
    argv = merge_script_params(job.script_params, script_args)
    control = None
    if (
        membership.node_count > 1
        and membership.process is None
        and env.get("TFBUILD_CONTROL", "on") != "off"
    ):
        control = open_control(
            membership, job, env, log, timeout=ctx.timeout, decisive_task=the_plan.decisive_task
        )

    # The node's lowest-rank task names its uploads; rank 0's node owns outputs/.
    primary = min(the_plan.tasks, key=lambda t: t.rank) if the_plan.tasks else None
    syncer = _start_syncer(env, run_id, primary, workdir, log)
    records: dict[str, dict[str, Any]] = {}
    log_dir = workdir / "logs"

    def on_status(task: Task, status: str, code: int | None, tail: list[str]) -> None:
        rec = records.get(task.name) or runrecord.new_record(
            run_id, task.name, task.role, task.rank
        )
        if status != rec["status"]:
            rec = runrecord.transition(
                rec,
                status,
                exit_code=code,
                stderr_tail="\n".join(tail) if status == "Failed" else None,
            )
        records[task.name] = rec
        if syncer is not None:
            syncer.publish_record(rec)  # also keeps the local copy
        else:
            runrecord.write_record(rec, runrecord.local_record_path(workdir, task.name))

    supervisor = Supervisor(
        [_device_env(t, gpus) for t in the_plan.tasks],
        lambda task: entry_command(job.entry_script, python, argv),
        {**os.environ, **dict(env), **dict(job.environment), "TFBUILD_RUN_ID": run_id},
        workdir,
        log_dir,
        decisive_task=the_plan.decisive_task,
        servers_only=the_plan.servers_only,
        grace=float(env.get("TFBUILD_GRACE_SECONDS", DEFAULT_GRACE)),
        control=control,
        on_status=on_status,
        log=log,
    )
    supervisor.install_signal_handlers()
    try:
        outcome = supervisor.run()
    finally:
        if control is not None:
            control.close()
        if syncer is not None:
            report = syncer.close()
            if report.missing:
                log(
                    f"{len(report.missing)} file(s) could not be uploaded; they stay in "
                    f"{workdir} and are listed in the run record"
                )
    if outcome.status != "Completed":
        log(f"job {outcome.status.lower()}: {outcome.reason}")
    return outcome.exit_code


def _start_syncer(
    env: Mapping[str, str],
    run_id: str,
    primary: Task | None,
    workdir: Path,
    log: Any,
) -> Any:
    dest = env.get("TFBUILD_UPLOAD_TO")
    if not dest or primary is None:
        return None
    from .sync.syncer import Syncer

    syncer = Syncer(dest, run_id, primary.name, primary.rank == 0, workdir, log=log, env=env)
    syncer.start()
    return syncer
