"""A job on the local engine, described without touching it: one user-defined
network, N containers named <job>-<i>, the discovery variables the agent reads, and
a bind-mounted folder for file:// uploads; `print_commands` gives the same job as
plain `docker` commands. `run.local.LocalJob` starts it."""

from __future__ import annotations

import secrets
import shlex
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tfbuild_agent.contract import DEFAULT_CONTROL_PORT, DEFAULT_GRACE_SECONDS

from ..errors import TfbuildError

LABEL = "io.tfbuild.job"


@dataclass(frozen=True)
class JobLaunch:
    image: str
    nodes: int
    job: str
    run_id: str
    token: str
    backend: str | None = None
    upload_to: str | None = None
    script_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    discovery: str = "explicit"  # explicit | dns | rendezvous
    grace: int = int(DEFAULT_GRACE_SECONDS)

    @property
    def network(self) -> str:
        return f"{self.job}-net"

    def name(self, i: int) -> str:
        return f"{self.job}-{i}"

    def mounts(self) -> dict[str, str]:
        """host path -> container path: file:// destinations are shared folders."""
        if self.upload_to and self.upload_to.startswith("file://"):
            path = urlsplit(self.upload_to).path
            return {path: path}
        return {}

    def container_env(self, i: int) -> dict[str, str]:
        env = {
            "TFBUILD_NODES": str(self.nodes),
            "TFBUILD_RUN_ID": self.run_id,
            "TFBUILD_JOB_TOKEN": self.token,
            "TFBUILD_NODE_ID": self.name(i),
        }
        if self.backend:
            env["TFBUILD_BACKEND"] = self.backend
        if self.upload_to:
            env["TFBUILD_UPLOAD_TO"] = self.upload_to
        if self.nodes > 1:
            if self.discovery == "explicit":
                env["TFBUILD_HOSTS"] = ",".join(self.name(j) for j in range(self.nodes))
                env["TFBUILD_NODE_RANK"] = str(i)
            elif self.discovery == "dns":
                env["TFBUILD_DNS_NAME"] = self.job
            elif self.discovery == "rendezvous":
                env["TFBUILD_RENDEZVOUS"] = f"{self.name(0)}:{DEFAULT_CONTROL_PORT}"
            else:
                raise TfbuildError(
                    f"--discovery {self.discovery!r} is unknown; use explicit, dns or rendezvous"
                )
        return {**env, **self.env}

    def docker_run_argv(self, i: int) -> list[str]:
        argv = [
            "docker",
            "run",
            "--rm",
            "--name",
            self.name(i),
            "--hostname",
            self.name(i),
            "--network",
            self.network,
            "--network-alias",
            self.job,
        ]
        for host, ctr in self.mounts().items():
            argv += ["-v", f"{host}:{ctr}"]
        for k, v in self.container_env(i).items():
            argv += ["-e", f"{k}={v}"]
        return [*argv, self.image, *self.script_args]

    def print_commands(self) -> str:
        lines = [f"docker network create {self.network}"]
        lines += [shlex.join(self.docker_run_argv(i)) + " &" for i in range(self.nodes)]
        lines += ["wait", f"docker network rm {self.network}"]
        return "\n".join(lines)


def new_job(image: str, nodes: int, **kwargs: object) -> JobLaunch:
    if nodes < 1:
        raise TfbuildError(f"--nodes is {nodes}; it must be at least 1")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    suffix = secrets.token_hex(3)
    return JobLaunch(
        image=image,
        nodes=nodes,
        job=f"tfjob-{suffix}",
        run_id=f"run-{stamp}-{suffix}",
        token=secrets.token_hex(16),
        **kwargs,  # type: ignore[arg-type]
    )
