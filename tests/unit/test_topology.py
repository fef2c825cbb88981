"""Topology: golden layouts (tests/golden/topology/*.json, UPDATE_GOLDEN=1 rewrites them)
plus the rules every plan must keep and the errors users see."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from discovery_fakes import make_ctx

from tfbuild_agent.discovery import slurm, tf_config
from tfbuild_agent.discovery.membership import Membership, ProcessIdentity
from tfbuild_agent.errors import TopologyError
from tfbuild_agent.hostlist import placeholder_host
from tfbuild_agent.jobspec import JobSpec
from tfbuild_agent.topology import mpi_rank_env, parse_placement, plan

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "topology"


def ips(n: int) -> tuple[str, ...]:
    return tuple(f"10.0.0.{i + 1}" for i in range(n))


def every_node(job: JobSpec, hosts: tuple[str, ...], **kwargs) -> list[dict]:
    return [
        plan(Membership("explicit", hosts, rank), job, **kwargs).describe()
        for rank in range(len(hosts))
    ]


KUBEFLOW_CLUSTER = {
    "chief": ["tf-chief-0.ns.svc:2222"],
    "worker": ["tf-worker-0.ns.svc:2222", "tf-worker-1.ns.svc:2222"],
    "ps": ["tf-ps-0.ns.svc:2222", "tf-ps-1.ns.svc:2222"],
}


def passthrough_plans() -> list[dict]:
    out = []
    for role, count in (("chief", 1), ("worker", 2), ("ps", 2), ("evaluator", 1)):
        for index in range(count):
            env = {
                "TF_CONFIG": json.dumps(
                    {
                        "cluster": KUBEFLOW_CLUSTER,
                        "task": {"type": role, "index": index},
                        "environment": "cloud",
                    }
                )
            }
            membership = tf_config.discover(make_ctx(env, hostname=f"tf-{role}-{index}"))
            out.append(
                plan(
                    membership,
                    JobSpec(
                        distributed_backend="ps",
                        node_count=5,
                        worker_count=2,
                        parameter_server_count=2,
                    ),
                ).describe()
            )
    return out


def srun_plans() -> list[dict]:
    """srun -N4 -n7 (block distribution) starting one agent per task, multiworker."""
    out = []
    rank = 0
    for node, count in enumerate((2, 2, 2, 1)):
        for local in range(count):
            env = {
                "SLURM_JOB_ID": "9",
                "SLURM_STEP_ID": "0",
                "SLURM_STEP_NODELIST": "gpu[01-03,07]",
                "SLURM_STEP_TASKS_PER_NODE": "2(x3),1",
                "SLURM_STEP_NUM_TASKS": "7",
                "SLURM_NODEID": str(node),
                "SLURM_PROCID": str(rank),
                "SLURM_LOCALID": str(local),
            }
            membership = slurm.discover(make_ctx(env))
            job = JobSpec(distributed_backend="multiworker", node_count=4)
            out.append(plan(membership, job).describe())
            rank += 1
    return out


SCENARIOS = {
    "ps_seed_5nodes_3workers_2ps": lambda: every_node(
        JobSpec(distributed_backend="ps", node_count=5, worker_count=3, parameter_server_count=2),
        ips(5),
    ),
    "ps_2nodes_2workers_1ps": lambda: every_node(
        JobSpec(distributed_backend="ps", node_count=2, worker_count=2, parameter_server_count=1),
        ips(2),
    ),
    "ps_2nodes_placement_override": lambda: every_node(
        JobSpec(distributed_backend="ps", node_count=2, worker_count=2, parameter_server_count=1),
        ips(2),
        placement="chief:0,worker:1,worker:1,ps:0",
    ),
    "ps_2nodes_with_evaluator": lambda: every_node(
        JobSpec(distributed_backend="ps", node_count=2, worker_count=2, parameter_server_count=1),
        ips(2),
        evaluator=True,
    ),
    "multiworker_4nodes": lambda: every_node(
        JobSpec(distributed_backend="multiworker", node_count=4), ips(4)
    ),
    "multiworker_2nodes_2procs": lambda: every_node(
        JobSpec(
            distributed_backend="multiworker", node_count=2, process_count_per_node=2, port=3000
        ),
        ("trainer-a", "trainer-b"),
    ),
    "mpi_2nodes_4slots": lambda: {
        "plans": every_node(
            JobSpec(distributed_backend="mpi", node_count=2, process_count_per_node=4),
            ("node-a", "node-b"),
        ),
        "rank_env": [
            mpi_rank_env(
                r,
                JobSpec(distributed_backend="mpi", node_count=2, process_count_per_node=4),
                ("node-a", "node-b"),
            )
            for r in range(8)
        ],
    },
    "none_1node_2procs": lambda: every_node(
        JobSpec(distributed_backend="none", process_count_per_node=2), ("localhost",)
    ),
    "tf_config_passthrough_kubeflow": passthrough_plans,
    "srun_multiworker_one_agent_per_task": srun_plans,
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden(name):
    actual = json.loads(json.dumps(SCENARIOS[name]()))
    path = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    assert path.exists(), f"{path} is missing; run with UPDATE_GOLDEN=1 and review it"
    assert actual == json.loads(path.read_text())


# --- rules every layout keeps ---------------------------------------------------------

LAYOUTS = [
    (JobSpec(distributed_backend="ps", node_count=n, worker_count=w, parameter_server_count=p), ev)
    for n, w, p in [(1, 1, 1), (2, 2, 1), (5, 3, 2), (3, 8, 3), (4, 3, 1)]
    for ev in (False, True)
] + [
    (JobSpec(distributed_backend="multiworker", node_count=n, process_count_per_node=k), ev)
    for n, k in [(1, 1), (3, 2), (4, 1)]
    for ev in (False, True)
]


@pytest.mark.parametrize(("job", "evaluator"), LAYOUTS)
def test_every_layout_is_consistent(job, evaluator):
    hosts = ips(job.node_count)
    plans = [
        plan(Membership("explicit", hosts, r), job, evaluator=evaluator)
        for r in range(job.node_count)
    ]
    tasks = [t for p in plans for t in p.tasks]
    names = [t.name for t in tasks]
    assert len(names) == len(set(names)), "a task runs twice"
    cluster = plans[0].cluster
    assert all(p.cluster == cluster for p in plans), "nodes disagree on the cluster"
    members = [a for addresses in cluster.values() for a in addresses]
    assert len(members) == len(set(members)), "two tasks share host:port"
    assert "master" not in cluster and "evaluator" not in cluster
    in_cluster = [t for t in tasks if t.role != "evaluator"]
    assert sorted(t.rank for t in in_cluster) == list(range(plans[0].world_size))
    assert len([t for t in tasks if t.role == "evaluator"]) == int(evaluator)
    for p in plans:
        for t in p.tasks:
            config = json.loads(t.env["TF_CONFIG"])
            assert set(config) == {"cluster", "task", "environment"}
            assert config["environment"] == "cloud"
            assert config["cluster"] == cluster
            assert config["task"] == {"type": t.role, "index": t.index}
            assert t.env["TFBUILD_TASK"] == t.name
            assert t.env["MASTER_ADDR"] == hosts[0]
            assert t.env["NODE_RANK"] == str(p.node_rank)
            assert int(t.env["LOCAL_WORLD_SIZE"]) == len(p.tasks)
            assert t.env["TF_CONFIG"] == json.dumps(config, separators=(",", ":"), sort_keys=True)
            if t.role != "evaluator":
                host, port = cluster[t.role][t.index].rsplit(":", 1)
                assert host == hosts[p.node_rank] and int(port) >= job.port
    if job.distributed_backend == "ps":
        assert cluster["chief"] == [f"{hosts[0]}:{job.port}"]
        assert plans[0].decisive_task == "chief-0"
        assert set(plans[0].servers_only) == {n for n in names if n.startswith(("worker-", "ps-"))}
    else:
        assert plans[0].decisive_task == "worker-0" and plans[0].servers_only == ()


def test_ps_round_robin_spreads_every_role():
    job = JobSpec(distributed_backend="ps", node_count=3, worker_count=6, parameter_server_count=3)
    p = plan(Membership("explicit", ips(3), 0), job)
    nodes = {d["task"]: d["node"] for d in p.details["placement"]}
    assert nodes["chief-0"] == 0
    assert sorted(nodes[f"ps-{i}"] for i in range(3)) == [0, 1, 2]
    per_node = [sum(1 for n in nodes.values() if n == k) for k in range(3)]
    assert max(per_node) - min(per_node) <= 1


def test_two_nodes_on_one_address_still_get_distinct_ports():
    job = JobSpec(distributed_backend="multiworker", node_count=2)
    p = plan(Membership("explicit", ("127.0.0.1", "127.0.0.1"), 1), job)
    assert p.cluster == {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}


def test_ipv6_hosts_are_bracketed():
    job = JobSpec(distributed_backend="multiworker", node_count=2)
    p = plan(Membership("explicit", ("fd00::2", "fd00::3"), 0), job)
    assert p.cluster == {"worker": ["[fd00::2]:2222", "[fd00::3]:2222"]}


def test_none_backend_task_env():
    job = JobSpec(distributed_backend="none", node_count=2, process_count_per_node=3)
    p = plan(Membership("explicit", ("a", "b"), 1), job)
    assert [t.name for t in p.tasks] == ["rank-3", "rank-4", "rank-5"]
    assert p.tasks[2].env == {
        "TFBUILD_TASK": "rank-5",
        "RANK": "5",
        "LOCAL_RANK": "2",
        "WORLD_SIZE": "6",
        "LOCAL_WORLD_SIZE": "3",
        "NODE_RANK": "1",
        "MASTER_ADDR": "a",
        "MASTER_PORT": "2222",
    }
    assert p.cluster is None and p.decisive_task is None


def test_mpi_plan_only_node_zero_launches():
    job = JobSpec(distributed_backend="mpi", node_count=2, process_count_per_node=4)
    zero, one = (plan(Membership("explicit", ("a", "b"), r), job) for r in (0, 1))
    assert zero.mpi_launcher and not one.mpi_launcher
    assert zero.tasks == () and one.tasks == ()
    assert zero.hostfile == "a slots=4\nb slots=4\n" and zero.world_size == 8
    env = mpi_rank_env(6, job, ("a", "b"))
    assert (env["RANK"], env["LOCAL_RANK"], env["NODE_RANK"], env["LOCAL_WORLD_SIZE"]) == (
        "6",
        "2",
        "1",
        "4",
    )
    with pytest.raises(TopologyError, match="rank 8 is outside"):
        mpi_rank_env(8, job, ("a", "b"))


def test_launched_by_mpirun_is_one_task_with_that_identity():
    job = JobSpec(distributed_backend="mpi", node_count=2, process_count_per_node=4)
    m = Membership("mpi", ("a", "b"), 1, slots=(4, 4), process=ProcessIdentity(6, 8, 2, 4))
    p = plan(m, job)
    assert [(t.role, t.index, t.rank, t.local_rank) for t in p.tasks] == [("rank", 6, 6, 2)]
    assert p.tasks[0].env["WORLD_SIZE"] == "8" and p.tasks[0].env["MASTER_ADDR"] == "a"
    assert not p.mpi_launcher and p.hostfile is None


def test_launched_with_cyclic_mapping_is_fine_for_mpi_but_not_for_tf_config():
    # mpirun --map-by node: rank 1 on node 1 as local rank 0.
    m = Membership("mpi", ("a", "b"), 1, slots=(2, 2), process=ProcessIdentity(1, 4, 0, 2))
    assert plan(m, JobSpec(distributed_backend="mpi", node_count=2)).tasks[0].rank == 1
    with pytest.raises(TopologyError, match=r"block order.*--map-by slot"):
        plan(m, JobSpec(distributed_backend="multiworker", node_count=2))


def test_placeholder_master_is_not_exported():
    m = Membership("mpi", (placeholder_host(0), "me"), 1, process=ProcessIdentity(1, 2, 0, 1))
    env = plan(m, JobSpec(distributed_backend="mpi", node_count=2)).tasks[0].env
    assert "MASTER_ADDR" not in env and env["MASTER_PORT"] == "2222"
    with pytest.raises(TopologyError, match="TFBUILD_HOSTFILE"):
        plan(m, JobSpec(distributed_backend="multiworker", node_count=2))


def test_launched_ps_roles_follow_rank_order():
    job = JobSpec(distributed_backend="ps", node_count=2, worker_count=2, parameter_server_count=1)
    roles = []
    for rank in range(4):
        m = Membership(
            "slurm",
            ("a", "b"),
            rank // 2,
            slots=(2, 2),
            process=ProcessIdentity(rank, 4, rank % 2, 2),
        )
        roles.append(plan(m, job).tasks[0].name)
    assert roles == ["chief-0", "worker-0", "worker-1", "ps-0"]
    m = Membership("slurm", ("a", "b"), 0, slots=(2, 1), process=ProcessIdentity(0, 3, 0, 2))
    with pytest.raises(TopologyError, match=r"started 3 process.*= 4"):
        plan(m, job)


def test_passthrough_keeps_tf_config_as_given():
    config = {"cluster": {"worker": ["w0:2222", "w1:2222"]}, "task": {"type": "worker", "index": 1}}
    m = Membership("tf_config", ("w0", "w1"), 1, tf_config=config)
    p = plan(m, JobSpec(distributed_backend="multiworker", node_count=7))  # count ignored
    (task,) = p.tasks
    assert json.loads(task.env["TF_CONFIG"]) == config
    assert (task.name, task.rank, p.world_size) == ("worker-1", 1, 2)
    assert task.env["MASTER_ADDR"] == "w0"
    assert p.decisive_task == "worker-0" and p.servers_only == ()
    with pytest.raises(TopologyError, match="TF_CONFIG already places"):
        plan(m, JobSpec(distributed_backend="ps"), placement="chief:0")
    assert "ignored" in plan(m, JobSpec(), evaluator=True).details


def test_passthrough_master_decides():
    config = {
        "cluster": {"master": ["m:1"], "worker": ["w:1"], "ps": ["p:1"]},
        "task": {"type": "ps", "index": 0},
    }
    p = plan(Membership("tf_config", ("m", "w", "p"), 2, tf_config=config), JobSpec())
    assert p.tasks[0].rank == 2 and p.decisive_task == "master-0"
    assert p.servers_only == ("worker-0", "ps-0")


# --- errors the user sees -------------------------------------------------------------


def test_fewer_nodes_than_expected_names_both_numbers():
    with pytest.raises(TopologyError, match=r"found 2 node\(s\).*node_count=3.*1 more"):
        plan(
            Membership("dns", ("10.0.0.1", "10.0.0.2"), 0),
            JobSpec(distributed_backend="multiworker", node_count=3),
        )


def test_more_nodes_than_expected():
    with pytest.raises(TopologyError, match=r"node_count=1.*TFBUILD_NODES=2"):
        plan(Membership("slurm", ("a", "b"), 0), JobSpec())


def test_idle_nodes_are_refused():
    job = JobSpec(distributed_backend="ps", node_count=5, worker_count=1, parameter_server_count=1)
    with pytest.raises(TopologyError, match=r"3 task\(s\).*node\(s\) 3, 4 of 5 get none"):
        plan(Membership("explicit", ips(5), 0), job)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("chief:0,worker:0,worker:1", "leaves tasks unplaced: 1 more ps"),
        ("chief:0,worker:0,worker:1,ps:1,ps:0", "item 5 'ps:0'.*more ps items"),
        ("chief:0,worker:0,worker:2,ps:1", "item 3 'worker:2'.*0..1"),
        ("master:0,worker:0,worker:1,ps:1", "'chief', not 'master'"),
        ("chief:0,worker=0,worker:1,ps:1", "item 2 'worker=0'.*role:node"),
        ("chief:0,boss:1,worker:0,worker:1,ps:1", "role 'boss'"),
        ("chief:0,worker:x,worker:1,ps:1", "node 'x'"),
        ("chief:0,worker:0,worker:0,ps:0", "node\\(s\\) 1 of 2 get none"),
    ],
)
def test_bad_placement(text, fragment):
    job = JobSpec(distributed_backend="ps", node_count=2, worker_count=2, parameter_server_count=1)
    with pytest.raises(TopologyError, match=fragment):
        plan(Membership("explicit", ips(2), 0), job, placement=text)


def test_parse_placement_keeps_index_order_and_spaces():
    assert parse_placement(
        " chief:1 , worker:0,ps:1,worker:1 ", {"chief": 1, "worker": 2, "ps": 1}, 2
    ) == {"chief": [1], "worker": [0, 1], "ps": [1]}


@pytest.mark.parametrize(
    ("job", "kwargs", "fragment"),
    [
        (
            JobSpec(distributed_backend="multiworker", node_count=2),
            {"placement": "worker:0"},
            "only applies to the ps backend",
        ),
        (
            JobSpec(distributed_backend="mpi", node_count=2),
            {"evaluator": True},
            "evaluator task needs the ps or multiworker",
        ),
        (
            JobSpec(distributed_backend="multiworker", node_count=2, port=29399),
            {},
            "port 29400, which is the agents' control port",
        ),
        (
            JobSpec(
                distributed_backend="multiworker",
                node_count=2,
                port=65535,
                process_count_per_node=2,
            ),
            {},
            "port 65536, which does not exist",
        ),
    ],
)
def test_invalid_combinations(job, kwargs, fragment):
    hosts = ("a", "a") if job.port >= 29399 else ("a", "b")
    with pytest.raises(TopologyError, match=fragment):
        plan(Membership("explicit", hosts, 0), job, **kwargs)


def test_launched_rejects_placement_and_evaluator():
    m = Membership("mpi", ("a",), 0, process=ProcessIdentity(0, 1, 0, 1))
    with pytest.raises(TopologyError, match="already started one process per task"):
        plan(m, JobSpec(distributed_backend="ps"), placement="chief:0,worker:0,ps:0")


@pytest.mark.parametrize(("nodes", "per_node"), [(3, 2), (2, 1), (1, 2)])
def test_the_evaluator_of_a_multiworker_job_runs_on_the_last_node_outside_the_cluster(
    nodes, per_node
):
    """Farthest from worker 0 (which saves the model); it has no port, its rank follows
    every worker's and it is not counted in the world size the workers see."""
    job = JobSpec(distributed_backend="multiworker", node_count=nodes,
                  process_count_per_node=per_node)
    plans = [plan(Membership("explicit", ips(nodes), r), job, evaluator=True)
             for r in range(nodes)]
    evaluators = [(p.node_rank, t) for p in plans for t in p.tasks if t.role == "evaluator"]
    assert [(node, t.index, t.rank) for node, t in evaluators] == [
        (nodes - 1, 0, nodes * per_node)]
    last = plans[-1]
    assert last.world_size == nodes * per_node
    assert [t.local_rank for t in last.tasks] == list(range(per_node + 1))
    assert {t.env["LOCAL_WORLD_SIZE"] for t in last.tasks} == {str(per_node + 1)}
    placed = {d["task"]: d for d in last.details["placement"]}
    assert placed["evaluator-0"]["port"] is None and placed["evaluator-0"]["node"] == nodes - 1
    assert all(len(p.tasks) == per_node for p in plans[:-1])


