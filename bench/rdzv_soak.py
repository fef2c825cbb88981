"""Control-plane soak (issue 11): many jobs of N tiny containers whose tasks all end on the
same wall-clock second, with explicit and with rendezvous discovery.

Per job it records: every exit code (a non-zero one in a job that should succeed is a
false failure), formation time (last container started -> last "job formed" log line),
job-end time (the common end second -> last container finished) and, once per size, the
memory of a few running containers (agent + the tiny script; `docker stats`).

    .venv/bin/python bench/rdzv_soak.py --sizes 8,32,64,128 --jobs 20
    .venv/bin/python bench/rdzv_soak.py --sizes 32 --jobs 3 --agent /work/main/entrypoint

`--agent` builds the image from another checkout's entrypoint/ (a before/after comparison).
Results go to bench/results/rdzv_soak-<time>.json and a summary table to stdout.
The image and Cluster helpers are tests/docker's (tinyagent.py, cluster.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

import docker

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "docker"))
from cluster import Cluster  # noqa: E402
from tinyagent import TINY_IMAGE, build_tiny_image  # noqa: E402

TOKEN = "soak-token"
FIXED_START, PER_CONTAINER_START = 8.0, 0.5
"""Seconds allowed to create and start the containers before the common end second."""


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


def _formed_at(container) -> float | None:
    for line in container.logs(timestamps=True).decode(errors="replace").splitlines():
        if "job formed after" in line and "this node" in line:
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


def run_job(client, image: str, n: int, mode: str, measure_memory: bool) -> dict:
    cluster = Cluster(client, image, prefix="tfbsoak")
    try:
        end_at = int(time.time() + FIXED_START + n * PER_CONTAINER_START) + 1
        cluster.start(n, _env(cluster, n, mode), command=["--end-at", str(end_at)])
        memory = []
        if measure_memory:
            time.sleep(max(0.0, end_at - time.time() - 3))
            memory = _memory_mb(cluster.containers)
        codes = cluster.wait_all(timeout=end_at - time.time() + 180)
        for c in cluster.containers:
            c.reload()
        started = max(_stamp(c.attrs["State"]["StartedAt"]) for c in cluster.containers)
        finished = max(_stamp(c.attrs["State"]["FinishedAt"]) for c in cluster.containers)
        formed = [_formed_at(c) for c in cluster.containers]
        failed = [i for i, code in enumerate(codes) if code != 0]
        return {
            "n": n, "mode": mode, "codes_nonzero": len(failed),
            "first_failure": cluster.logs(failed[0])[-600:] if failed else "",
            "formation_s": (max(formed) - started) if all(formed) else None,
            "job_end_s": finished - end_at,
            "memory_mb": memory,
        }
    finally:
        cluster.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="8,32")
    p.add_argument("--modes", default="explicit,rendezvous")
    p.add_argument("--jobs", type=int, default=20, help="jobs per size and mode")
    p.add_argument("--agent", type=Path, default=None, help="another checkout's entrypoint/")
    args = p.parse_args()
    client = docker.from_env()
    tag = TINY_IMAGE if args.agent is None else "tfbuild-scale/tiny-agent:other"
    image = build_tiny_image(client, args.agent, tag)
    results = []
    for n in (int(x) for x in args.sizes.split(",")):
        for mode in args.modes.split(","):
            for j in range(args.jobs):
                r = run_job(client, image, n, mode, measure_memory=(j == 0))
                results.append(r)
                print(json.dumps({k: v for k, v in r.items() if k != "first_failure"}),
                      flush=True)
                if r["first_failure"]:
                    print("  first failure: " + r["first_failure"].replace("\n", "\n  "))
    out = HERE / "results" / f"rdzv_soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"agent": str(args.agent or "this checkout"),
                               "results": results}, indent=1))
    print("\n| containers | discovery | jobs | false failures | formation median (max) "
          "| job end median (max) | memory per container |\n|---|---|---|---|---|---|---|")
    for n in sorted({r["n"] for r in results}):
        for mode in args.modes.split(","):
            rs = [r for r in results if r["n"] == n and r["mode"] == mode]
            if not rs:
                continue
            form = [r["formation_s"] for r in rs if r["formation_s"] is not None]
            end = [r["job_end_s"] for r in rs]
            mem = [m for r in rs for m in r["memory_mb"]]
            bad = sum(1 for r in rs if r["codes_nonzero"])
            print(f"| {n} | {mode} | {len(rs)} | {bad} | "
                  f"{statistics.median(form):.2f} s ({max(form):.2f} s) | "
                  f"{statistics.median(end):.2f} s ({max(end):.2f} s) | "
                  f"{statistics.median(mem) if mem else 0:.0f} MB |")
    print(f"\nraw results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
