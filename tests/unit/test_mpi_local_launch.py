"""The mpi backend end to end on this machine's Open MPI, without containers: two real
agents (node 0 on `localhost`, node 1 on `127.0.0.2`, which Open MPI takes for another
host) run mpirun, launch through tfbuild's channel, and end together. Seconds, not
minutes; the container versions are in tests/e2e/test_mpi_jobs.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rendezvous_helpers import free_port

pytestmark = [
    pytest.mark.skipif(shutil.which("mpirun") is None,
                       reason="Open MPI's mpirun is not installed on this machine"),
    pytest.mark.timeout(120),
]

RANK_SCRIPT = """\
import json, os, sys, time
keys = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "NODE_RANK", "MASTER_ADDR",
        "TFBUILD_TASK", "TFBUILD_JOB_TOKEN", "OMPI_COMM_WORLD_RANK")
print("RANKINFO " + json.dumps({k: os.environ.get(k) for k in keys} | {"argv": sys.argv[1:]}))
if "--fail" in sys.argv:
    if os.environ["RANK"] == "3":
        time.sleep(0.5)
        raise RuntimeError("rank 3 fails on purpose")
    time.sleep(60)
if "--wait" in sys.argv:
    time.sleep(60)
"""


def run_job(
    tmp_path: Path, args: list[str], tokens: tuple[str, str] = ("tok", "tok"),
    node1_env: dict[str, str] | None = None, sigterm_node: int | None = None,
) -> list[tuple[int, str, float]]:
    """Start node 1 then node 0; (exit code, output, seconds) of each, by node. With
    `sigterm_node`, that node's agent gets SIGTERM once all 4 ranks are running."""
    script = tmp_path / "job.py"
    script.write_text(RANK_SCRIPT)
    base = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "TFBUILD_BACKEND": "mpi", "TFBUILD_NODES": "2", "TFBUILD_PROCS_PER_NODE": "2",
        "TFBUILD_HOSTS": "localhost,127.0.0.2", "TFBUILD_ENTRY_SCRIPT": str(script),
        "TFBUILD_MPI_LAUNCH_PORT": str(free_port()), "TFBUILD_DISCOVERY_TIMEOUT": "20",
        "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    }
    procs = []
    for node in (1, 0):
        workdir = tmp_path / f"node{node}"
        workdir.mkdir()
        env = {**base, "TFBUILD_NODE_RANK": str(node), "TFBUILD_JOB_TOKEN": tokens[node],
               **((node1_env or {}) if node == 1 else {})}
        procs.append((node, time.monotonic(), subprocess.Popen(
            [sys.executable, "-m", "tfbuild_agent", "run", "--", *args], cwd=workdir, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
        if node == 1:
            time.sleep(0.5)
    if sigterm_node is not None:
        log = tmp_path / "node0" / "logs" / "mpirun.log"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
            not log.exists() or log.read_text().count("RANKINFO") < 4
        ):
            time.sleep(0.2)
        next(p for n, _, p in procs if n == sigterm_node).send_signal(signal.SIGTERM)
    results: dict[int, tuple[int, str, float]] = {}
    try:
        for node, started, proc in procs:
            out, _ = proc.communicate(timeout=90)
            results[node] = (proc.returncode, out, time.monotonic() - started)
    finally:
        for _, _, proc in procs:
            proc.kill()
    return [results[0], results[1]]


def rank_infos(output: str) -> dict[int, dict]:
    infos = {}
    for line in output.splitlines():
        if "RANKINFO " in line:
            info = json.loads(line.split("RANKINFO ", 1)[1])
            infos[int(info["RANK"])] = info
    return infos


def test_two_nodes_run_every_rank_with_its_identity(tmp_path: Path) -> None:
    (code0, out0, _), (code1, out1, _) = run_job(tmp_path, ["--lr", "0.1"])
    assert (code0, code1) == (0, 0), out0 + out1
    infos = rank_infos(out0)  # every rank's output reaches node 0's log, tagged
    assert sorted(infos) == [0, 1, 2, 3], out0
    for rank, info in infos.items():
        assert info["OMPI_COMM_WORLD_RANK"] == str(rank)
        assert info["LOCAL_RANK"] == str(rank % 2)
        assert info["NODE_RANK"] == str(rank // 2)
        assert (info["WORLD_SIZE"], info["LOCAL_WORLD_SIZE"]) == ("4", "2")
        assert (info["MASTER_ADDR"], info["TFBUILD_TASK"]) == ("localhost", f"rank-{rank}")
        assert info["TFBUILD_JOB_TOKEN"] is None
        assert info["argv"] == ["--lr", "0.1"]
    assert "[1,3]<stdout>:RANKINFO" in out0
    assert "starts  orted" in out1 or "starts orted" in out1  # launched through the channel
    assert "all 4 rank(s) completed (reported by localhost)" in out1
    assert (tmp_path / "node0" / "logs" / "mpirun.log").read_text().count("RANKINFO") == 4


def test_a_failing_rank_aborts_the_job_on_every_node(tmp_path: Path) -> None:
    (code0, out0, t0), (code1, out1, t1) = run_job(tmp_path, ["--fail"])
    verdict = "rank 3 (on 127.0.0.2) exited with code 1; mpirun aborted the job"
    assert code0 != 0 and code1 != 0, out0 + out1
    assert verdict in out0 and verdict in out1, out0 + out1
    assert "RuntimeError: rank 3 fails on purpose" in out0
    assert max(t0, t1) < 30, (t0, t1)  # the other ranks would sleep 60 s
    record = json.loads((tmp_path / "node0" / "logs" / ".tfbuild" / "run-mpirun.json").read_text())
    assert record["status"] == "Failed" and record["exit_code"] == code0


def test_a_node_with_another_token_refuses_the_launch(tmp_path: Path) -> None:
    (code0, out0, _), (code1, out1, _) = run_job(
        tmp_path, [], tokens=("tok", "another"),
        node1_env={"TFBUILD_MPI_LAUNCH_TIMEOUT": "5"})
    assert code0 != 0 and "refused the MPI ping" in out0 and "wrong job token" in out0, out0
    assert "refused ping from 127.0.0.1:" in out1 and "wrong job token" in out1, out1
    assert "refused result from" in out1  # node 0's verdict is not believed either
    assert code1 != 0 and "did not start this node's ranks within 5 s" in out1, out1
    assert "launch attempt(s) were refused" in out1
    assert "RANKINFO" not in out0 + out1


@pytest.mark.parametrize("node", [0, 1])
def test_sigterm_to_any_node_ends_the_job_everywhere(tmp_path: Path, node: int) -> None:
    (code0, out0, t0), (code1, out1, t1) = run_job(tmp_path, ["--wait"], sigterm_node=node)
    assert (code0 if node == 0 else code1) == 143, out0 + out1  # canceled: 128 + SIGTERM
    assert code0 != 0 and code1 != 0, out0 + out1
    assert max(t0, t1) < 45, (t0, t1)  # the ranks would sleep 60 s
    if node == 0:
        assert "job canceled: stopped by SIGTERM on the launcher node localhost" in out1, out1
    else:
        assert "mpirun lost a node's daemon" in out0, out0


def test_the_time_limit_stops_mpirun_and_every_node_records_canceled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """max_run_duration_seconds on the mpi backend: node 0's agent stops mpirun (which
    stops the ranks on both nodes) and tells node 1; both records say Canceled, time limit."""
    # run_job copies os.environ into both agents' environments
    monkeypatch.setenv("TFBUILD_MAX_RUN_DURATION_SECONDS", "4")
    monkeypatch.setenv("TFBUILD_GRACE_SECONDS", "3")
    (code0, out0, t0), (code1, out1, t1) = run_job(tmp_path, ["--wait"])
    assert (code0, code1) == (124, 124), out0 + out1  # as timeout(1)
    assert max(t0, t1) < 4 + 3 + 20, (t0, t1, out0, out1)  # the ranks would sleep 60 s
    assert "max_run_duration_seconds (4 s) reached: stopping mpirun" in out0, out0
    for node, task in ((0, "mpirun"), (1, "mpi-node-1")):
        path = tmp_path / f"node{node}" / "logs" / ".tfbuild" / f"run-{task}.json"
        record = json.loads(path.read_text())
        assert record["status"] == "Canceled", (node, record, out0, out1)
        assert record["reason"].startswith("time limit"), record


def test_export_onnx_runs_on_the_launcher_node_after_mpirun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ranks save no model: node 0 records the failed export and, with fail_job,
    fails; node 1 was told the job completed before the export started."""
    monkeypatch.setenv("TFBUILD_EXPORT_ONNX", '{"fail_job": true}')
    (code0, out0, _), (code1, out1, _) = run_job(tmp_path, [])
    assert (code0, code1) == (1, 0), out0 + out1
    assert "onnx: export failed: no model in ./outputs" in out0, out0
    record = json.loads((tmp_path / "node0" / "logs" / ".tfbuild" / "run-mpirun.json").read_text())
    assert record["status"] == "Failed", record
    assert record["reason"].startswith("ONNX export failed: no model"), record
    assert record["onnx"]["status"] == "failed"
