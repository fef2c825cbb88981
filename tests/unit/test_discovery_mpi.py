import pytest
from discovery_fakes import make_ctx

from tfbuild_agent.discovery import mpi
from tfbuild_agent.discovery.membership import ProcessIdentity
from tfbuild_agent.errors import DiscoveryError
from tfbuild_agent.hostlist import is_placeholder

# What Open MPI 4.1 exports to rank 5 of `mpirun -np 8 -H node-a:4,node-b:4 ...`.
OPEN_MPI_RANK5 = {
    "OMPI_COMM_WORLD_RANK": "5",
    "OMPI_COMM_WORLD_SIZE": "8",
    "OMPI_COMM_WORLD_LOCAL_RANK": "1",
    "OMPI_COMM_WORLD_LOCAL_SIZE": "4",
    "OMPI_COMM_WORLD_NODE_RANK": "1",
    "OMPI_UNIVERSE_SIZE": "8",
    "OMPI_MCA_orte_ess_num_procs": "8",
    "OMPI_MCA_orte_hnp_uri": "1645740032.0;tcp://10.0.0.2:42101",
    "PMIX_RANK": "5",
    "PMIX_NAMESPACE": "1645740033",
}


def test_not_applicable_without_launcher_variables():
    assert mpi.discover(make_ctx({"PMIX_RANK": "3"})) is None


def test_open_mpi_with_readable_hostfile():
    env = {**OPEN_MPI_RANK5, "OMPI_MCA_orte_default_hostfile": "/etc/mpi/hostfile"}
    files = {"/etc/mpi/hostfile": "node-a slots=4\nnode-b slots=4\n"}
    m = mpi.discover(make_ctx(env, hostname="node-b", files=files))
    assert m.source == "mpi"
    assert m.hosts == ("node-a", "node-b")
    assert m.slots == (4, 4)
    assert m.node_rank == 1
    assert m.process == ProcessIdentity(rank=5, world_size=8, local_rank=1, local_size=4)


def test_open_mpi_node_from_slots_when_hostname_differs():
    env = {**OPEN_MPI_RANK5, "OMPI_MCA_prte_default_hostfile": "/hf"}
    ctx = make_ctx(
        env,
        hostname="0a1b2c3d",
        addresses=["172.18.0.9"],
        files={"/hf": "10.0.0.2 slots=4\n10.0.0.3 slots=4\n"},
    )
    assert mpi.discover(ctx).node_rank == 1


def test_open_mpi_hostfile_only_on_launcher_gives_placeholders():
    env = {**OPEN_MPI_RANK5, "OMPI_MCA_orte_default_hostfile": "/etc/mpi/hostfile"}
    m = mpi.discover(make_ctx(env, hostname="worker-1"))
    assert m.node_rank == 1
    assert m.hosts[1] == "worker-1"
    assert is_placeholder(m.hosts[0]) and len(m.hosts) == 2
    assert ("OMPI_MCA_orte_default_hostfile", "/etc/mpi/hostfile (not readable here)") in m.evidence


def test_hydra_pmi_with_local_ranks():
    env = {
        "PMI_RANK": "3",
        "PMI_SIZE": "4",
        "MPI_LOCALRANKID": "1",
        "MPI_LOCALNRANKS": "2",
        "PMI_FD": "7",
        "HYDRA_HOST_FILE": "/tmp/hosts",
    }
    m = mpi.discover(make_ctx(env, hostname="h2", files={"/tmp/hosts": "h1:2\nh2:2\n"}))
    assert m.hosts == ("h1", "h2") and m.node_rank == 1
    assert m.process == ProcessIdentity(3, 4, 1, 2)


def test_srun_pmi2_uses_the_slurm_node_list():
    # srun --mpi=pmi2 -N2 --ntasks-per-node=2 on nodes gpu[01-02]: task 2 of 4.
    env = {
        "PMI_RANK": "2",
        "PMI_SIZE": "4",
        "PMI_FD": "12",
        "PMI_JOBID": "4242.0",
        "SLURM_JOB_ID": "4242",
        "SLURM_STEP_ID": "0",
        "SLURM_PROCID": "2",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "1",
        "SLURM_NTASKS": "4",
        "SLURM_STEP_NODELIST": "gpu[01-02]",
        "SLURM_STEP_TASKS_PER_NODE": "2(x2)",
        "SLURM_JOB_NODELIST": "gpu[01-02]",
        "SLURM_TASKS_PER_NODE": "2(x2)",
    }
    m = mpi.discover(make_ctx(env, hostname="gpu02"))
    assert m.hosts == ("gpu01", "gpu02") and m.slots == (2, 2) and m.node_rank == 1
    assert m.process == ProcessIdentity(2, 4, 0, 2)


