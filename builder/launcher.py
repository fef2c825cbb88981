"""`tfbuild run`: start a job's containers on the local engine, the way a user
would with plain `docker run` (see `--print`), stream their logs, and clean up.

Nothing here is a scheduler: one user-defined network, N containers named
<job>-<i>, the discovery variables the agent reads, and a bind-mounted folder
for file:// uploads. Every container and the network are removed at the end,
also after a failure or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import secrets
import shlex
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import docker
import docker.errors

from . import console
from .engine_setup import engine_client
from .errors import TfbuildError

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
    grace: int = 30

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
                env["TFBUILD_RENDEZVOUS"] = f"{self.name(0)}:29400"
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


class LocalJob:
    """Runs a JobLaunch on the local engine; always cleans up."""

    def __init__(self, launch: JobLaunch, client: docker.DockerClient | None = None) -> None:
        self.launch = launch
        self.client = client or engine_client()
        self.containers: list[docker.models.containers.Container] = []
        self.network: docker.models.networks.Network | None = None
        self._stopping = False

    def run(self) -> int:
        launch = self.launch
        try:
            self.client.images.get(launch.image)
        except docker.errors.ImageNotFound:
            raise TfbuildError(
                f"image {launch.image} is not on this engine; build it with `tfbuild image` "
                "or pull it first"
            ) from None
        old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in old:
            signal.signal(s, self._on_signal)
        try:
            self.start()
            threads = [
                threading.Thread(target=self._stream, args=(c, i), daemon=True)
                for i, c in enumerate(self.containers)
            ]
            for t in threads:
                t.start()
            codes = [self._wait(c) for c in self.containers]
            for t in threads:
                t.join(5)
            return self._job_code(codes)
        finally:
            self.cleanup()
            for s, h in old.items():
                signal.signal(s, h)

    def start(self) -> None:
        """Create the network and the containers, then start them all."""
        launch = self.launch
        for path in launch.mounts():
            Path(path).mkdir(parents=True, exist_ok=True)
        self.network = self.client.networks.create(
            launch.network, driver="bridge", labels={LABEL: launch.job}
        )
        console.step(
            f"job {launch.job}: {launch.nodes} container(s) of {launch.image} on network "
            f"{launch.network} (run id {launch.run_id})"
        )
        volumes = {h: {"bind": c, "mode": "rw"} for h, c in launch.mounts().items()}
        for i in range(launch.nodes):
            container = self.client.containers.create(
                launch.image,
                command=list(launch.script_args),
                name=launch.name(i),
                hostname=launch.name(i),
                environment=launch.container_env(i),
                labels={LABEL: launch.job},
                volumes=volumes,
                network=launch.network,
                stop_signal="SIGTERM",
                # The job alias lets DNS discovery find every node under one name.
                networking_config={
                    launch.network: self.client.api.create_endpoint_config(aliases=[launch.job])
                },
            )
            self.containers.append(container)
        for c in self.containers:
            c.start()

    def _stream(self, container: docker.models.containers.Container, i: int) -> None:
        prefix = f"[node-{i}] " if self.launch.nodes > 1 else ""
        buf = b""
        for chunk in container.logs(stream=True, follow=True):
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                sys.stdout.write(prefix + line.decode(errors="replace") + "\n")
                sys.stdout.flush()
        if buf:
            sys.stdout.write(prefix + buf.decode(errors="replace") + "\n")

    def _wait(self, container: docker.models.containers.Container) -> int:
        return int(container.wait()["StatusCode"])

    def _job_code(self, codes: list[int]) -> int:
        for i, code in enumerate(codes):
            if code != 0:
                console.fail(f"{self.launch.name(i)} exited with code {code}")
        failed = [c for c in codes if c != 0]
        return failed[0] if failed else 0

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self._stopping:
            return
        self._stopping = True
        console.warn(
            f"{signal.Signals(signum).name}: stopping {len(self.containers)} container(s) "
            f"(grace {self.launch.grace} s)"
        )
        threading.Thread(target=self._stop_all, daemon=True).start()

    def _stop_all(self) -> None:
        for c in self.containers:
            with contextlib.suppress(docker.errors.APIError):
                c.stop(timeout=self.launch.grace)

    def cleanup(self) -> None:
        """Remove every container and the network (also after a failure)."""
        for c in self.containers:
            try:
                c.remove(force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as e:
                console.warn(f"could not remove {c.name}: {e}")
        if self.network is not None:
            try:
                self.network.remove()
            except docker.errors.APIError as e:
                console.warn(f"could not remove network {self.launch.network}: {e}")
