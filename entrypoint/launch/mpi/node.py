"""The `mpi` backend on one node: node 0 runs mpirun, every other node serves the
launch channel that mpirun's remote daemons arrive through (no ssh, no key in any
image). docs/mpi.md describes the whole launch; the pieces:

    node      this entry point (run_mpi_node)
    command   settings, mpirun's argv, exported variables, reading failures, agent_command
    channel   the launch channel's protocol and clients (mpi-rsh, ping, result)
    server    the launch channel's serving end on every non-launcher node
    launcher  node 0: hostfile, wait for the agents, mpirun, tell everyone the end
    worker    the other nodes: serve, run orted, exit with the job
    rank      what mpirun starts per rank: RANK/LOCAL_RANK/... then exec the script
Run records and uploads go through recorder.TaskRecorder, as for every backend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ...control.config import job_token
from ...discovery.context import parse_timeout
from ...discovery.membership import Membership
from ...jobspec import JobSpec
from ...recorder import run_id_for
from ...settings import AgentSettings
from ...topology import Plan
from .command import mpi_settings


def run_mpi_node(
    plan: Plan,
    job: JobSpec,
    membership: Membership,
    script_args: Sequence[str],
    env: Mapping[str, str],
    workdir: Path,
    python: str,
    log: Callable[[str], None],
    agent: AgentSettings,
) -> int:
    """This node's part of an mpi job; returns the agent's exit code."""
    settings = mpi_settings(env, job, parse_timeout(env))
    # A multi-node job refuses to run without a token (unless the network is trusted).
    multi = membership.node_count > 1
    token = job_token(env, membership.node_count) if multi else agent.job_token
    run_id = run_id_for(agent.run_id, token, membership, agent.launcher_job)
    if plan.mpi_launcher:
        from .launcher import run_launcher

        return run_launcher(plan, job, script_args, env, workdir, python, log,
                            settings=settings, token=token, run_id=run_id, agent=agent)
    from .worker import serve_node

    return serve_node(plan, env, workdir, log, settings=settings, token=token, run_id=run_id,
                      agent=agent)
