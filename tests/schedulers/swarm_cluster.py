"""A real single-node Docker Swarm for tests, left as it was found.

init():  `docker swarm init --advertise-addr 127.0.0.1` when the engine is not in a swarm.
leave(): removes what the tests created (services, networks), then, only if init() made
         the swarm, `docker swarm leave --force` and removes docker_gwbridge, which swarm
         creates and leaves behind.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import time
from dataclasses import dataclass, field

PREFIX = "tfbsched"
GWBRIDGE = "docker_gwbridge"


def docker(*args: str, timeout: float = 60, check: bool = True) -> str:
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


@dataclass
class Swarm:
    made_swarm: bool = False
    had_gwbridge: bool = False
    services: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)

    def init(self) -> None:
        state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip()
        self.had_gwbridge = bool(docker("network", "ls", "-q", "--filter",
                                        f"name=^{GWBRIDGE}$").strip())
        if state == "active":
            return  # someone else's swarm: use it, and leave it standing afterwards
        if state != "inactive":
            raise RuntimeError(f"the engine's swarm state is {state!r}; expected inactive")
        docker("swarm", "init", "--advertise-addr", "127.0.0.1", timeout=120)
        self.made_swarm = True

    def network(self) -> str:
        """A new attachable overlay network (removed by leave())."""
        name = f"{PREFIX}-{secrets.token_hex(3)}"
        docker("network", "create", "--driver", "overlay", "--attachable", name)
        self.networks.append(name)
        return name

    def create_service(self, name: str, image: str, replicas: int, network: str,
                       env: dict[str, str], mounts: list[str] = (), args: list[str] = ()) -> None:
        """`docker service create` of a one-shot job: N replicas, never restarted."""
        argv = ["service", "create", "--detach", "--name", name, "--replicas", str(replicas),
                "--restart-condition", "none", "--network", network, "--no-resolve-image"]
        for key, value in env.items():
            argv += ["--env", f"{key}={value}"]
        for mount in mounts:
            argv += ["--mount", mount]
        self.services.append(name)
        docker(*argv, image, *args, timeout=120)

    def tasks(self, service: str) -> list[dict]:
        out = docker("service", "ps", service, "--no-trunc", "--format", "{{json .}}")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def containers(self, service: str) -> list[str]:
        return docker("ps", "-aq", "--filter",
                      f"label=com.docker.swarm.service.name={service}").split()

    def wait_tasks(self, service: str, replicas: int, done: set[str], timeout: float) -> list[dict]:
        """Wait until `replicas` tasks reached one of the `done` states ("Complete",
        "Failed", ...; `docker service ps` shows them as e.g. "Complete 2 seconds ago")."""
        deadline = time.monotonic() + timeout
        while True:
            tasks = self.tasks(service)
            states = [t["CurrentState"].split()[0] for t in tasks]
            if len(tasks) >= replicas and sum(s in done for s in states) >= replicas:
                return tasks
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"service {service}: tasks {states} after {timeout:g}s, waiting for "
                    f"{replicas} in {sorted(done)}\n{self.logs(service)}")
            time.sleep(0.5)

    def logs(self, service: str) -> str:
        """Every task's output (stdout and stderr), each line prefixed with its task."""
        r = subprocess.run(["docker", "service", "logs", "--no-trunc", service],
                           capture_output=True, text=True, timeout=60)
        return r.stdout + r.stderr

    def container_logs(self, container: str) -> str:
        r = subprocess.run(["docker", "logs", container], capture_output=True, text=True,
                           timeout=60)
        return r.stdout + r.stderr

    def exit_code(self, container: str) -> int:
        return int(docker("inspect", "--format", "{{.State.ExitCode}}", container).strip())

    def leave(self) -> None:
        for service in self.services:
            docker("service", "rm", service, check=False)
        # Task containers go away with their service, asynchronously: wait (bounded),
        # because a network in use cannot be removed.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(self.containers(s) for s in self.services):
            time.sleep(0.5)
        for network in self.networks:
            for _ in range(20):
                if docker("network", "rm", network, check=False) or not docker(
                        "network", "ls", "-q", "--filter", f"name=^{network}$").strip():
                    break
                time.sleep(0.5)
        if self.made_swarm:
            docker("swarm", "leave", "--force", timeout=120)
            if not self.had_gwbridge:
                with contextlib.suppress(RuntimeError):
                    docker("network", "rm", GWBRIDGE)
