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
import time
from pathlib import Path
from typing import Any

import docker
from common import (
    AGENT_IMAGE,
    BENCH,
    TORCH_IMAGE,
    VENV_BIN,
    ImageTracker,
    Row,
    after_last_start,
    ensure_ca_base,
    load,
    median,
    run_job,
    sdk_build,
)

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
    from tfbuild.image.agent_bundle import add_agent
    from tfbuild.image.context import BuildContext
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
    """One job through tfbuild's launcher; seconds after the last container start."""
    from tfbuild.run.launch import JobLaunch

    job = f"tfbench-{secrets.token_hex(3)}"
    if kind == "tfbuild":
        launch = JobLaunch(AGENT_IMAGE, nodes, job, f"run-{job}", secrets.token_hex(16),
                           backend="multiworker", discovery="rendezvous", grace=5)
    else:
        args = (f"--nnodes={nodes}", *TORCHRUN_FLAGS, f"--rdzv-endpoint={job}-0:29500",
                f"--rdzv-id={job}", "rdzv_script.py")
        launch = JobLaunch(TORCH_IMAGE, nodes, job, f"run-{job}", secrets.token_hex(16),
                           script_args=args, grace=5)
    records, code = run_job(client, launch)

    def last(marker: str) -> float | None:
        stamps = after_last_start(records, marker)
        return max(stamps) if len(stamps) >= nodes else None

    formed = last("job formed after") if kind == "tfbuild" else None
    script = last("BENCH-SCRIPT")
    if (formed if kind == "tfbuild" else script) is None:
        tail = records[0][1][-1500:] if records else ""
        raise RuntimeError(f"{kind} job of {nodes} containers failed (exit {code}):\n{tail}")
    out: dict[str, Any] = {"formed_s": formed, "script_s": script, "exit": code}
    if code != 0:  # the job formed (that is what is measured) but did not end well
        lines = sorted(line for _, logs in records for line in logs.splitlines()
                       if "lost" in line or "failed" in line or "rror" in line)
        out["exit_reason"] = lines[0].split(" ", 1)[1][:300] if lines else ""
    return {k: v for k, v in out.items() if v is not None}


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
    """kind: tfbuild (join only), tfbuild+script (then run the script, as the agent does)
    or torchrun. Seconds are counted from the moment the last process was spawned."""
    port = free_port()
    script = str(BENCH / "rdzv_script.py")
    marker = "BENCH-FORMED" if kind == "tfbuild" else "BENCH-SCRIPT"
    env = dict(os.environ, TFBUILD_JOB_TOKEN=secrets.token_hex(16), OMP_NUM_THREADS="1")
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="tfbuild-bench-rdzv-") as tmp:
        outs = [Path(tmp) / f"{i}.out" for i in range(nodes)]
        try:
            for i, out in enumerate(outs):
                if kind == "torchrun":
                    argv = [str(VENV_BIN / "torchrun"), f"--nnodes={nodes}", *TORCHRUN_FLAGS,
                            f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id=bench{port}",
                            script]
                else:
                    argv = [sys.executable, str(BENCH / "rdzv_node.py"), str(port), str(nodes),
                            f"node-{i:04d}", "-" if kind == "tfbuild" else script]
                with open(out, "w") as f:
                    procs.append(subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT,
                                                  stdin=subprocess.DEVNULL, env=env,
                                                  start_new_session=True))
            last_spawn = time.time()
            lines, memory = wait_for_lines(outs, procs, marker, timeout)
        except NodeFailed as e:
            return {"error": str(e)}
        finally:
            for p in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
            for p in procs:
                p.wait()
    out: dict[str, Any] = {"private_mb_node0": round(memory, 1)}
    script_at = [float(ln.split()[1]) for ln in lines if ln.startswith("BENCH-SCRIPT")]
    if script_at:
        out["script_s"] = max(script_at) - last_spawn
    formed = [ln.split() for ln in lines if ln.startswith("BENCH-FORMED")]
    if formed:
        out["formed_s"] = max(float(f[2]) for f in formed) - last_spawn
        out["protocol_s"] = max(float(f[2]) for f in formed) - max(float(f[1]) for f in formed)
    return out


class NodeFailed(Exception):
    """A node of a loopback job failed or never got there; the message holds its log."""


def wait_for_lines(outs: list[Path], procs: list[subprocess.Popen], marker: str,
                   timeout: float) -> tuple[list[str], float]:
    """Every BENCH- line once each output has `marker`, and the peak private memory seen of
    the first node; raises NodeFailed with the logs of the failed and the serving node."""
    deadline = time.monotonic() + timeout
    done: dict[int, list[str]] = {}
    peak = 0.0
    while len(done) < len(outs):
        peak = max(peak, private_mb(procs[0].pid))
        for i, out in enumerate(outs):
            if i in done:
                continue
            text = out.read_text(errors="replace")
            if marker in text:
                done[i] = [ln for ln in text.splitlines() if ln.startswith("BENCH-")]
            elif procs[i].poll() not in (None, 0) or time.monotonic() > deadline:
                server = next((o.read_text(errors="replace") for o in outs
                               if "rendezvous: serving" in o.read_text(errors="replace")), "")
                raise NodeFailed(f"node {i} of {len(outs)} failed after "
                                 f"{timeout - deadline + time.monotonic():.0f} s:\n"
                                 f"{text[-1200:]}\n-- the serving node:\n{server[-1500:]}")
        time.sleep(0.2)
    return [ln for lines in done.values() for ln in lines], peak


