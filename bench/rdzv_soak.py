"""Control-plane soak (issue 11): many jobs of N tiny containers whose tasks all end on the
same wall-clock second (set once every task runs), with explicit and rendezvous discovery.

Per job it records: every exit code (a non-zero one in a job that should succeed is a
false failure), formation time (last container started -> last "job formed" log line),
job-end time (the common end second -> last container finished) and, once per size, the
memory of a few running containers (agent + the tiny script; `docker stats`).

    .venv/bin/python bench/rdzv_soak.py --sizes 8,32,64,128 --jobs 20
    .venv/bin/python bench/rdzv_soak.py --sizes 32 --jobs 3 --agent /work/main/entrypoint

`--agent` builds the image from another checkout's entrypoint/ (a before/after comparison).
Results go to bench/results/rdzv_soak-<time>.json and a summary table to stdout;
`--table RAW...` prints the table of several runs' raw files together.
The image and Cluster helpers are tests/docker's (tinyagent.py, cluster.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import docker

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "docker"))
from cluster import Cluster  # noqa: E402
from tinyagent import TINY_IMAGE, build_tiny_image  # noqa: E402

TOKEN = "soak-token"
PER_CONTAINER_START = 2.0
"""Seconds per container allowed for creating and starting it (a busy 2-core machine)."""
END_IN = 3
"""Once every task runs, they all end this many seconds later, on the same second."""


def _env(cluster: Cluster, n: int, mode: str):
    common = {"TFBUILD_NODES": str(n), "TFBUILD_JOB_TOKEN": TOKEN}
    if mode == "explicit":
        hosts = ",".join(cluster.host(i) for i in range(n))
        return lambda i: {**common, "TFBUILD_HOSTS": hosts, "TFBUILD_NODE_RANK": str(i)}
    return lambda i: {**common, "TFBUILD_RENDEZVOUS": f"{cluster.host(0)}:29400"}


def _stamp(text: str) -> float:
    # Docker's RFC 3339 with nanoseconds: cut to microseconds for fromisoformat.
    head, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()


def _first(container, *needles: str) -> float | None:
    """Timestamp of the first log line holding every needle."""
    for line in container.logs(timestamps=True).decode(errors="replace").splitlines():
        if all(n in line for n in needles):
            return _stamp(line.split(" ", 1)[0])
    return None


def _memory_mb(containers, count: int = 3) -> list[float]:
    out = []
    for c in containers[:count]:
        stats = c.stats(stream=False)
        usage = stats.get("memory_stats", {}).get("usage")
        cache = stats.get("memory_stats", {}).get("stats", {}).get("cache", 0)
        if usage:
            out.append(round((usage - cache) / 2**20, 1))
    return out


def _all_running(cluster: Cluster, n: int) -> None:
    deadline = time.monotonic() + 60 + n * PER_CONTAINER_START
    while sum("TINY " in cluster.logs(i) for i in range(n)) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {n}-container job did not start its tasks")
        time.sleep(1.0)


def _agent_rss_mb(containers, count: int = 3) -> list[float]:
    """VmRSS of the agent itself (PID 1 in each container), without the script."""
    out = []
    for c in containers[:count]:
        code, text = c.exec_run(["cat", "/proc/1/status"])
        for line in text.decode(errors="replace").splitlines():
            if code == 0 and line.startswith("VmRSS:"):
                out.append(round(int(line.split()[1]) / 1024, 1))
    return out


def run_job(client, image: str, n: int, mode: str, measure_memory: bool, scratch: Path) -> dict:
    cluster = Cluster(client, image, prefix="tfbsoak")
    shared = Path(tempfile.mkdtemp(prefix="tfbsoak-", dir=scratch))
    try:
        cluster.start(n, _env(cluster, n, mode), command=["--end-file", "/shared/end"],
                      volumes={str(shared): {"bind": "/shared", "mode": "ro"}})
        _all_running(cluster, n)
        memory = _memory_mb(cluster.containers) if measure_memory else []
        agent_rss = _agent_rss_mb(cluster.containers) if measure_memory else []
        end_at = int(time.time()) + END_IN
        (shared / "end.tmp").write_text(str(end_at))
        (shared / "end.tmp").rename(shared / "end")
        codes = cluster.wait_all(timeout=180)
        for c in cluster.containers:
            c.reload()
        started = max(_stamp(c.attrs["State"]["StartedAt"]) for c in cluster.containers)
        finished = max(_stamp(c.attrs["State"]["FinishedAt"]) for c in cluster.containers)
        formed = [_first(c, "job formed after", "this node") for c in cluster.containers]
        # Job end: from a container's task ending to its agent exiting (reports, goodbye,
        # and on the serving node: waiting for every member), the worst container.
        exits = [_stamp(c.attrs["State"]["FinishedAt"]) - done
                 for c in cluster.containers if (done := _first(c, "TINY done"))]
        failed = [i for i, code in enumerate(codes) if code != 0]
        return {
            "n": n, "mode": mode, "codes_nonzero": len(failed),
            "first_failure": cluster.logs(failed[0])[-600:] if failed else "",
            "formation_s": (max(formed) - started) if all(formed) else None,
            "job_end_s": max(exits) if exits else None,
            "last_start_after_end_s": started - end_at,
            "last_exit_after_end_s": finished - end_at,
            "memory_mb": memory,
            "agent_rss_mb": agent_rss,
        }
    finally:
        cluster.close()
        shutil.rmtree(shared, ignore_errors=True)


def loss_job(client, image: str, n: int, how: str, victim: int = 5) -> dict:
    """kill -9 or docker pause one member of a running job: seconds until every survivor
    exited (non-zero), and whether the serving node's log names the victim."""
    cluster = Cluster(client, image, prefix="tfbsoak")
    try:
        cluster.start(n, _env(cluster, n, "rendezvous"), command=["--wait", "600"])
        _all_running(cluster, n)
        victim_c = cluster.containers[victim]
        victim_c.kill(signal="SIGKILL") if how == "kill -9" else victim_c.pause()
        struck = time.monotonic()
        codes = [int(c.wait(timeout=120)["StatusCode"])
                 for i, c in enumerate(cluster.containers) if i != victim]
        elapsed = time.monotonic() - struck
        if how != "kill -9":
            victim_c.unpause()
        return {"n": n, "how": how, "detected_and_ended_s": round(elapsed, 2),
                "all_survivors_failed": all(code != 0 for code in codes),
                "names_the_node": f"node {cluster.host(victim)}" in cluster.logs(0)}
    finally:
        cluster.close()


