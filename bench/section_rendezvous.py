"""3. Launch and rendezvous: how long N nodes take to form a job after the last one started.

Containers: `tfbuild run`'s own launcher (LocalJob, rendezvous discovery) starts N
containers of a tiny agent image; peer: N containers running torchrun (c10d) from the
CPU torch wheel. Times come from the engine: the last container's StartedAt, and the log
timestamps of "job formed" and of the script's first line in every container.

Processes: N agents joining on 127.0.0.1 (bench/rdzv_node.py) vs N torchrun agents with
the c10d rendezvous, all started as fast as the bench can spawn them. Times run from the
moment the last process was spawned to the last node formed / the last script started.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import docker
from common import (
    BENCH,
    VENV_BIN,
    ImageTracker,
    Row,
    ensure_ca_base,
    load,
    median,
    parse_docker_time,
    sdk_build,
)

AGENT_IMAGE = "tfbuild-bench/agent-tiny:latest"
TORCH_IMAGE = "tfbuild-bench/torchrun-tiny:latest"
PY = "python3.11"
AGENT_DOCKERFILE = f"""\
FROM {{base}}
COPY agent/requirements.txt /tmp/agent-requirements.txt
RUN python3 -m venv /opt/tfbuild/agent \\
 && /opt/tfbuild/agent/bin/pip install --no-cache-dir -r /tmp/agent-requirements.txt
COPY agent/tfbuild_agent/ /opt/tfbuild/agent/lib/{PY}/site-packages/tfbuild_agent/
COPY job.json /etc/tfbuild/job.json
COPY rdzv_script.py /app/rdzv_script.py
WORKDIR /app
ENTRYPOINT ["/opt/tfbuild/agent/bin/python", "-m", "tfbuild_agent", "run", "--"]
"""
TORCH_DOCKERFILE = """\
FROM {base}
COPY {wheel} /tmp/{wheel}
RUN python3 -m venv /opt/torch && /opt/torch/bin/pip install --no-cache-dir /tmp/{wheel} \\
 && rm /tmp/{wheel}
