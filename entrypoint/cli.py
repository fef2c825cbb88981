"""`tfbuild-agent`: the entrypoint of every tfbuild image.

tfbuild-agent run [--] [SCRIPT ARGS...]   discover peers, run the entry script
tfbuild-agent describe                    print what discovery finds, and the plan
tfbuild-agent mpi-rsh [--port N] HOST CMD  (mpirun's rsh agent) run CMD on HOST's agent
tfbuild-agent mpi-rank -- CMD...          (started by mpirun) set RANK etc., exec CMD
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from . import __version__
from .errors import AgentError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tfbuild-agent",
        description="Entrypoint of tfbuild training images: discovers the job's peers, "
        "assigns roles and ranks, exports TF_CONFIG, runs the entry script, forwards "
        "signals and uploads ./outputs and ./logs.",
    )
    p.add_argument("--version", action="version", version=f"tfbuild-agent {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run the entry script as this node's part of the job")
    run.add_argument(
        "script_args",
        nargs=argparse.REMAINDER,
        help="arguments for the entry script (merged over the baked params)",
    )
    sub.add_parser("describe", help="print what discovery finds and the resulting plan (JSON)")
    rsh = sub.add_parser(
        "mpi-rsh",
        help="Open MPI's rsh agent: run CMD through the agent on HOST (authenticated with "
        "TFBUILD_JOB_TOKEN), like ssh HOST CMD",
    )
    rsh.add_argument("--port", type=int, default=None,
                     help="the launch channel's port (default: control port + 1)")
    rsh.add_argument("host")
    rsh.add_argument("remote_command", nargs=argparse.REMAINDER, metavar="CMD")
    rank = sub.add_parser(
        "mpi-rank", help="(started by mpirun) export RANK, LOCAL_RANK, ... and exec CMD"
    )
    rank.add_argument("rank_command", nargs=argparse.REMAINDER, metavar="CMD")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            from .runner import run_job

            script_args = list(args.script_args)
            if script_args[:1] == ["--"]:
                script_args = script_args[1:]
            return run_job(script_args, os.environ)
        if args.command == "describe":
            from .runner import describe_job

            print(json.dumps(describe_job(os.environ), indent=2, sort_keys=True))
            return 0
        if args.command == "mpi-rsh":
            return _mpi_rsh(args.host, args.port, list(args.remote_command))
        if args.command == "mpi-rank":
            from .launch.mpi.rank import exec_rank

            command = list(args.rank_command)
            return exec_rank(command[1:] if command[:1] == ["--"] else command, os.environ)
        _parser().print_help()
        return 2
    except AgentError as e:
        print(f"tfbuild-agent: error: {e}", file=sys.stderr, flush=True)
        return e.exit_code


def _mpi_rsh(host: str, port: int | None, command: list[str]) -> int:
    from .control.config import job_token
    from .errors import ConfigError
    from .jobspec import load_job, read_baked_job
    from .launch.mpi.channel import remote_exec
    from .launch.mpi.command import LAUNCH_PORT_OFFSET

    if not command:
        raise ConfigError(f"mpi-rsh {host}: no command to run; usage: mpi-rsh HOST CMD...")
    if port is None:
        port = load_job(read_baked_job(), os.environ).control_port + LAUNCH_PORT_OFFSET
    try:
        token = job_token(os.environ, node_count=2)
    except ConfigError:
        raise ConfigError(
            f"mpi-rsh {host}: TFBUILD_JOB_TOKEN is not set, and the agent on {host} only "
            "launches for holders of the job token; run it under the mpirun that "
            "`tfbuild-agent run` starts (it passes the token), or set TFBUILD_JOB_TOKEN"
        ) from None
    return remote_exec(
        host, port, token, command,
        lambda m: print(f"tfbuild-agent: {m}", file=sys.stderr, flush=True),
    )
