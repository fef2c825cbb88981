"""Run a Python entry script with line-buffered stdout and stderr, as
`python SCRIPT ARGS` or `python -m MODULE ARGS` would run it.

Why: mpirun --tag-output tags every chunk a rank writes. Under `python -u`, print()
writes the text and the newline separately, so tags land in the middle of lines.
Line buffering makes every line one write. Runs under the job's Python, not the
agent's: standard library only, no tfbuild imports.
"""

import os
import runpy
import sys


def main() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None and hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True, write_through=False)
    args = sys.argv[1:]
    if not args:
        raise SystemExit("rank_boot: usage: python rank_boot.py SCRIPT|-m MODULE [ARGS...]")
    if args[0] == "-m":
        sys.argv = args[1:]
        sys.path[0] = os.getcwd()  # what `python -m` puts first
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = args
        sys.path[0] = os.path.dirname(os.path.abspath(args[0]))  # what `python SCRIPT` does
        runpy.run_path(args[0], run_name="__main__")


if __name__ == "__main__":
    main()