COPY rdzv_script.py /app/rdzv_script.py
WORKDIR /app
ENTRYPOINT ["/opt/torch/bin/torchrun"]
"""
TORCHRUN_FLAGS = ("--nproc-per-node=1", "--rdzv-backend=c10d", "--max-restarts=0",
                  "--monitor-interval=0.1")


def torch_wheel() -> Path | None:
    """The CPU torch wheel on this machine (BENCH_TORCH_WHEEL, else pip's find-links)."""
    if os.environ.get("BENCH_TORCH_WHEEL"):
        return Path(os.environ["BENCH_TORCH_WHEEL"])
    for folder in os.environ.get("PIP_FIND_LINKS", "/opt/wheels").split():
        found = sorted(glob.glob(os.path.join(folder, "torch-*+cpu-*.whl")))
        if found:
            return Path(found[-1])
    return None


def build_images(client: docker.DockerClient, tracker: ImageTracker) -> str:
    """The tiny agent image, and the torchrun one when a CPU wheel is here.
    Returns why there is no torchrun image ("" if there is one)."""
    from tfbuild.agent_bundle import add_agent
    from tfbuild.context import BuildContext
    from tfbuild_agent.jobspec import JobSpec

    base = ensure_ca_base(client)
    script = (BENCH / "rdzv_script.py").read_bytes()
    ctx = BuildContext()
    add_agent(ctx, "agent")
    job = JobSpec(entry_script="rdzv_script.py", distributed_backend="multiworker",
                  python="/opt/tfbuild/agent/bin/python")
    files: dict[str, bytes | Path] = dict(ctx.files) | {
        "Dockerfile": AGENT_DOCKERFILE.format(base=base).encode(),
        "job.json": job.to_json().encode(), "rdzv_script.py": script}
    sdk_build(client, files, AGENT_IMAGE, tracker)
    wheel = torch_wheel()
    if wheel is None or not wheel.exists():
        return "no CPU torch wheel on this machine (set BENCH_TORCH_WHEEL)"
    dockerfile = TORCH_DOCKERFILE.format(base=base, wheel=wheel.name)
    sdk_build(client, {"Dockerfile": dockerfile.encode(), wheel.name: wheel,
                       "rdzv_script.py": script}, TORCH_IMAGE, tracker)
    return ""


# -- containers ----------------------------------------------------------------------


def container_job(client: docker.DockerClient, kind: str, nodes: int) -> dict[str, Any]:
    """One job through tfbuild's launcher; returns seconds after the last container start."""
    from tfbuild.launcher import JobLaunch, LocalJob

    job = f"tfbench-{secrets.token_hex(3)}"
    if kind == "tfbuild":
        launch = JobLaunch(AGENT_IMAGE, nodes, job, f"run-{job}", secrets.token_hex(16),
                           backend="multiworker", discovery="rendezvous", grace=5)
    else:
        args = (f"--nnodes={nodes}", *TORCHRUN_FLAGS, f"--rdzv-endpoint={job}-0:29500",
                f"--rdzv-id={job}", "rdzv_script.py")
        launch = JobLaunch(TORCH_IMAGE, nodes, job, f"run-{job}", secrets.token_hex(16),
                           script_args=args, grace=5)

    records: list[tuple[str, str]] = []

    class TimedJob(LocalJob):
        def _stream(self, container: Any, i: int) -> None:
            pass  # the logs are read with timestamps after the end

        def _wait(self, container: Any) -> int:
            code = super()._wait(container)
            container.reload()
            logs = container.logs(timestamps=True).decode(errors="replace")
            records.append((container.attrs["State"]["StartedAt"], logs))
            return code

    run = TimedJob(launch, client)
    guard = threading.Timer(600, run._stop_all)
    guard.start()
    try:
        with contextlib.redirect_stdout(sys.stderr):
            code = run.run()
    finally:
        guard.cancel()
    last_start = max(parse_docker_time(started) for started, _ in records)

    def last(marker: str) -> float | None:
        stamps = [parse_docker_time(line.split(" ", 1)[0]) for _, logs in records
                  for line in logs.splitlines() if marker in line]
        per_node = len(stamps) >= nodes
        return max(stamps) - last_start if per_node else None

    formed = last("job formed") if kind == "tfbuild" else None
    script = last("BENCH-SCRIPT")
    if script is None:
        tail = records[0][1][-1500:] if records else ""
        raise RuntimeError(f"{kind} job of {nodes} containers failed (exit {code}):\n{tail}")
    return {"formed_s": formed, "script_s": script, "exit": code}


# -- processes -----------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def private_mb(pid: int) -> float:
    """Unique memory of a process (private pages), in MB."""
    total = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total / 1024


def process_job(kind: str, nodes: int, timeout: float = 600.0) -> dict[str, Any]:
    port = free_port()
    script = str(BENCH / "rdzv_script.py")
    env = dict(os.environ, TFBUILD_JOB_TOKEN=secrets.token_hex(16), OMP_NUM_THREADS="1")
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="tfbuild-bench-rdzv-") as tmp:
        outs = [Path(tmp) / f"{i}.out" for i in range(nodes)]
        try:
            for i, out in enumerate(outs):
                if kind == "tfbuild":
                    argv = [sys.executable, str(BENCH / "rdzv_node.py"), str(port), str(nodes),
                            f"node-{i:04d}", script]
                else:
                    argv = [str(VENV_BIN / "torchrun"), f"--nnodes={nodes}", *TORCHRUN_FLAGS,
                            f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id=bench{port}",
                            script]
                with open(out, "w") as f:
                    procs.append(subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT,
                                                  stdin=subprocess.DEVNULL, env=env,
                                                  start_new_session=True))
            last_spawn = time.time()
            lines, memory = wait_for_lines(outs, procs, timeout)
        finally:
            for p in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
            for p in procs:
                p.wait()
    script_at = [float(ln.split()[1]) for ln in lines if ln.startswith("BENCH-SCRIPT")]
    formed = [ln.split() for ln in lines if ln.startswith("BENCH-FORMED")]
    out = {"script_s": max(script_at) - last_spawn, "private_mb_node0": round(memory, 1)}
    if formed:
        out["formed_s"] = max(float(f[2]) for f in formed) - last_spawn
        out["protocol_s"] = max(float(f[2]) for f in formed) - max(float(f[1]) for f in formed)
    return out


