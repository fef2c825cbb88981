"""`tfbuild-agent`: the entrypoint of every tfbuild image.

tfbuild-agent run [--] [SCRIPT ARGS...]   discover peers, run the entry script
tfbuild-agent describe                    print what discovery finds, and the plan
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
        _parser().print_help()
        return 2
    except AgentError as e:
        print(f"tfbuild-agent: error: {e}", file=sys.stderr, flush=True)
        return e.exit_code
