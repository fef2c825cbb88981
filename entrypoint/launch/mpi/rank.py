"""`tfbuild-agent mpi-rank -- CMD...`: what mpirun starts for every rank.

It turns Open MPI's identity (OMPI_COMM_WORLD_*) into the variables every tfbuild
backend gives its processes (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,
NODE_RANK, MASTER_ADDR, MASTER_PORT, TFBUILD_TASK), drops the job token, and execs
CMD in its place: no extra process, signals from orted reach the script directly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ...discovery.mpi import launcher_process
from ...errors import ConfigError
from ...jobspec import load_job, read_baked_job
from ...topology import mpi_rank_env
from .command import HOSTS_VAR

RANK_BOOT = Path(__file__).with_name("rank_boot.py")


def line_buffered(command: Sequence[str], python: str) -> list[str]:
    """`python -u SCRIPT|-m MOD ...` -> the same through rank_boot.py (one write per
    line, so mpirun's output tags stay at line starts); other commands unchanged."""
    if len(command) > 2 and command[0] == python and command[1] == "-u":
        return [python, "-u", str(RANK_BOOT), *command[2:]]
    return list(command)


def rank_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The rank's environment: `env` plus tfbuild's rank variables, minus the token."""
    job = load_job(read_baked_job(), env)
    process = launcher_process(env, job)
    if process is None:
        raise ConfigError(
            "mpi-rank runs only under mpirun: OMPI_COMM_WORLD_RANK is not set; start the "
            "job with `tfbuild-agent run` instead"
        )
    hosts = [h for h in env.get(HOSTS_VAR, "").split(",") if h]
    if len(hosts) * job.process_count_per_node != process.world_size:
        raise ConfigError(
            f"mpirun started {process.world_size} rank(s), but {HOSTS_VAR} lists "
            f"{len(hosts)} node(s) x {job.process_count_per_node} process(es); start "
            "ranks through `tfbuild-agent run`, which sets both"
        )
    out = {**env, **mpi_rank_env(process.rank, job, hosts)}
    # Open MPI's word on placement beats the by-slot arithmetic.
    out["LOCAL_RANK"] = str(process.local_rank)
    out["LOCAL_WORLD_SIZE"] = str(process.local_size)
    out.pop("TFBUILD_JOB_TOKEN", None)
    return out


def exec_rank(command: Sequence[str], env: Mapping[str, str]) -> int:
    """Replace this process with `command` (returns only if that is impossible)."""
    if not command:
        raise ConfigError("mpi-rank needs a command after `--`")
    child = rank_environment(env)
    try:
        os.execvpe(command[0], list(command), child)
    except OSError as e:
        raise ConfigError(
            f"cannot start {command[0]!r} for rank {child.get('RANK')} on "
            f"{os.uname().nodename}: {e.strerror}; check entry_script and the image's Python"
        ) from None
    return 127  # not reached: execvpe either replaces us or raises
