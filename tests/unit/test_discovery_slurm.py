import pytest
from discovery_fakes import make_ctx

from tfbuild_agent.discovery import slurm
from tfbuild_agent.discovery.membership import ProcessIdentity
from tfbuild_agent.errors import DiscoveryError

# sbatch -N5 ... then `srun -N4 -n7 ...`: what slurmd exports to task 3 (on gpu02).
# The allocation has five nodes, the step four; the step's values must win.
SRUN_TASK3 = {
    "SLURM_JOB_ID": "123456",
    "SLURM_JOBID": "123456",
    "SLURM_JOB_NAME": "train",
    "SLURM_JOB_NODELIST": "gpu[01-03,07],cpu5",
    "SLURM_NODELIST": "gpu[01-03,07],cpu5",
    "SLURM_JOB_NUM_NODES": "5",
    "SLURM_TASKS_PER_NODE": "2(x3),1(x2)",
    "SLURM_STEP_ID": "0",
    "SLURM_STEPID": "0",
    "SLURM_STEP_NODELIST": "gpu[01-03,07]",
    "SLURM_STEP_NUM_NODES": "4",
    "SLURM_STEP_NUM_TASKS": "7",
    "SLURM_STEP_TASKS_PER_NODE": "2(x3),1",
    "SLURM_NTASKS": "7",
    "SLURM_NPROCS": "7",
    "SLURM_NODEID": "1",
    "SLURM_PROCID": "3",
    "SLURM_LOCALID": "1",
    "SLURMD_NODENAME": "gpu02",
    "SLURM_CPUS_ON_NODE": "8",
}


def test_not_applicable_outside_slurm():
    assert slurm.discover(make_ctx({"SLURM_CONF": "/etc/slurm/slurm.conf"})) is None


def test_srun_step_wins_over_allocation_and_fills_process():
    m = slurm.discover(make_ctx(SRUN_TASK3, hostname="gpu02"))
    assert m.source == "slurm"
    assert m.hosts == ("gpu01", "gpu02", "gpu03", "gpu07")
    assert m.slots == (2, 2, 2, 1)
    assert m.node_rank == 1
    assert m.process == ProcessIdentity(rank=3, world_size=7, local_rank=1, local_size=2)
    assert ("SLURM_STEP_NODELIST", "gpu[01-03,07]") in m.evidence


def test_one_task_per_node_leaves_processes_to_the_agent():
    env = {
        "SLURM_JOB_ID": "7",
        "SLURM_STEP_ID": "1",
        "SLURM_STEP_NODELIST": "n[1-2]-ib,login",
        "SLURM_STEP_TASKS_PER_NODE": "1(x3)",
        "SLURM_NODEID": "2",
        "SLURM_PROCID": "2",
        "SLURM_LOCALID": "0",
        "SLURM_NTASKS": "3",
    }
    m = slurm.discover(make_ctx(env, hostname="login"))
    assert m.hosts == ("n1-ib", "n2-ib", "login")
    assert m.node_rank == 2
    assert m.process is None


def test_batch_script_without_step_uses_job_list_and_hostname():
    # The batch step itself: no SLURM_STEP_* and no SLURM_NODEID passed in.
    env = {
        "SLURM_JOB_ID": "99",
        "SLURM_JOB_NODELIST": "tux[098-100]",
        "SLURM_TASKS_PER_NODE": "4(x3)",
    }
    m = slurm.discover(make_ctx(env, hostname="tux099.cluster"))
    assert m.hosts == ("tux098", "tux099", "tux100")
    assert m.slots == (4, 4, 4)
    assert m.node_rank == 1
    assert m.process is None  # not an srun task: one agent on the node


def test_slurmd_nodename_beats_container_hostname():
    env = {"SLURM_PROCID": "0", "SLURM_JOB_NODELIST": "a,b", "SLURMD_NODENAME": "b"}
    assert slurm.discover(make_ctx(env, hostname="container-xyz")).node_rank == 1