# -- the section ---------------------------------------------------------------------


def run(container_sizes: list[int], process_sizes: list[int], reps: int, workdir: Path,
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
                try:
                    result = container_job(client, kind, n) | {"load": load()}
                except RuntimeError as e:
                    result = {"error": str(e), "load": load()}
                raw["containers"].setdefault(f"{kind}/{n}", []).append(result)
                print(f"  rendezvous containers {kind} N={n}: {result}", flush=True)
    torch_mb = 0.0
    for n in process_sizes:
        # A torchrun agent imports torch (~140 MB private each here): run it, and tfbuild
        # nodes that also start the script, only while N agents fit in 40% of free memory.
        fits = torchrun_ok and n * torch_mb < 0.4 * available_mb()
        kinds = ["tfbuild"] + (["tfbuild+script", "torchrun"] if fits else [])
        for rep in range(reps):
            for kind in kinds[rep % len(kinds):] + kinds[:rep % len(kinds)]:
                result = process_job(kind, n) | {"load": load()}
                raw["processes"].setdefault(f"{kind}/{n}", []).append(result)
                if kind == "torchrun" and "error" not in result:
                    torch_mb = max(torch_mb, result["private_mb_node0"])
                    raw["torch_max"] = n
                shown = {k: v for k, v in result.items() if k != "error"}
                print(f"  rendezvous processes {kind} N={n}: {shown}"
                      + (" FAILED" if "error" in result else ""), flush=True)
    import section_mpi

    try:
        raw["mpi"] = section_mpi.run(reps, workdir, tracker)
    except RuntimeError as e:
        raw["mpi"] = {"error": str(e)}
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
        peer_missing_noted = False
        for n in sizes:
            ours = raw[where].get(f"tfbuild/{n}", [])
            formed, note = summary(ours, "formed_s")
            if where == "processes" and formed is not None:
                note = f"last node ready -> all formed {summary(ours, 'protocol_s')[0]:.2f} s"
            ended = [r for r in ours if r.get("exit")]
            if ended:
                note = "; ".join(filter(None, (note, f"{len(ended)} of {len(ours)} jobs formed "
                                               f"but exited {ended[0]['exit']}: "
                                               f"{ended[0].get('exit_reason', '')}")))
            out.append(Row("rendezvous", f"{n} {where}: last start -> all formed", formed, "s",
                           target=f"< {limit:g} s" if n == target_n else "",
                           met=(formed is not None and formed < limit) if n == target_n
                           else None, note=note, load=at_load(ours)))
            mine = raw[where].get(f"tfbuild{'' if where == 'containers' else '+script'}/{n}")
            peer = raw[where].get(f"torchrun/{n}")
            if not mine or not peer:
                if not peer_missing_noted:
                    out.append(Row("rendezvous", f"{n}+ {where}: all scripts started", None,
                                   "s", "torchrun c10d", None, note=_no_peer(raw, where)))
                    peer_missing_noted = True
                continue
            script, note = summary(mine, "script_s")
            peer_script, peer_note = summary(peer, "script_s")
            met = None if script is None or peer_script is None else script <= peer_script
            out.append(Row("rendezvous", f"{n} {where}: last start -> all scripts started",
                           script, "s", "torchrun c10d", peer_script, "<= torchrun", met,
                           note="; ".join(filter(None, (note, peer_note))),
                           load=at_load(mine + peer)))
    if "mpi" in raw:
        out.append(mpi_row(raw["mpi"]))
    return out


def mpi_row(mpi: dict[str, Any]) -> Row:
    metric = "2 containers x 2 ranks (MPI): last start -> all ranks started"
    peer = "mpirun over ssh (horovodrun's launch, no Horovod)"
    if "error" in mpi:
        return Row("rendezvous", metric, None, "s", peer, None,
                   note=f"not measured: {mpi['error'].splitlines()[0]}")
    ours, note = summary(mpi["tfbuild"], "script_s")
    theirs, peer_note = summary(mpi["mpirun+ssh"], "script_s")
    return Row("rendezvous", metric, ours, "s", peer, theirs,
               note="; ".join(filter(None, (note, peer_note, MPI_NOTE))),
               load=at_load(mpi["tfbuild"] + mpi["mpirun+ssh"]))


MPI_NOTE = ("horovodrun itself not run: Horovod 0.28.1 compiles only against TensorFlow "
            "2.15-2.18 (compat.yaml), not the bench's 2.21; horovodrun launches through this "
            "same mpirun over ssh")


def summary(results: list[dict[str, Any]], key: str) -> tuple[float | None, str]:
    """Median of `key` over the runs that worked, and a note about those that failed."""
    good = [r[key] for r in results if key in r]
    failed = [r["error"] for r in results if "error" in r]
    note = ""
    if failed:
        first = failed[0].splitlines()[0]
        note = f"{len(failed)} of {len(results)} runs failed ({first})"
    return (median(good) if good else None), note


def at_load(results: list[dict[str, Any]]) -> float:
    return median(r["load"] for r in results) if results else load()


def _no_peer(raw: dict[str, Any], where: str) -> str:
    if where == "containers":
        return "not run: " + (raw.get("torch_image") or "no image")
    per = [r["private_mb_node0"] for k, v in raw["processes"].items()
           if k.startswith("torchrun/") for r in v if "error" not in r]
    mb = f" at ~{median(per):.0f} MB private per torchrun agent" if per else ""
    return f"not run above {raw['torch_max']} processes: memory{mb}"
