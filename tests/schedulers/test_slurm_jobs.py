"""docs/schedulers.md's Slurm scripts, submitted with sbatch to a real one-node Slurm.

The node is `localhost`: every address the agents derive is loopback, and containers
use host networking, so three tasks of one node stand for three workers of a job.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from doc_recipes import write_script

pytestmark = pytest.mark.schedulers

AGENT = Path(sys.executable).parent / "tfbuild-agent"
PROBE = Path(__file__).parent / "projects" / "sched-probe"
JOB_TIMEOUT = 120.0  # generous: a job here takes a few seconds


def probes(text: str) -> list[dict]:
    """The probe script's reports, from a job's output (mpirun may prefix lines)."""
    return [json.loads(line.split("PROBE ", 1)[1]) for line in text.splitlines()
            if "PROBE " in line]


def wait_for_probes(slurm, workdir: Path, job_id: str, count: int, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while len(probes(slurm.output(workdir, job_id))) < count:
        state = slurm.job(job_id).get("JobState")
        if state not in ("PENDING", "RUNNING", "CONFIGURING"):
            raise AssertionError(f"job {job_id} is {state} before {count} tasks reported:\n"
                                 + slurm.output(workdir, job_id))
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} tasks did not report within {timeout:g}s:\n"
                                 + slurm.output(workdir, job_id))
        time.sleep(0.3)


def check_multiworker(found: list[dict], job_id: str, n: int) -> None:
    """n tasks with ranks 0..n-1, one shared TF_CONFIG (task index = rank), one run id."""
    assert sorted(int(p["RANK"]) for p in found) == list(range(n))
    assert {p["WORLD_SIZE"] for p in found} == {str(n)}
    assert all(p["SLURM_PROCID"] == p["RANK"] for p in found)
    configs = [json.loads(p["TF_CONFIG"]) for p in found]
    clusters = {json.dumps(c["cluster"], sort_keys=True) for c in configs}
    assert len(clusters) == 1, f"the tasks disagree on the cluster: {clusters}"
    assert configs[0]["cluster"]["worker"] == [f"localhost:{2222 + i}" for i in range(n)]
    assert all(c["task"] == {"type": "worker", "index": int(p["RANK"])}
               for c, p in zip(configs, found, strict=True))
    assert {p["TFBUILD_RUN_ID"] for p in found} == {f"slurm-{job_id}"}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The job's folder (sbatch --chdir): the probe script for venv runs, a file store."""
    shutil.copy(PROBE / "probe.py", tmp_path / "probe.py")
    (tmp_path / "store").mkdir()
    tmp_path.chmod(0o755)
    return tmp_path


def venv_env(workdir: Path, backend: str, **extra: str) -> dict[str, str]:
    """What the submitting shell exports for train.sbatch with the agent from a venv."""
    return {"AGENT": str(AGENT), "TFBUILD_BACKEND": backend, "TFBUILD_ENTRY_SCRIPT": "probe.py",
            "TFBUILD_UPLOAD_TO": f"file://{workdir / 'store'}", "TFBUILD_JOB_TOKEN": "slurm-t0k",
            **extra}


# -- docker run per task ---------------------------------------------------------------------

@pytest.mark.docker
@pytest.mark.usefixtures("slurm_containers_cleanup")
class TestDockerRunPerTask:
    """train-docker.sbatch: srun starts `docker run` of the image once per task."""

    @staticmethod
    def submit(slurm, image: str, workdir: Path, tasks: int, args: list[str]) -> str:
        store = workdir / "store"
        env = {"IMAGE": image, "DOCKER_ARGS": f"-v {store}:{store}",
               "TFBUILD_UPLOAD_TO": f"file://{store}", "TFBUILD_JOB_TOKEN": "slurm-t0k"}
        return slurm.sbatch(write_script("train-docker.sbatch", workdir), workdir,
                            [f"--ntasks={tasks}", "--overcommit"], args, env)

    def test_three_tasks_form_one_multiworker_job_and_upload(self, slurm, probe_image, workdir):
        job_id = self.submit(slurm, probe_image, workdir, 3, [])
        info = slurm.wait(job_id, JOB_TIMEOUT)
        out = slurm.output(workdir, job_id)
        assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), out
        check_multiworker(probes(out), job_id, 3)
        run = workdir / "store" / f"slurm-{job_id}"
        assert json.loads((run / "outputs" / "rank-0.json").read_text())["RANK"] == "0"
        for rank in (1, 2):  # the other tasks' files, each under its task
            assert (run / "tasks" / f"worker-{rank}" / "outputs" / f"rank-{rank}.json").exists()

    def test_scancel_reaches_every_container_and_their_files_are_uploaded(
            self, slurm, probe_image, workdir):
        job_id = self.submit(slurm, probe_image, workdir, 2, ["--seconds", "300"])
        wait_for_probes(slurm, workdir, job_id, 2)
        slurm.scancel(job_id)
        assert slurm.wait(job_id, JOB_TIMEOUT)["JobState"] == "CANCELLED"
        run = workdir / "store" / f"slurm-{job_id}"
        check_saved_on_sigterm(run, ["outputs", "tasks/worker-1/outputs"])

    def test_a_failing_task_fails_the_job_with_its_exit_code(self, slurm, probe_image, workdir):
        job_id = self.submit(slurm, probe_image, workdir, 2,
                             ["--exit-rank", "1", "--exit-code", "3"])
        info = slurm.wait(job_id, JOB_TIMEOUT)
        assert (info["JobState"], info["ExitCode"]) == ("FAILED", "3:0"), \
            slurm.output(workdir, job_id)