def test_mismatched_task_counts_are_ignored_with_a_log_line():
    logs: list[str] = []
    env = {
        "SLURM_JOB_ID": "1",
        "SLURM_STEP_NODELIST": "a,b",
        "SLURM_STEP_TASKS_PER_NODE": "2(x3)",
        "SLURM_NODEID": "0",
    }
    m = slurm.discover(make_ctx(env, logs=logs))
    assert m.slots is None
    assert any("3 entries for 2 nodes" in line for line in logs)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"SLURM_JOB_ID": "1"}, "SLURM_STEP_NODELIST.*pass them"),
        ({"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "a[1-"}, "not a Slurm host list"),
        (
            {"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "a,b", "SLURM_NODEID": "5"},
            "SLURM_NODEID=5.*2 node",
        ),
        ({"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "a,b"}, "'host0' is not in"),
        (
            {"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "a", "SLURM_TASKS_PER_NODE": "2(3)"},
            "not a Slurm task count",
        ),
        ({**SRUN_TASK3, "SLURM_LOCALID": ""}, "SLURM_PROCID or SLURM_LOCALID is not set"),
        ({**SRUN_TASK3, "SLURM_LOCALID": "2"}, "do not fit"),
    ],
)
def test_broken_slurm_environment(env, fragment):
    with pytest.raises(DiscoveryError, match=fragment):
        slurm.discover(make_ctx(env, addresses=["10.0.0.1"]))


def _step(**changes):
    env = {"SLURM_JOB_ID": "9", "SLURM_STEP_ID": "0", "SLURM_JOB_NODELIST": "n[1-2]",
           "SLURM_TASKS_PER_NODE": "2(x2)", "SLURM_NODEID": "1", "SLURM_PROCID": "3",
           "SLURM_LOCALID": "1", "SLURM_STEP_NUM_TASKS": "4", **changes}
    return {k: v for k, v in env.items() if v is not None}


def test_a_node_id_equal_to_the_node_count_is_refused():
    with pytest.raises(DiscoveryError, match="SLURM_NODEID=2 but SLURM_JOB_NODELIST names 2"):
        slurm.discover(make_ctx(_step(SLURM_NODEID="2"), hostname="n2"))


def test_a_task_rank_equal_to_the_step_size_is_refused():
    with pytest.raises(DiscoveryError, match="SLURM_PROCID=4/SLURM_LOCALID=1 do not fit"):
        slurm.discover(make_ctx(_step(SLURM_PROCID="4"), hostname="n2"))


@pytest.mark.parametrize(
    ("changes", "world"),
    [({}, 4), ({"SLURM_STEP_NUM_TASKS": None, "SLURM_NTASKS": "4"}, 4),
     ({"SLURM_STEP_NUM_TASKS": None}, 4),  # neither: the slots say how many
     ({"SLURM_STEP_NUM_TASKS": "3", "SLURM_NTASKS": "8"}, 3)],
)
def test_the_step_size_comes_from_the_step_then_the_job_then_the_slots(changes, world):
    m = slurm.discover(make_ctx(_step(**{"SLURM_PROCID": "2", **changes}), hostname="n2"))
    assert m.process.world_size == world and m.process.rank == 2


def test_a_step_size_below_one_is_refused():
    with pytest.raises(DiscoveryError, match="SLURM_STEP_NUM_TASKS"):
        slurm.discover(make_ctx(_step(SLURM_STEP_NUM_TASKS="0"), hostname="n2"))


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"SLURM_STEP_NUM_TASKS": "1"}, "do not fit a step of 1 task"),
     ({"SLURM_STEP_NUM_TASKS": None, "SLURM_NTASKS": "1"}, "do not fit a step of 1 task"),
     ({"SLURM_STEP_NUM_TASKS": None, "SLURM_NTASKS": "0"},
      "SLURM_NTASKS='0' is not a whole number >= 1")],
)
def test_a_step_too_small_for_this_task_is_refused_saying_why(changes, message):
    with pytest.raises(DiscoveryError, match=message):
        slurm.discover(make_ctx(_step(**changes), hostname="n2"))
