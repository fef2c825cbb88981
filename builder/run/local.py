"""Start a JobLaunch's containers on the local engine, the way a user would with
plain `docker run` (see `tfbuild run --print`), stream their logs, and clean up:
every container and the network are removed at the end, also after a failure or
Ctrl-C."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from pathlib import Path

import docker
import docker.errors

from .. import console
from ..engine.setup import engine_client
from ..errors import TfbuildError
from .launch import LABEL, JobLaunch


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
