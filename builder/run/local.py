"""Start a JobLaunch's containers on the local engine, the way a user would with
plain `docker run` (see `tfbuild run --print`), stream their logs, and clean up:
every container and the network are removed at the end, also after a failure or
Ctrl-C. A detached job keeps its containers until `tfbuild runs wait RUN` or
`tfbuild runs cancel RUN` (`DetachedJob`) ends it."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import docker
import docker.errors
from docker.types import DeviceRequest

from .. import console
from ..engine.setup import engine_client, image_attrs
from ..errors import LaunchError
from .launch import LABEL, RUN_LABEL, STOP_TIMEOUT_LABEL, JobLaunch

Container = docker.models.containers.Container


def job_code(names: Sequence[str], codes: Sequence[int]) -> int:
    """The job's exit code: the first failing container's (0 when all succeeded)."""
    for name, code in zip(names, codes, strict=True):
        if code != 0:
            console.fail(f"{name} exited with code {code}")
    failed = [c for c in codes if c != 0]
    return failed[0] if failed else 0


class LocalJob:
    """Runs a JobLaunch on the local engine; always cleans up unless detached."""

    def __init__(self, launch: JobLaunch, client: docker.DockerClient | None = None) -> None:
        self.launch = launch
        self.client = client or engine_client()
        self.containers: list[Container] = []
        self.network: docker.models.networks.Network | None = None
        self._stopping = False

    def run(self, *, detach: bool = False) -> int:
        launch = self.launch
        image_attrs(self.client, launch.image)
        if detach:
            try:
                self.start()
            except BaseException:
                self.cleanup()
                raise
            return 0
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
        labels = launch.labels()
        if launch.upload_dir():
            Path(launch.upload_dir()).mkdir(parents=True, exist_ok=True)
        self.network = self.client.networks.create(
            launch.network, driver="bridge", labels=labels
        )
        console.step(
            f"job {launch.job}: {launch.nodes} container(s) of {launch.image} on network "
            f"{launch.network} (run id {launch.run_id})"
        )
        volumes = {
            m.host: {"bind": m.container, "mode": "ro" if m.read_only else "rw"}
            for m in launch.all_mounts()
        }
        devices = [DeviceRequest(driver=r["Driver"], count=r.get("Count", 0),
                                 device_ids=r.get("DeviceIDs"), capabilities=r["Capabilities"])
                   for r in launch.device_requests()]
        api = self.client.api
        for i in range(launch.nodes):
            # The low-level call: the SDK's containers.create has no stop_timeout.
            host_config = api.create_host_config(
                binds=volumes,
                network_mode=launch.network,
                shm_size=launch.shm_size,
                nano_cpus=int(launch.cpus * 1e9) if launch.cpus is not None else None,
                mem_limit=launch.memory,
                device_requests=devices or None,
            )
            created = api.create_container(
                launch.image,
                command=list(launch.script_args),
                name=launch.name(i),
                hostname=launch.name(i),
                environment=launch.container_env(i),
                labels=labels,
                host_config=host_config,
                stop_signal="SIGTERM",
                stop_timeout=launch.effective_stop_timeout,
                # The job alias lets DNS discovery find every node under one name.
                networking_config=api.create_networking_config(
                    {launch.network: api.create_endpoint_config(aliases=[launch.job])}
                ),
            )
            container = self.client.containers.get(created["Id"])
            self.containers.append(container)
        for c in self.containers:
            c.start()

    def _stream(self, container: Container, i: int) -> None:
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

    def _wait(self, container: Container) -> int:
        return int(container.wait()["StatusCode"])

    def _job_code(self, codes: list[int]) -> int:
        return job_code([self.launch.name(i) for i in range(len(codes))], codes)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self._stopping:
            return
        self._stopping = True
        console.warn(
            f"{signal.Signals(signum).name}: stopping {len(self.containers)} container(s) "
            f"(grace {self.launch.grace} s, then the final upload; at most "
            f"{self.launch.effective_stop_timeout} s)"
        )
        threading.Thread(target=self._stop_all, daemon=True).start()

    def _stop_all(self) -> None:
        stop_all(self.containers, self.launch.effective_stop_timeout)

    def cleanup(self) -> None:
        """Remove every container and the network (also after a failure)."""
        remove_all(self.containers, [self.network] if self.network is not None else [])


def stop_all(containers: Sequence[Container], timeout: int) -> None:
    """SIGTERM every container at once, SIGKILL after `timeout` seconds."""
    threads = [threading.Thread(target=_stop, args=(c, timeout), daemon=True)
               for c in containers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 30)


def _stop(container: Container, timeout: int) -> None:
    with contextlib.suppress(docker.errors.APIError):
        container.stop(timeout=timeout)


def remove_all(containers: Sequence[Container], networks: Sequence) -> None:
    for c in containers:
        try:
            c.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            console.warn(f"could not remove {c.name}: {e}")
    for n in networks:
        try:
            n.remove()
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            console.warn(f"could not remove network {n.name}: {e}")


class DetachedJob:
    """A job started with --detach, found again by its run id."""

    def __init__(self, run_id: str, client: docker.DockerClient | None = None) -> None:
        self.run_id = run_id
        self.client = client or engine_client()
        found = self.client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"})
        if not found:
            raise LaunchError(
                f"no containers of run {run_id} on this engine; it has ended and been cleaned "
                "up, or it was not started here with `tfbuild run --detach` "
                "(`tfbuild runs list DEST` shows finished runs)"
            )
        self.containers = sorted(found, key=lambda c: c.name)
        labels = self.containers[0].labels
        self.job = labels.get(LABEL, "")
        self.labels = labels
        self.stop_timeout = int(labels.get(STOP_TIMEOUT_LABEL, "10"))

    def networks(self) -> list:
        return self.client.networks.list(filters={"label": f"{LABEL}={self.job}"})

    def wait(self) -> int:
        codes = [int(c.wait()["StatusCode"]) for c in self.containers]
        return job_code([c.name for c in self.containers], codes)

    def cancel(self) -> int:
        stop_all(self.containers, self.stop_timeout)
        return self.wait()

    def cleanup(self) -> None:
        remove_all(self.containers, self.networks())
