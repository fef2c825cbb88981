"""A job on the local engine, described without touching it: one user-defined
network, N containers named <job>-<i>, the discovery variables the agent reads, the
destination folder and volumes bind-mounted, and the docker-run settings a training
launcher needs (GPUs, shared memory, CPU/memory limits, a stop timeout long enough
for the agent's grace period and final upload). `print_commands` gives the same job
as plain `docker` commands; `run.local.LocalJob` starts it."""

from __future__ import annotations

import secrets
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tfbuild_agent.contract import (
    DEFAULT_CONTROL_PORT,
    DEFAULT_FLUSH_TIMEOUT_SECONDS,
    DEFAULT_GRACE_SECONDS,
)

from ..errors import LaunchError
from .store_access import Mount

LABEL = "io.tfbuild.job"
"""Container and network label: the job name (tfjob-xxxxxx)."""
RUN_LABEL = "io.tfbuild.run"
"""Container label: the run id, how `tfbuild runs wait/cancel RUN` find a detached job."""
STOP_TIMEOUT_LABEL = "io.tfbuild.stop-timeout"
UPLOAD_LABEL = "io.tfbuild.upload-to"

STOP_MARGIN_SECONDS = 10
"""On top of grace + final flush: the agent's own start-up of the shutdown."""

DISCOVERY_MODES = ("explicit", "dns", "rendezvous")


def stop_timeout_for(grace: float) -> int:
    """Seconds `docker stop` waits before SIGKILL: the agent's grace period for the
    script, its bounded final upload flush, and a margin."""
    return int(grace + DEFAULT_FLUSH_TIMEOUT_SECONDS + STOP_MARGIN_SECONDS)


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
    """KEY=VALUE for every container (printed with the value)."""
    discovery: str = "explicit"
    grace: int = int(DEFAULT_GRACE_SECONDS)
    host_env: dict[str, str] = field(default_factory=dict)
    """Forwarded from the host by name (-e NAME, store credentials): printed without value."""
    env_files: tuple[str, ...] = ()
    file_env: dict[str, str] = field(default_factory=dict)
    """What the --env-file files hold (printed as --env-file FILE)."""
    volumes: tuple[Mount, ...] = ()
    gpus: str | None = None
    shm_size: str | None = None
    """--shm-size, else the image's shm_size (see shm_size_for)."""
    cpus: float | None = None
    memory: str | None = None
    stop_timeout: int | None = None
    """Default: stop_timeout_for(grace)."""

    @property
    def network(self) -> str:
        return f"{self.job}-net"

    @property
    def effective_stop_timeout(self) -> int:
        return self.stop_timeout if self.stop_timeout is not None else stop_timeout_for(
            self.grace
        )

    def name(self, i: int) -> str:
        return f"{self.job}-{i}"

    def upload_dir(self) -> str | None:
        """The host folder of a file:// destination (already absolute, see destinations)."""
        if self.upload_to and self.upload_to.startswith("file://"):
            return self.upload_to[len("file://") :]
        return None

    def all_mounts(self) -> list[Mount]:
        """The destination folder (same path inside), then --volume and credential files."""
        folder = self.upload_dir()
        return ([Mount(folder, folder)] if folder else []) + list(self.volumes)

    def labels(self) -> dict[str, str]:
        out = {
            LABEL: self.job,
            RUN_LABEL: self.run_id,
            STOP_TIMEOUT_LABEL: str(self.effective_stop_timeout),
        }
        if self.upload_to:
            out[UPLOAD_LABEL] = self.upload_to
        return out

    def container_env(self, i: int) -> dict[str, str]:
        env = {
            "TFBUILD_NODES": str(self.nodes),
            "TFBUILD_RUN_ID": self.run_id,
            "TFBUILD_JOB_TOKEN": self.token,
            "TFBUILD_NODE_ID": self.name(i),
            "TFBUILD_GRACE_SECONDS": str(self.grace),
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
                raise LaunchError(
                    f"--discovery {self.discovery!r} is unknown; use explicit, dns or rendezvous"
                )
        return {**env, **self.file_env, **self.host_env, **self.env}

    def device_requests(self) -> list[dict[str, Any]]:
        """--gpus as the engine's DeviceRequest: all, a count, or device=0,1."""
        if not self.gpus or self.gpus == "none":
            return []
        request: dict[str, Any] = {"Driver": "", "Capabilities": [["gpu"]]}
        if self.gpus == "all":
            request["Count"] = -1
        elif self.gpus.startswith("device="):
            request["DeviceIDs"] = self.gpus[len("device=") :].split(",")
        else:
            request["Count"] = int(self.gpus)
        return [request]

    def docker_run_argv(self, i: int) -> list[str]:
        argv = ["docker", "run", "--rm", "--name", self.name(i), "--hostname", self.name(i),
                "--network", self.network, "--network-alias", self.job]
        for key, value in self.labels().items():
            argv += ["--label", f"{key}={value}"]
        argv += ["--stop-timeout", str(self.effective_stop_timeout)]
        if self.gpus and self.gpus != "none":
            argv += ["--gpus", self.gpus]
        if self.shm_size:
            argv += ["--shm-size", self.shm_size]
        if self.cpus is not None:
            argv += ["--cpus", f"{self.cpus:g}"]
        if self.memory:
            argv += ["--memory", self.memory]
        for mount in self.all_mounts():
            argv += ["-v", mount.flag()]
        for path in self.env_files:
            argv += ["--env-file", path]
        shown = {**self.container_env(i)}
        for name in self.host_env:
            if name not in self.env:
                argv += ["-e", name]
                shown.pop(name, None)
        for name in self.file_env:
            if name not in self.env and name not in self.host_env:
                shown.pop(name, None)
        for k, v in shown.items():
            argv += ["-e", f"{k}={v}"]
        return [*argv, self.image, *self.script_args]

    def print_commands(self) -> str:
        lines = [f"docker network create --label {LABEL}={self.job} {self.network}"]
        lines += [shlex.join(self.docker_run_argv(i)) + " &" for i in range(self.nodes)]
        lines += ["wait", f"docker network rm {self.network}"]
        return "\n".join(lines)


def new_job(image: str, nodes: int, **kwargs: Any) -> JobLaunch:
    if nodes < 1:
        raise LaunchError(f"--nodes is {nodes}; it must be at least 1")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    suffix = secrets.token_hex(3)
    return JobLaunch(
        image=image,
        nodes=nodes,
        job=f"tfjob-{suffix}",
        run_id=f"run-{stamp}-{suffix}",
        token=secrets.token_hex(16),
        **kwargs,
    )


def shm_size_for(flag: str | None, recorded: Mapping[str, Any], default: str) -> str:
    """/dev/shm for the containers: --shm-size, else the shm_size the image was built
    with (its io.tfbuild.spec label), else `default`."""
    return flag or str(recorded.get("shm_size") or "") or default
