"""Data inputs fetched by the agent from real stores: moto (S3), Azurite (Azure Blob) and
a folder (file://). The agent runs as a real process with a baked job.json; the script
it starts reads the data it was given. Measurements are printed, never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sync_servers import StoreTarget

from tfbuild_agent.sync.store import open_store

pytestmark = [pytest.mark.services, pytest.mark.timeout(180)]

SCRIPT = """\
import hashlib, os, pathlib, sys
d = pathlib.Path(sys.argv[2])
files = sorted(p.relative_to(d).as_posix() for p in d.rglob('*') if p.is_file())
digest = hashlib.sha256(b''.join((d / f).read_bytes() for f in files)).hexdigest()
print('folder', files, digest)
one = pathlib.Path(os.environ['TFBUILD_INPUT_VOCAB'])
print('vocab', one.name, one.read_text())
"""

# The agent reads /etc/tfbuild/job.json in an image; here the job.json of the work folder.
AGENT = [sys.executable, "-c",
         "import sys, pathlib; import tfbuild_agent.jobspec as j; "
         "j.read_baked_job.__defaults__ = (pathlib.Path('job.json'),); "
         "from tfbuild_agent.cli import main; sys.exit(main(['run']))"]


def put(target: StoreTarget, key: str, data: bytes) -> None:
    open_store(target.uri, target.reader_env).put_bytes(data, key)


def make_data(target: StoreTarget) -> tuple[str, dict[str, bytes]]:
    """A folder of files (one of 3 MB) and a single file in the store; their URIs' stem."""
    stem = f"in-{uuid.uuid4().hex[:8]}"
    files = {"a.csv": b"x,y\n1,2\n", "nested/b.bin": os.urandom(3 * 2**20),
             "nested/deeper/c.txt": b"c"}
    for rel, data in files.items():
        put(target, f"{stem}/train/{rel}", data)
    put(target, f"{stem}/vocab.txt", b"hello vocab")
    return stem, files


def job(target: StoreTarget, stem: str, folder: str = "train") -> dict:
    return {
        "entry_script": "read.py",
        "script_params": ["--data", "${tfbuild.input.data}"],
        "inputs": [
            {"name": "data", "uri": f"{target.uri}/{stem}/{folder}", "mode": "download",
             "arg": True},
            {"name": "vocab", "uri": f"{target.uri}/{stem}/vocab.txt", "mode": "mount",
             "arg": False},
        ],
    }


def run_agent(tmp_path: Path, target: StoreTarget, spec: dict, run_id: str
              ) -> tuple[subprocess.CompletedProcess, float]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / "read.py").write_text(SCRIPT)
    (work / "job.json").write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TFBUILD_", "TF_CONFIG",
                                                                     "AWS_", "AZURE_"))}
    env.update(target.env)
    env.update({"TFBUILD_RUN_ID": run_id, "TFBUILD_UPLOAD_TO": f"file://{tmp_path / 'runs'}",
                "TFBUILD_INPUT_CACHE": str(tmp_path / "cache")})
    started = time.monotonic()
    done = subprocess.run(AGENT, cwd=work, env=env, capture_output=True, text=True, timeout=150)
    return done, time.monotonic() - started


def test_the_script_reads_its_inputs_and_a_rerun_uses_the_cache(
    store_target: StoreTarget, tmp_path: Path
) -> None:
    stem, files = make_data(store_target)
    import hashlib

    want = hashlib.sha256(b"".join(files[k] for k in sorted(files))).hexdigest()
    first, t1 = run_agent(tmp_path, store_target, job(store_target, stem), "run-1")
    assert first.returncode == 0, first.stderr
    assert f"folder {sorted(files)} {want}" in first.stdout
    assert "vocab vocab.txt hello vocab" in first.stdout
    assert f"input data: fetching {store_target.uri}/{stem}/train (3 file(s)" in first.stderr
    assert "sizes verified" in first.stderr
    if store_target.name != "file":  # a remote mount is downloaded first, and says so
        assert "input vocab: mount of" in first.stderr and "downloading it first" in first.stderr
    else:
        assert "input vocab: file://" in first.stderr and "mounted in place" in first.stderr

    markers = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("*.json")}
    assert len(markers) == (2 if store_target.name != "file" else 1)  # vocab too, if remote
    second, t2 = run_agent(tmp_path, store_target, job(store_target, stem), "run-2")
    assert second.returncode == 0, second.stderr
    assert f"folder {sorted(files)} {want}" in second.stdout
    assert "input data: " in second.stderr and "is in the node cache" in second.stderr
    assert "fetching" not in second.stderr
    # Nothing was written to the cache: the same entries, untouched.
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("*.json")} == markers
    print(f"\n{store_target.name}: first run {t1:.2f}s (fetch), rerun {t2:.2f}s (cache)")

    # A changed object is a new cache key: fetched again, and the script sees the change.
    put(store_target, f"{stem}/train/a.csv", b"x,y\n3,4\n")
    third, _ = run_agent(tmp_path, store_target, job(store_target, stem), "run-3")
    assert third.returncode == 0, third.stderr
    assert "input data: fetching" in third.stderr


def test_a_missing_input_fails_fast_naming_the_uri_and_the_script_never_starts(
    store_target: StoreTarget, tmp_path: Path
) -> None:
    stem, _ = make_data(store_target)
    done, took = run_agent(tmp_path, store_target, job(store_target, stem, "nope"), "run-missing")
    missing = f"{store_target.uri}/{stem}/nope"
    assert done.returncode != 0
    assert f"input data: {missing} does not exist" in done.stderr
    assert "folder" not in done.stdout  # the script did not run
    record = json.loads((tmp_path / "runs" / "run-missing" / "run.json").read_text())
    assert record["status"] == "Failed" and missing in record["reason"]
    assert record["start_time"] is None
    assert took < 30, f"failing took {took:.1f}s"
    print(f"\n{store_target.name}: missing input reported in {took:.2f}s")
