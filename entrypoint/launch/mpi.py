"""The `mpi` backend on one node: node 0 runs mpirun, every other node serves the
launch channel that mpirun's remote daemons arrive through (no ssh, no key in any
image). docs/mpi.md describes the whole launch; the pieces:

    mpi_command   settings, mpirun's argv, exported variables, reading failures (pure)
    mpi_channel   the authenticated launch channel (server + mpi-rsh client)
    mpi_launcher  node 0: hostfile, wait for the agents, mpirun, tell everyone the end
    mpi_worker    the other nodes: serve, run orted, exit with the job
    mpi_rank      what mpirun starts per rank: RANK/LOCAL_RANK/... then exec the script
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..discovery.context import parse_timeout
from ..jobspec import JobSpec
from ..membership import Membership
from ..rendezvous_config import job_token
from ..topology import Plan
from .mpi_command import mpi_settings


def agent_command() -> list[str]:
    """How to start this agent again: the image's launcher script, else whatever
    `tfbuild-agent` is on PATH, else this Python with -m."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "tfbuild-agent" and os.access(argv0, os.X_OK):
        return [os.path.abspath(argv0)]
    found = shutil.which("tfbuild-agent")
    if found:
        return [found]
    return [sys.executable, "-m", "tfbuild_agent"]


def run_mpi_node(
    plan: Plan,
    job: JobSpec,
    membership: Membership,
    script_args: Sequence[str],
    env: Mapping[str, str],
    workdir: Path,
    python: str,
    log: Callable[[str], None],
) -> int:
    """This node's part of an mpi job; returns the agent's exit code."""
    from ..runner import run_id_for  # the runner imports this module lazily

    settings = mpi_settings(env, job, parse_timeout(env))
    if membership.node_count > 1:
        token = job_token(env, membership.node_count)
    else:
        token = env.get("TFBUILD_JOB_TOKEN") or None
    run_id = run_id_for(env, membership)
    if plan.mpi_launcher:
        from .mpi_launcher import run_launcher

        return run_launcher(plan, job, script_args, env, workdir, python, log,
                            settings=settings, token=token, run_id=run_id)
    from .mpi_worker import serve_node

    return serve_node(plan, env, workdir, log, settings=settings, token=token, run_id=run_id)
