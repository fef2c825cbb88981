"""Run tfbuild's benchmarks side by side with their peers; print a table, write JSON.

    python bench/run.py [--only build,agent,rendezvous,upload] [--quick]
    python bench/run.py --table        # print the table of bench/results/latest.json
    python bench/run.py --clean        # remove the helper images the bench keeps

Sections that ran replace their entries in bench/results/latest.json; the others stay.
See bench/README.md for what each section measures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import docker.errors
from common import (
    BENCH,
    KEPT_IMAGES,
    REPO,
    ImageTracker,
    Row,
    engine,
    load,
    table,
    versions,
)

SECTIONS = ("build", "agent", "rendezvous", "upload")
RESULTS = BENCH / "results" / "latest.json"


def plan(quick: bool) -> dict[str, dict[str, Any]]:
    """How much of each section to run."""
    return {
        "build": {"reps": 1 if quick else 2},
        "agent": {"reps": 5 if quick else 10},
        "rendezvous": {"container_sizes": [2, 8, 32],
                       "process_sizes": [2, 8, 32, 512] if quick else [2, 8, 32, 128, 512],
                       "reps": 1 if quick else 3},
        "upload": {"small_count": 100 if quick else 300, "big_bytes": 2**30,
                   "s3_big_bytes": 2**28 if quick else 2**30, "reps": 1 if quick else 3},
    }


def freeze_sources(dest: Path) -> None:
    """Measure the tree as it is now, even while someone edits it: the bench process and
    everything it starts (the tfbuild CLI, agent processes, image contexts) import
    tfbuild and tfbuild_agent from this copy."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "builder", dest / "tfbuild", ignore=skip)
    shutil.copytree(REPO / "base-images", dest / "tfbuild" / "base_images", ignore=skip)
    shutil.copytree(REPO / "entrypoint", dest / "tfbuild_agent", ignore=skip)
    sys.path.insert(0, str(dest))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(dest),
                                                             os.environ.get("PYTHONPATH")]))


def run_section(name: str, params: dict[str, Any], workdir: Path, tracker: ImageTracker
                ) -> tuple[list[Row], dict[str, Any]]:
    if name == "build":
        import section_build

        return section_build.run(params["reps"], workdir, tracker)
    if name == "agent":
        import section_agent

        return section_agent.run(params["reps"], workdir, tracker)
    if name == "rendezvous":
        import section_rendezvous

        return section_rendezvous.run(params["container_sizes"], params["process_sizes"],
                                      params["reps"], workdir, tracker)
    import section_upload

    return section_upload.run(params["small_count"], params["big_bytes"],
                              params["s3_big_bytes"], params["reps"])


def clean() -> int:
    client = engine()
    for ref in KEPT_IMAGES:
        with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
            client.images.remove(ref)
            print(f"removed {ref}")
    return 0


def read_results() -> dict[str, Any]:
    with contextlib.suppress(FileNotFoundError, ValueError):
        return json.loads(RESULTS.read_text())
    return {"sections": {}}


def print_table(results: dict[str, Any], names: list[str]) -> None:
    rows = [Row(**{k: v for k, v in r.items() if k != "ratio"})
            for name in names for r in results["sections"].get(name, {}).get("rows", [])]
    print(table(rows))
    for name in names:
        error = results["sections"].get(name, {}).get("error")
        if error:
            print(f"\n{name}: FAILED: {error.strip().splitlines()[-1]}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(SECTIONS),
                   help=f"comma-separated sections ({', '.join(SECTIONS)})")
    p.add_argument("--quick", action="store_true",
                   help="fewer repetitions (one cold build per builder, smaller S3 file)")
    p.add_argument("--table", action="store_true", help="print the table of the latest results")
    p.add_argument("--clean", action="store_true", help="remove the bench's helper images")
    args = p.parse_args()
    if args.clean:
        return clean()
    if args.table:
        print_table(read_results(), list(SECTIONS))
        return 0
    names = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(names) - set(SECTIONS)
    if unknown:
        p.error(f"unknown section(s) {', '.join(sorted(unknown))}; use {', '.join(SECTIONS)}")
    client = engine()
    tracker = ImageTracker(client)
    results = read_results()
    results.update(machine={"cpus": os.cpu_count(), "memory_gb": round(
        os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
        versions=versions(client))
    params = plan(args.quick)
    try:
        with tempfile.TemporaryDirectory(prefix="tfbuild-bench-") as tmp:
            freeze_sources(Path(tmp) / "sources")
            for name in [s for s in SECTIONS if s in names]:
                print(f"== {name} (load {load()})", flush=True)
                entry: dict[str, Any] = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                               time.gmtime()),
                                         "quick": args.quick, "params": params[name],
                                         "versions": results["versions"],
                                         "load_start": os.getloadavg()}
                started = time.monotonic()
                try:
                    rows, raw = run_section(name, params[name], Path(tmp) / name, tracker)
                    entry.update(rows=[r.as_dict() for r in rows], raw=raw)
                except Exception:
                    entry["error"] = traceback.format_exc()
                    print(entry["error"], file=sys.stderr, flush=True)
                entry.update(load_end=os.getloadavg(),
                             minutes=round((time.monotonic() - started) / 60, 1))
                results["sections"][name] = entry
                RESULTS.parent.mkdir(parents=True, exist_ok=True)
                RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    finally:
        tracker.remove(keep=KEPT_IMAGES)
    print()
    print_table(results, [s for s in SECTIONS if s in names])
    print(f"\nwritten to {RESULTS.relative_to(BENCH.parent)}")
    return 1 if any("error" in results["sections"][n] for n in names) else 0


if __name__ == "__main__":
    raise SystemExit(main())
