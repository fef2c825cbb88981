"""Real MPI launch-channel servers on 127.0.0.1 for unit tests, stopped afterwards."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tfbuild_agent.launch.mpi.server import LaunchServer


class Lines(list):
    """A log callable that keeps every line."""

    def __call__(self, line: str) -> None:
        self.append(line)


@contextmanager
def launch_servers(
    workdir: Path, token: str
) -> Iterator[Callable[..., tuple[LaunchServer, Lines]]]:
    """A factory of started servers holding `token`; each is stopped on exit."""
    servers: list[LaunchServer] = []

    def make(programs: tuple[str, ...] = ("orted", "prted")) -> tuple[LaunchServer, Lines]:
        logs = Lines()
        server = LaunchServer(0, token, logs, env=dict(os.environ, TFBUILD_JOB_TOKEN=token),
                              workdir=str(workdir), host="127.0.0.1", programs=programs)
        server.start()
        servers.append(server)
        return server, logs

    try:
        yield make
    finally:
        for s in servers:
            s.stop_daemon(9)
            s.close()