def test_the_evaluator_of_a_ps_job_takes_the_next_round_robin_node():
    job = JobSpec(distributed_backend="ps", node_count=3, worker_count=2,
                  parameter_server_count=1)
    # Round-robin order chief, ps, worker, worker, evaluator -> nodes 0, 1, 2, 0, 1.
    p = plan(Membership("explicit", ips(3), 1), job, evaluator=True)
    nodes = {d["task"]: d["node"] for d in p.details["placement"]}
    assert nodes == {"chief-0": 0, "ps-0": 1, "worker-0": 2, "worker-1": 0, "evaluator-0": 1}
    assert [t.name for t in p.tasks] == ["ps-0", "evaluator-0"]


@pytest.mark.parametrize("rank", [-1, 2])
def test_a_node_rank_outside_the_discovered_nodes_is_refused(rank):
    job = JobSpec(distributed_backend="multiworker", node_count=2)
    with pytest.raises(TopologyError, match=f"node rank {rank} is outside the 2 node"):
        plan(Membership("explicit", ips(2), rank), job)


@pytest.mark.parametrize("rank", [-1, 8])
def test_an_mpi_rank_outside_the_job_is_refused(rank):
    job = JobSpec(distributed_backend="mpi", node_count=2, process_count_per_node=4)
    with pytest.raises(TopologyError, match=f"rank {rank} is outside the job's 2 node"):
        mpi_rank_env(rank, job, ("a", "b"))