def test_local_size_falls_back_to_process_count_per_node():
    env = {"PMI_RANK": "5", "PMI_SIZE": "6"}
    m = mpi.discover(make_ctx(env, hostname="me", process_count_per_node=3))
    assert m.process == ProcessIdentity(5, 6, 2, 3)
    assert m.node_rank == 1 and len(m.hosts) == 2 and m.hosts[1] == "me"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"OMPI_COMM_WORLD_RANK": "1"}, "OMPI_COMM_WORLD_SIZE is not"),
        ({"OMPI_COMM_WORLD_RANK": "4", "OMPI_COMM_WORLD_SIZE": "4"}, "not below"),
        ({"PMI_RANK": "x", "PMI_SIZE": "2"}, "PMI_RANK='x'"),
        (
            {
                "OMPI_COMM_WORLD_RANK": "0",
                "OMPI_COMM_WORLD_SIZE": "4",
                "OMPI_COMM_WORLD_LOCAL_RANK": "2",
                "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
            },
            "local rank 2",
        ),
    ],
)
def test_broken_launcher_environment(env, fragment):
    with pytest.raises(DiscoveryError, match=fragment):
        mpi.discover(make_ctx(env))


def test_rank_outside_hostfile_slots():
    env = {**OPEN_MPI_RANK5, "OMPI_MCA_orte_default_hostfile": "/hf"}
    ctx = make_ctx(
        env, hostname="elsewhere", addresses=["10.1.1.1"], files={"/hf": "a slots=2\nb slots=2\n"}
    )
    with pytest.raises(DiscoveryError, match="rank 5 of 8 does not fit the 4 slots"):
        mpi.discover(ctx)


def _ompi(rank: int, size: int, local_size: int = 2) -> dict[str, str]:
    return {"OMPI_COMM_WORLD_RANK": str(rank), "OMPI_COMM_WORLD_SIZE": str(size),
            "OMPI_COMM_WORLD_LOCAL_RANK": str(rank % local_size),
            "OMPI_COMM_WORLD_LOCAL_SIZE": str(local_size),
            "OMPI_MCA_orte_default_hostfile": "/hf"}


@pytest.mark.parametrize(
    ("hostfile", "rank", "size", "node"),
    [
        ("a slots=2\nb slots=2\n", 1, 4, 0),
        ("a slots=2\nb slots=2\n", 2, 4, 1),  # the first rank past node 0's slots
        ("a slots=2\nb slots=2\n", 3, 4, 1),
        ("a slots=3\nb slots=1\n", 2, 4, 0),
        ("a slots=3\nb slots=1\n", 3, 4, 1),
        ("a slots=2\nb\n", 2, 3, 1),  # a line without slots is one slot
        ("a\nb\n", 2, 4, 1),  # no slots at all: the local size per node
        ("a\nb\n", 1, 4, 0),
    ],
)
def test_a_container_whose_name_is_not_listed_finds_its_node_by_slot(hostfile, rank, size,
                                                                      node):
    """mpirun --map-by slot: ranks fill each node's slots in turn. A container hostname
    (a hash) is not in the hostfile, so the rank decides the node."""
    ctx = make_ctx(_ompi(rank, size), hostname="0a1b2c3d", addresses=["172.18.0.9"],
                   files={"/hf": hostfile})
    assert mpi.discover(ctx).node_rank == node


@pytest.mark.parametrize(("hostfile", "rank", "size", "slots"),
                         [("a slots=2\nb\n", 3, 4, 3), ("a slots=2\nb slots=2\n", 4, 5, 4)])
def test_a_rank_past_every_slot_says_the_hostfile_differs(hostfile, rank, size, slots):
    ctx = make_ctx(_ompi(rank, size), hostname="0a1b2c3d", addresses=["172.18.0.9"],
                   files={"/hf": hostfile})
    with pytest.raises(DiscoveryError, match=f"rank {rank} of {size} does not fit the "
                       f"{slots} slots"):
        mpi.discover(ctx)


def test_a_listed_hostname_wins_over_the_slot_arithmetic():
    ctx = make_ctx(_ompi(0, 4), hostname="b", files={"/hf": "a slots=2\nb slots=2\n"})
    assert mpi.discover(ctx).node_rank == 1


