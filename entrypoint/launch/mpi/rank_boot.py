"""Run a Python entry script as one MPI rank, as `python SCRIPT ARGS` or
`python -m MODULE ARGS` would run it, with two differences:

- stdout and stderr are line-buffered: mpirun --tag-output tags every chunk a rank
  writes, and under `python -u` print() writes the text and the newline separately,
  so tags would land in the middle of lines. Line buffering makes a line one write.
- a rank that fails (uncaught exception, or exit with a non-zero code) leaves at once,
  after its traceback: normal interpreter exit would run MPI_Finalize (mpi4py,
  Horovod), which waits for the other ranks, and they wait for this one in a collective
  forever. Exiting makes mpirun see the failure and abort the job.

Runs under the job's Python, not the agent's: standard library only, no tfbuild imports.
"""

import contextlib
import os
import runpy
import sys
import traceback


def _run(args: list) -> None:
    if args[0] == "-m":
        sys.argv = args[1:]
        sys.path[0] = os.getcwd()  # what `python -m` puts first
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = args
        sys.path[0] = os.path.dirname(os.path.abspath(args[0]))  # what `python SCRIPT` does
        runpy.run_path(args[0], run_name="__main__")


def _user_frames(tb):
    """The traceback without this file's and runpy's frames, as plain python shows it."""
    while tb is not None and (
        tb.tb_frame.f_code.co_filename in (__file__, "<frozen runpy>")
        or tb.tb_frame.f_code.co_filename.endswith("runpy.py")
    ):
        tb = tb.tb_next
    return tb


def _leave(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        # A closed or replaced stream must not hide the exit code.
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def main() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None and hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True, write_through=False)
    args = sys.argv[1:]
    if not args:
        raise SystemExit("rank_boot: usage: python rank_boot.py SCRIPT|-m MODULE [ARGS...]")
    try:
        _run(args)
    except SystemExit as e:
        if e.code is None or e.code == 0:
            raise
        if not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
        _leave(e.code if isinstance(e.code, int) else 1)
    except BaseException as e:
        traceback.print_exception(type(e), e, _user_frames(e.__traceback__))
        _leave(130 if isinstance(e, KeyboardInterrupt) else 1)


if __name__ == "__main__":
    main()