def test_an_unfinished_placement_says_how_many_of_each_role_are_missing():
    with pytest.raises(TopologyError) as err:
        parse_placement("chief:0,worker:1", {"chief": 1, "worker": 3, "ps": 2}, 2)
    assert str(err.value).endswith(
        "leaves tasks unplaced: 2 more worker (add worker:<node>), 2 more ps (add ps:<node>)")


def test_a_placement_places_the_one_evaluator():
    job = JobSpec(distributed_backend="ps", node_count=2, worker_count=1,
                  parameter_server_count=1)
    p = plan(Membership("explicit", ips(2), 1), job, "chief:0,worker:1,ps:0,evaluator:1",
             evaluator=True)
    assert [t.name for t in p.tasks] == ["worker-0", "evaluator-0"]


@pytest.mark.parametrize(
    ("port", "control_port", "message"),
    [(65534, 65535, "would get port 65535, which is the agents' control port"),
     (65535, 29400, "would get port 65536, which does not exist")],
)
def test_a_port_past_the_last_or_on_the_control_port_is_refused(port, control_port, message):
    job = JobSpec(distributed_backend="multiworker", node_count=1, process_count_per_node=2,
                  port=port, control_port=control_port)
    with pytest.raises(TopologyError, match=message):
        plan(Membership("explicit", ("h",), 0), job)


