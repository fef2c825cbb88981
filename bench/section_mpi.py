"""Part of section 3: a 2 x 2 MPI job (mpi4py), tfbuild's launch vs mpirun over ssh.

tfbuild: two containers of an `distributed_backend: mpi` image started by tfbuild's
launcher; node 0's agent runs mpirun through the agents' launch channel (no ssh).
Peer: what horovodrun does underneath, on the same image plus an ssh server and a key:
node 1 runs sshd, node 0 starts sshd, waits until it can reach node 1, and runs mpirun
with the same process layout. Horovod itself is not built (see bench/README.md).
Both are timed from the last container start to the last of the 4 ranks' first lines.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from pathlib import Path
from typing import Any

import docker
import docker.errors
from common import HOST_CA, VENV_BIN, ImageTracker, after_last_start, load, run_job, sdk_build

MPI_IMAGE = "tfbuild-bench/mpi:latest"
SSH_IMAGE = "tfbuild-bench/mpi-ssh:latest"
RANKS_PY = """\
import time

print(f"BENCH-SCRIPT {time.time():.6f}", flush=True)
from mpi4py import MPI  # noqa: E402

MPI.COMM_WORLD.Barrier()
"""
PROJECT_YAML = """\
entry_script: ranks.py
distributed_backend: mpi
horovod: false
node_count: 2
process_count_per_node: 2
"""
SSH_DOCKERFILE = f"""\
FROM {MPI_IMAGE}
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
    openssh-server openssh-client \\
 && rm -rf /var/lib/apt/lists/* \\
 && mkdir -p /run/sshd /root/.ssh \\
 && ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/id_ed25519 \\
 && cp /root/.ssh/id_ed25519.pub /root/.ssh/authorized_keys \\
 && printf 'Host *\\n  StrictHostKeyChecking no\\n  UserKnownHostsFile /dev/null\\n' \\
    > /root/.ssh/config
ENTRYPOINT []
"""
MPIRUN = ("mpirun --allow-run-as-root --tag-output -np 4 -H {hosts} -bind-to none -map-by slot "
          "--mca pml ob1 --mca btl self,vader,tcp --mca btl_vader_single_copy_mechanism none "
          "-x PATH -x PYTHONUNBUFFERED /opt/tfbuild/venv/bin/python -u /app/ranks.py")


def build_images(client: docker.DockerClient, workdir: Path, tracker: ImageTracker) -> None:
    project = workdir / "mpi-ranks"
    project.mkdir(parents=True, exist_ok=True)
    (project / "tfbuild.yaml").write_text(PROJECT_YAML)
    (project / "ranks.py").write_text(RANKS_PY)
    argv = [str(VENV_BIN / "tfbuild"), "image", str(project), "-t", MPI_IMAGE, "-q"]
    argv += ["--trust-host-ca"] if HOST_CA.exists() else []
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"building the MPI image failed:\n{done.stderr[-3000:]}")
    tracker.tags.append(MPI_IMAGE)
    sdk_build(client, {"Dockerfile": SSH_DOCKERFILE.encode()}, SSH_IMAGE, tracker)


def tfbuild_job(client: docker.DockerClient) -> dict[str, Any]:
    from tfbuild.run.launch import JobLaunch

    job = f"tfbench-{secrets.token_hex(3)}"
    launch = JobLaunch(MPI_IMAGE, 2, job, f"run-{job}", secrets.token_hex(16), grace=5)
    return _result(*run_job(client, launch))


def ssh_job(client: docker.DockerClient) -> dict[str, Any]:
    job = f"tfbench-{secrets.token_hex(3)}"
    names = [f"{job}-0", f"{job}-1"]
    network = client.networks.create(f"{job}-net", driver="bridge")
    mpirun = MPIRUN.format(hosts=f"{names[0]}:2,{names[1]}:2")
    first = (f"/usr/sbin/sshd && until ssh -o ConnectTimeout=1 {names[1]} true 2>/dev/null; "
             f"do sleep 0.1; done && exec {mpirun}")
    commands = [["sh", "-c", first], ["/usr/sbin/sshd", "-D", "-e"]]
    containers = []
    try:
        for name, command in zip(names, commands, strict=True):
            containers.append(client.containers.create(
                SSH_IMAGE, command=command, name=name, hostname=name, network=network.name,
                working_dir="/app"))
        for c in containers:
            c.start()
        code = int(containers[0].wait(timeout=600)["StatusCode"])
        records = []
        for c in containers:
            c.reload()
            records.append((c.attrs["State"]["StartedAt"],
                            c.logs(timestamps=True).decode(errors="replace")))
        return _result(records, code)
    finally:
        for c in containers:
            with contextlib.suppress(docker.errors.APIError):
                c.remove(force=True)
        with contextlib.suppress(docker.errors.APIError):
            network.remove()


def _result(records: list[tuple[str, str]], code: int) -> dict[str, Any]:
    stamps = after_last_start(records, "BENCH-SCRIPT")
    if len(stamps) < 4:
        tail = "\n".join(logs[-1500:] for _, logs in records)
        raise RuntimeError(f"only {len(stamps)} of 4 ranks started (exit {code}):\n{tail}")
    return {"script_s": max(stamps), "exit": code}


def run(reps: int, workdir: Path, tracker: ImageTracker) -> dict[str, Any]:
    client = docker.from_env(timeout=900)
    build_images(client, workdir, tracker)
    out: dict[str, list[dict[str, Any]]] = {"tfbuild": [], "mpirun+ssh": []}
    jobs = {"tfbuild": tfbuild_job, "mpirun+ssh": ssh_job}
    for rep in range(reps):
        for kind in (list(jobs) if rep % 2 == 0 else list(jobs)[::-1]):
            try:
                result = jobs[kind](client) | {"load": load()}
            except RuntimeError as e:
                result = {"error": str(e), "load": load()}
            out[kind].append(result)
            print(f"  mpi 2x2 {kind}: "
                  f"{ {k: v for k, v in result.items() if k != 'error'} }", flush=True)
    return out