def test_the_launcher_variables_are_kept_as_evidence():
    env = {"PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALRANKID": "0", "MPI_LOCALNRANKS": "1",
           "HYDRA_HOST_FILE": "/hf"}
    m = mpi.discover(make_ctx(env, hostname="b", files={"/hf": "a\nb\n"}))
    for name in ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"):
        assert (name, env[name]) in m.evidence
    m = mpi.discover(make_ctx(_ompi(1, 4), hostname="a", files={"/hf": "a\nb\n"}))
    for name in ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                 "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"):
        assert (name, _ompi(1, 4)[name]) in m.evidence


def test_a_single_process_world_and_a_local_size_of_one_are_fine():
    env = {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "1",
           "OMPI_COMM_WORLD_LOCAL_RANK": "0", "OMPI_COMM_WORLD_LOCAL_SIZE": "1"}
    m = mpi.discover(make_ctx(env, hostname="solo"))
    assert m.process == ProcessIdentity(rank=0, world_size=1, local_rank=0, local_size=1)


@pytest.mark.parametrize(
    "changes",
    [{"OMPI_COMM_WORLD_SIZE": "0"}, {"OMPI_COMM_WORLD_LOCAL_SIZE": "0"},
     {"OMPI_COMM_WORLD_LOCAL_RANK": "-1"}],
)
def test_sizes_below_one_and_negative_local_ranks_are_refused(changes):
    env = {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2",
           "OMPI_COMM_WORLD_LOCAL_RANK": "0", "OMPI_COMM_WORLD_LOCAL_SIZE": "2", **changes}
    name, value = next(iter(changes.items()))
    with pytest.raises(DiscoveryError, match=f"{name}='{value}' is not a whole number >= "):
        mpi.discover(make_ctx(env, hostname="h"))


def test_the_next_hostfile_variable_is_tried_when_one_is_not_readable_here():
    env = {**_ompi(2, 4), "OMPI_MCA_prte_default_hostfile": "/prte"}
    m = mpi.discover(make_ctx(env, hostname="b", files={"/prte": "a slots=2\nb slots=2\n"}))
    assert m.hosts == ("a", "b") and m.node_rank == 1


def test_a_bad_hostfile_names_the_file_and_the_variable():
    ctx = make_ctx(_ompi(0, 2), hostname="a", files={"/hf": "a slots=two\n"})
    with pytest.raises(DiscoveryError,
                       match="hostfile /hf \\(OMPI_MCA_orte_default_hostfile\\): line 1"):
        mpi.discover(ctx)


SRUN_PMI = {"PMI_RANK": "2", "PMI_SIZE": "4", "SLURM_JOB_ID": "7",
            "SLURM_JOB_NODELIST": "n[1-2]", "SLURM_TASKS_PER_NODE": "2(x2)"}


def test_under_srun_the_node_is_slurm_node_id_and_the_local_size_slurms_tasks():
    m = mpi.discover(make_ctx({**SRUN_PMI, "SLURM_NODEID": "1"}, hostname="c0ffee",
                              addresses=["10.9.9.9"]))
    assert m.node_rank == 1
    assert m.process == ProcessIdentity(rank=2, world_size=4, local_rank=0, local_size=2)


def test_under_srun_without_a_node_id_the_job_says_the_local_size():
    ctx = make_ctx(SRUN_PMI, hostname="n2", process_count_per_node=2)
    m = mpi.discover(ctx)
    assert m.node_rank == 1 and m.process.local_size == 2


def test_a_node_id_past_slurms_task_counts_falls_back_to_the_job():
    ctx = make_ctx({**SRUN_PMI, "SLURM_NODEID": "5", "SLURM_TASKS_PER_NODE": "4"},
                   hostname="n2", process_count_per_node=2)
    assert mpi.launcher_process(ctx.env, ctx.job).local_size == 2


def test_a_stale_slurm_node_id_does_not_override_a_hostfile():
    env = {**_ompi(0, 4), "SLURM_NODEID": "1"}
    m = mpi.discover(make_ctx(env, hostname="a", files={"/hf": "a slots=2\nb slots=2\n"}))
    assert m.node_rank == 0


def test_under_srun_with_cyclic_distribution_the_node_is_slurms_not_the_block_guess():
    """srun -m cyclic puts rank 1 on node 1; counting slots in blocks would say node 0."""
    env = {**SRUN_PMI, "PMI_RANK": "1", "SLURM_NODEID": "1"}
    m = mpi.discover(make_ctx(env, hostname="c0ffee", addresses=["10.9.9.9"]))
    assert m.node_rank == 1


def test_a_node_id_just_past_slurms_task_counts_falls_back_to_the_job():
    ctx = make_ctx({**SRUN_PMI, "SLURM_NODEID": "2"}, hostname="n2", process_count_per_node=3)
    assert mpi.launcher_process(ctx.env, ctx.job).local_size == 3