def test_ranks_launched_without_slots_fill_nodes_by_local_size():
    """One agent per process (srun/mpirun) with no usable slot list: ranks fill the nodes
    in blocks of the local size, so rank 2 of 4 is on node 1."""
    job = JobSpec(distributed_backend="multiworker", node_count=2, process_count_per_node=2)
    for slots in (None, (4, 4)):  # (4, 4) does not add up to 4 processes: not usable
        m = Membership("slurm", ("a", "b"), 1, slots=slots,
                       process=ProcessIdentity(rank=2, world_size=4, local_rank=0,
                                               local_size=2))
        p = plan(m, job)
        assert [t.name for t in p.tasks] == ["worker-2"]
        assert p.details["placement"][2] == {"task": "worker-2", "node": 1, "host": "b",
                                             "port": job.port}


def test_a_tf_config_task_without_an_index_is_index_0():
    env = {"TF_CONFIG": json.dumps({"cluster": {"chief": ["c:2222"], "worker": ["w:2222"]},
                                    "task": {"type": "chief"}})}
    m = tf_config.discover(make_ctx(env, node_count=2, hostname="c"))
    p = plan(m, JobSpec(distributed_backend="ps", node_count=2))
    assert [(t.role, t.index, t.rank) for t in p.tasks] == [("chief", 0, 0)]
