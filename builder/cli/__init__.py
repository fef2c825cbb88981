"""The `tfbuild` command, one module per command group: `image` (image, dockerfile
and the spec flags), `run`, `runs`, `inspect`, `versions`, `base`, `engine`; `main`
assembles the group and `boundary` is the one error boundary (every error becomes
one line and a documented exit code). A new flag: a click option on its command
here, passed to the function in spec/, image/ or run/ that does the work."""

from .main import cli, main

__all__ = ["cli", "main"]