def wait_for_lines(outs: list[Path], procs: list[subprocess.Popen], timeout: float
                   ) -> tuple[list[str], float]:
    """Every BENCH- line once each output has its script line, and the peak private memory
    seen of the first node; raises on a failed node."""
    deadline = time.monotonic() + timeout
    done: dict[int, list[str]] = {}
    peak = 0.0
    while len(done) < len(outs):
        peak = max(peak, private_mb(procs[0].pid))
        for i, out in enumerate(outs):
            if i in done:
                continue
            text = out.read_text(errors="replace")
            if "BENCH-SCRIPT" in text:
                done[i] = [ln for ln in text.splitlines() if ln.startswith("BENCH-")]
            elif procs[i].poll() not in (None, 0) or time.monotonic() > deadline:
                raise RuntimeError(f"node {i} of {len(outs)} failed:\n{text[-1500:]}")
        time.sleep(0.2)
    return [ln for lines in done.values() for ln in lines], peak


# -- the section ---------------------------------------------------------------------


def run(container_sizes: list[int], process_sizes: list[int], reps: int,
        tracker: ImageTracker) -> tuple[list[Row], dict[str, Any]]:
    client = docker.from_env(timeout=900)
    no_torch_image = build_images(client, tracker)
    torchrun_ok = (VENV_BIN / "torchrun").exists()
    raw: dict[str, Any] = {"containers": {}, "processes": {}, "torch_image": no_torch_image,
                           "torch_max": 0}
    for n in container_sizes:
        kinds = ["tfbuild"] + ([] if no_torch_image else ["torchrun"])
        for rep in range(reps):
            for kind in kinds if rep % 2 == 0 else kinds[::-1]:
                result = container_job(client, kind, n) | {"load": load()}
                raw["containers"].setdefault(f"{kind}/{n}", []).append(result)
                print(f"  rendezvous containers {kind} N={n}: {result}", flush=True)
    torch_mb = 0.0
    for n in process_sizes:
        # A torchrun agent imports torch (~140 MB private each here): run it only while
        # N agents fit in 40% of the memory available.
        fits = n * torch_mb < 0.4 * available_mb()
        kinds = ["tfbuild"] + (["torchrun"] if torchrun_ok and fits else [])
        for rep in range(reps):
            for kind in kinds if rep % 2 == 0 else kinds[::-1]:
                result = process_job(kind, n) | {"load": load()}
                raw["processes"].setdefault(f"{kind}/{n}", []).append(result)
                if kind == "torchrun":
                    torch_mb = max(torch_mb, result["private_mb_node0"])
                    raw["torch_max"] = n
                print(f"  rendezvous processes {kind} N={n}: {result}", flush=True)
    return rows(raw, container_sizes, process_sizes), raw


def available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rows(raw: dict[str, Any], container_sizes: list[int], process_sizes: list[int]
         ) -> list[Row]:
    out: list[Row] = []
    for where, sizes, limit, target_n in (("containers", container_sizes, 2.0, 32),
                                          ("processes", process_sizes, 5.0, 512)):
        for n in sizes:
            ours = raw[where][f"tfbuild/{n}"]
            peer = raw[where].get(f"torchrun/{n}")
            at_load = median(r["load"] for r in ours)
            formed = median(r["formed_s"] for r in ours)
            out.append(Row("rendezvous", f"{n} {where}: last start -> all formed", formed, "s",
                           target=f"< {limit:g} s" if n == target_n else "",
                           met=formed < limit if n == target_n else None, load=at_load))
            script = median(r["script_s"] for r in ours)
            peer_script = median(r["script_s"] for r in peer) if peer else None
            why = "" if peer else _no_peer(raw, where, n)
            out.append(Row("rendezvous", f"{n} {where}: last start -> all scripts started",
                           script, "s", "torchrun c10d" + (f" ({why})" if why else ""),
                           peer_script, "<= torchrun" if peer else "",
                           script <= peer_script if peer_script is not None else None,
                           load=at_load))
    return out


def _no_peer(raw: dict[str, Any], where: str, n: int) -> str:
    if where == "containers":
        return "not run: " + (raw.get("torch_image") or "no image")
    per = [r.get("private_mb_node0", 0) for k, v in raw["processes"].items()
           if k.startswith("torchrun/") for r in v]
    mb = f", ~{median(per):.0f} MB private per agent" if per else ""
    return f"not run above {raw['torch_max']} processes: memory{mb}"