def load_results(paths: list[Path]) -> list[dict]:
    """Job results from raw files: a run's .json, or the .jsonl it writes as it goes."""
    out: list[dict] = []
    for path in paths:
        if path.suffix == ".jsonl":
            out += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        else:
            out += json.loads(path.read_text())["results"]
    return out


def _mb(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} MB" if values else "-"


def print_table(results: list[dict]) -> None:
    print("\n| containers | discovery | jobs | false failures | formation median (max) "
          "| job end median (max) | memory per container | agent RSS |\n"
          "|---|---|---|---|---|---|---|---|")
    for n in sorted({r["n"] for r in results}):
        for mode in ("explicit", "rendezvous"):
            rs = [r for r in results if r["n"] == n and r["mode"] == mode]
            if not rs:
                continue
            form = [r["formation_s"] for r in rs if r["formation_s"] is not None]
            end = [r["job_end_s"] for r in rs if r["job_end_s"] is not None]
            mem = [m for r in rs for m in r["memory_mb"]]
            rss = [m for r in rs for m in r.get("agent_rss_mb", [])]
            bad = sum(1 for r in rs if r["codes_nonzero"])
            print(f"| {n} | {mode} | {len(rs)} | {bad} | "
                  f"{statistics.median(form):.2f} s ({max(form):.2f} s) | "
                  f"{statistics.median(end):.2f} s ({max(end):.2f} s) | "
                  f"{_mb(mem)} | {_mb(rss)} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="8,32")
    p.add_argument("--modes", default="explicit,rendezvous")
    p.add_argument("--jobs", type=int, default=20, help="jobs per size and mode")
    p.add_argument("--agent", type=Path, default=None, help="another checkout's entrypoint/")
    p.add_argument("--loss", type=int, default=0,
                   help="also kill -9 / docker pause one container of a 32-node job this often")
    p.add_argument("--table", type=Path, nargs="+", metavar="RAW",
                   help="only print the table of earlier runs' raw files (.json or .jsonl)")
    args = p.parse_args()
    if args.table:
        print_table(load_results(args.table))
        return 0
    client = docker.from_env()
    tag = TINY_IMAGE if args.agent is None else "tfbuild-scale/tiny-agent:other"
    image = build_tiny_image(client, args.agent, tag)
    results = []
    scratch = Path(tempfile.mkdtemp(prefix="tfbsoak-"))
    progress = HERE / "results" / f"rdzv_soak-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    for n in (int(x) for x in args.sizes.split(",")):
        for mode in args.modes.split(","):
            for j in range(args.jobs):
                r = run_job(client, image, n, mode, measure_memory=(j == 0), scratch=scratch)
                results.append(r)
                with progress.open("a") as f:  # kept even if a later job breaks the run
                    f.write(json.dumps(r) + "\n")
                print(json.dumps({k: v for k, v in r.items() if k != "first_failure"}),
                      flush=True)
                if r["first_failure"]:
                    print("  first failure: " + r["first_failure"].replace("\n", "\n  "))
    losses = []
    for _ in range(args.loss):
        for how in ("kill -9", "docker pause"):
            losses.append(loss_job(client, image, 32, how))
            print(json.dumps(losses[-1]), flush=True)
    out = HERE / "results" / f"rdzv_soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"agent": str(args.agent or "this checkout"),
                               "results": results, "losses": losses}, indent=1))
    print_table(results)
    print(f"\nraw results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