def check_saved_on_sigterm(run: Path, folders: list[str]) -> None:
    """Each rank's SIGTERM handler wrote term-rank-<i>.txt, and the agents uploaded it
    (the flush ends within Slurm's KillWait, else the files would be missing)."""
    wanted = [run / folder / f"term-rank-{rank}.txt" for rank, folder in enumerate(folders)]
    deadline = time.monotonic() + 45  # KillWait (30 s) and a margin for the last write
    while not all(p.exists() for p in wanted) and time.monotonic() < deadline:
        time.sleep(0.5)
    uploaded = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert all(p.exists() for p in wanted), f"uploaded: {uploaded}"
    assert wanted[0].read_text() == "SIGTERM in worker-0"


# -- the agent directly under srun (what pyxis/enroot and Apptainer amount to) ---------------

class TestAgentUnderSrun:
    """train.sbatch with the agent from a venv (AGENT=.venv/bin/tfbuild-agent)."""

    @staticmethod
    def submit(slurm, workdir: Path, options: list[str], args: list[str] = (),
               **env: str) -> str:
        return slurm.sbatch(write_script("train.sbatch", workdir), workdir, options, args, env)

    def test_three_tasks_form_one_multiworker_job(self, slurm, workdir):
        job_id = self.submit(slurm, workdir, ["--ntasks=3", "--overcommit"],
                             **venv_env(workdir, "multiworker"))
        info = slurm.wait(job_id, JOB_TIMEOUT)
        out = slurm.output(workdir, job_id)
        assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), out
        check_multiworker(probes(out), job_id, 3)
        assert (workdir / "store" / f"slurm-{job_id}" / "outputs" / "rank-0.json").exists()

    def test_tasks_without_a_run_id_share_one_derived_from_the_step(self, slurm, workdir):
        # Each agent used to make up a time+PID id, so one job's uploads split into runs.
        script = workdir / "no-run-id.sbatch"
        script.write_text("#!/bin/bash\nsrun --kill-on-bad-exit=1 \"$AGENT\" run\n")
        job_id = slurm.sbatch(script, workdir, ["--ntasks=3", "--overcommit"], [],
                              venv_env(workdir, "multiworker"))
        info = slurm.wait(job_id, JOB_TIMEOUT)
        out = slurm.output(workdir, job_id)
        assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), out
        found = probes(out)
        assert {p["TFBUILD_RUN_ID"] for p in found} == {f"slurm-{job_id}.0"}, out
        runs = sorted(p.name for p in (workdir / "store").iterdir())
        assert runs == [f"slurm-{job_id}.0"]
        assert (workdir / "store" / runs[0] / "outputs" / "rank-0.json").exists()

    def test_mpi_backend_under_srun_mpi_pmi2(self, slurm, workdir):
        plugins = subprocess.run(["srun", "--mpi=list"], env=slurm.env, capture_output=True,
                                 text=True, timeout=30)
        if "pmi2" not in plugins.stdout + plugins.stderr:
            pytest.skip("this Slurm has no pmi2 plugin; the agent's own launch covers MPI")
        job_id = self.submit(slurm, workdir, ["--ntasks=3", "--overcommit"],
                             **venv_env(workdir, "mpi", SRUN_ARGS="--mpi=pmi2"))
        info = slurm.wait(job_id, JOB_TIMEOUT)
        out = slurm.output(workdir, job_id)
        assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), out
        found = probes(out)
        assert sorted(int(p["RANK"]) for p in found) == [0, 1, 2]
        assert all(p["PMI_RANK"] == p["RANK"] and p["WORLD_SIZE"] == "3" for p in found)
        assert {p["TFBUILD_TASK"] for p in found} == {"rank-0", "rank-1", "rank-2"}
        assert "discovery: mpi found 1 node(s) [localhost]" in out

    def test_mpi_backend_launched_by_the_agent(self, slurm, workdir):
        if shutil.which("mpirun") is None:
            pytest.skip("Open MPI is not installed (apt-get install openmpi-bin)")
        job_id = self.submit(
            slurm, workdir, ["--ntasks=1", "--cpus-per-task=1", "--overcommit"],
            **venv_env(workdir, "mpi", SRUN_ARGS="--ntasks-per-node=1",
                       TFBUILD_PROCS_PER_NODE="2"))
        info = slurm.wait(job_id, JOB_TIMEOUT)
        out = slurm.output(workdir, job_id)
        assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), out
        found = probes(out)
        assert sorted(int(p["RANK"]) for p in found) == [0, 1]
        assert all(p["OMPI_COMM_WORLD_RANK"] == p["RANK"] for p in found)

    def test_scancel_runs_the_handler_and_uploads(self, slurm, workdir):
        job_id = self.submit(slurm, workdir, ["--ntasks=2", "--overcommit"],
                             ["--seconds", "300"], **venv_env(workdir, "multiworker"))
        wait_for_probes(slurm, workdir, job_id, 2)
        slurm.scancel(job_id)
        assert slurm.wait(job_id, JOB_TIMEOUT)["JobState"] == "CANCELLED"
        # Both tasks share the job's folder: rank 0's agent uploads all of ./outputs.
        check_saved_on_sigterm(workdir / "store" / f"slurm-{job_id}", ["outputs", "outputs"])

    @pytest.mark.parametrize("code", [0, 5])
    def test_the_job_exit_code_is_the_scripts(self, slurm, workdir, code):
        job_id = self.submit(slurm, workdir, ["--ntasks=2", "--overcommit"],
                             ["--exit-rank", "0", "--exit-code", str(code)],
                             **venv_env(workdir, "multiworker"))
        info = slurm.wait(job_id, JOB_TIMEOUT)
        want = ("COMPLETED", "0:0") if code == 0 else ("FAILED", f"{code}:0")
        assert (info["JobState"], info["ExitCode"]) == want, slurm.output(workdir, job_id)
