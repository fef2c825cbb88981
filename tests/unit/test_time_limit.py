"""max_run_duration_seconds: the real agent on this host (no container) stops a script
that never ends, with the usual grace, flushes its outputs and records the run Canceled
with the reason "time limit", on every node of the job."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tfbuild.image.build import job_for
from tfbuild.spec import spec_from_mapping
from tfbuild_agent.contract import TIME_LIMIT_EXIT_CODE
from tfbuild_agent.errors import ConfigError
from tfbuild_agent.jobspec import load_job

LIMIT, GRACE = 3, 2
FLUSH_AND_START = 10
"""Agent start-up, Python start of the script, and the final upload to a local store."""

FOREVER = (
    "import pathlib, signal, sys, time\n"
    "pathlib.Path('outputs').mkdir(exist_ok=True)\n"
    "pathlib.Path('outputs', 'partial.txt').write_text('written before the limit')\n"
    "if '--ignore-term' in sys.argv:\n"
    "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('started', flush=True)\n"
    "while True:\n"
    "    time.sleep(1)\n"
)


def agent_env(tmp_path: Path, run_id: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TFBUILD_", "TF_"))}
    env.update({
        "TFBUILD_ENTRY_SCRIPT": "train.py", "TFBUILD_RUN_ID": run_id,
        "TFBUILD_UPLOAD_TO": f"file://{tmp_path / 'store'}",
        "TFBUILD_MAX_RUN_DURATION_SECONDS": str(LIMIT), "TFBUILD_GRACE_SECONDS": str(GRACE),
        **extra,
    })
    return env


def workdir(tmp_path: Path, name: str) -> Path:
    work = tmp_path / name
    work.mkdir()
    (work / "train.py").write_text(FOREVER)
    return work


@pytest.mark.parametrize("args", [[], ["--ignore-term"]], ids=["stops-on-term", "ignores-term"])
def test_a_script_that_sleeps_forever_is_stopped_and_recorded_canceled(tmp_path, args):
    work = workdir(tmp_path, "work")
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "tfbuild_agent", "run", "--", *args], cwd=work,
        env=agent_env(tmp_path, "run-limit"), capture_output=True, text=True,
        timeout=LIMIT + GRACE + FLUSH_AND_START + 30,
    )
    took = time.monotonic() - start
    assert result.returncode == TIME_LIMIT_EXIT_CODE, result.stderr
    assert took < LIMIT + GRACE + FLUSH_AND_START, (took, result.stderr)
    if args:  # it ignored SIGTERM: killed after the grace, not earlier
        assert took >= LIMIT + GRACE
        assert "still running after the grace period: killing it" in result.stderr
    assert "time limit: the job ran for max_run_duration_seconds (3 s)" in result.stderr
    run = tmp_path / "store" / "run-limit"
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "Canceled", record
    assert record["reason"].startswith("time limit"), record
    assert (run / "outputs" / "partial.txt").read_text() == "written before the limit"


def test_every_node_stops_at_the_limit(tmp_path):
    """Two agents (explicit discovery, a real control channel): both end Canceled with
    the time limit as the reason, neither Failed because the other stopped."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agents, works = [], []
    for rank in range(2):
        work = workdir(tmp_path, f"node{rank}")
        env = agent_env(
            tmp_path, "run-limit2",
            TFBUILD_HOSTS="127.0.0.1,127.0.0.1", TFBUILD_NODE_RANK=str(rank), TFBUILD_NODES="2",
            TFBUILD_BACKEND="multiworker", TFBUILD_NODE_ID=f"n{rank}",
            TFBUILD_JOB_TOKEN="limit-token", TFBUILD_CONTROL_PORT=str(port),
            TFBUILD_PORT=str(port + 10),
        )
        agents.append(subprocess.Popen(
            [sys.executable, "-m", "tfbuild_agent", "run"], cwd=work, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True))
        works.append(work)
    try:
        codes = [a.wait(timeout=LIMIT + GRACE + FLUSH_AND_START + 30) for a in agents]
        stderr = [a.stderr.read() for a in agents]
        assert codes == [TIME_LIMIT_EXIT_CODE] * 2, stderr
        for rank, work in enumerate(works):
            rec = json.loads((work / "logs" / ".tfbuild" / f"run-worker-{rank}.json").read_text())
            assert rec["status"] == "Canceled", (rank, rec, stderr[rank])
            assert rec["reason"].startswith("time limit"), (rank, rec)
    finally:
        for agent in agents:
            if agent.poll() is None:
                os.killpg(agent.pid, signal.SIGKILL)
            agent.wait()


def test_the_limit_is_baked_into_job_json_and_can_be_overridden(tmp_path):
    (tmp_path / "train.py").write_text("")
    spec = spec_from_mapping({"entry_script": "train.py", "max_run_duration_seconds": 20},
                             tmp_path)
    baked = json.loads(job_for(spec).to_json())
    assert baked["max_run_duration_seconds"] == 20
    assert load_job(baked, {}).max_run_duration_seconds == 20
    env = {"TFBUILD_MAX_RUN_DURATION_SECONDS": "5"}
    assert load_job(baked, env).max_run_duration_seconds == 5
    assert load_job({}, {}).max_run_duration_seconds is None
    with pytest.raises(ConfigError, match="at least 1"):
        load_job({}, {"TFBUILD_MAX_RUN_DURATION_SECONDS": "0"})
