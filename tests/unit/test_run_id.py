"""The run id every agent of one job derives alike, so their uploads land in one run."""

from __future__ import annotations

from tfbuild_agent.discovery.membership import Membership, ProcessIdentity
from tfbuild_agent.recorder import run_id_for
from tfbuild_agent.settings import AgentSettings, launcher_job_id


def _process(rank: int, hosts: tuple[str, ...] = ("n1",)) -> Membership:
    return Membership("slurm", hosts, 0, process=ProcessIdentity(rank, 4, rank % 2, 2))


def test_srun_tasks_on_one_host_share_the_slurm_job_step() -> None:
    # Found under a real Slurm (tests/schedulers): each agent made a time+PID id.
    env = {"SLURM_JOB_ID": "812", "SLURM_STEP_ID": "0"}
    ids = {run_id_for("", None, _process(r), AgentSettings.from_env(env).launcher_job)
           for r in range(4)}
    assert ids == {"slurm-812.0"}


def test_a_second_step_of_the_same_batch_job_is_another_run() -> None:
    first = launcher_job_id({"SLURM_JOB_ID": "812", "SLURM_STEP_ID": "0"})
    second = launcher_job_id({"SLURM_JOB_ID": "812", "SLURM_STEP_ID": "1"})
    assert first != second


def test_mpirun_namespace_is_made_safe_for_a_store_path() -> None:
    job = launcher_job_id({"PMIX_NAMESPACE": "prterun-host-31@1"})
    assert run_id_for("", None, _process(1), job) == "mpi-prterun-host-31-1"


def test_an_explicit_run_id_wins_over_the_launcher() -> None:
    assert run_id_for("exp-42", None, _process(0), "slurm-812.0") == "exp-42"


def test_one_agent_per_node_keeps_the_hosts_and_token_derivation() -> None:
    nodes = [Membership("explicit", ("a", "b"), r) for r in range(2)]
    ids = {run_id_for("", "tok", m, "slurm-812.0") for m in nodes}
    assert len(ids) == 1 and ids.pop().startswith("run-")
    other_token = run_id_for("", "other", nodes[0], "slurm-812.0")
    assert other_token.startswith("run-") and other_token != run_id_for("", "tok", nodes[0])


def test_no_launcher_leaves_a_lone_process_its_own_id() -> None:
    assert launcher_job_id({}) == ""
    assert run_id_for("", None, _process(0), "").startswith("run-")
