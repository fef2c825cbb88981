"""Peers + job spec -> the tasks this node runs, their roles, ranks, ports and TF_CONFIG.

Pure functions only (golden-tested in tests/unit/test_topology.py):

    plan(membership, job, placement=None, *, evaluator=False) -> Plan
    mpi_rank_env(rank, job, hosts) -> dict[str, str]
    parse_placement(text, counts, node_count) -> dict[str, list[int]]

Rules (docs/discovery.md has the long version):
- Rank order is cluster order: chief, then workers, then ps, each by index.
- ps placement by default is round-robin over the nodes in the order chief, ps...,
  workers..., evaluator: every node gets a task before any gets two, the chief sits on
  node 0, and the parameter servers land on different nodes first so variable traffic
  is spread. `placement` ("chief:0,worker:0,worker:1,ps:1") overrides it.
- Ports: tasks on the same host get job.port, job.port+1, ... in rank order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .discovery.membership import Membership
from .errors import TopologyError
from .hostlist import is_placeholder, join_host_port, split_host_port
from .jobspec import JobSpec

TF_ROLES = ("chief", "worker", "ps")
TF_CONFIG_ORDER = ("chief", "master", "worker", "ps")
PS_ROUND_ROBIN = ("chief", "ps", "worker")


@dataclass(frozen=True)
class Task:
    """One process this node starts."""

    role: str
    """chief, worker, ps, evaluator (ps/multiworker backends) or rank (mpi/none)."""
    index: int
    """Index within its role (TF_CONFIG task.index) or the global rank."""
    rank: int
    """Global process rank over the whole job (0 = chief, or worker 0 without a chief).
    An evaluator is outside the cluster: its rank is world_size."""
    local_rank: int
    env: Mapping[str, str] = field(default_factory=dict)
    """Variables exported to this process: TF_CONFIG, RANK, LOCAL_RANK, WORLD_SIZE, ..."""

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"


@dataclass(frozen=True)
class Plan:
    backend: str
    node_rank: int
    tasks: tuple[Task, ...]
    """The processes THIS node starts (empty on non-launcher nodes of an mpi job)."""
    world_size: int
    cluster: Mapping[str, list[str]] | None = None
    """TF cluster spec, for ps and multiworker."""
    hostfile: str | None = None
    """Open MPI hostfile text (`host slots=N` lines), mpi backend only."""
    mpi_launcher: bool = False
    """True on the node that runs mpirun (node 0)."""
    decisive_task: str | None = None
    """Task name whose exit decides the job (chief-0, or worker-0 without chief).
    None: every task's exit counts (none and mpi backends)."""
    servers_only: tuple[str, ...] = ()
    """Task names that serve forever (ps, and workers under ps) and are stopped
    by the agent once the decisive task ends."""
    details: Mapping[str, Any] = field(default_factory=dict)
    hosts: tuple[str, ...] = ()
    """Every node of the job, index = node rank."""

    def describe(self) -> dict[str, Any]:
        """Plain JSON-able form (golden files, `tfbuild-agent describe`)."""
        return {
            "backend": self.backend,
            "node_rank": self.node_rank,
            "hosts": list(self.hosts),
            "world_size": self.world_size,
            "tasks": [
                {"name": t.name, "role": t.role, "index": t.index, "rank": t.rank,
                 "local_rank": t.local_rank, "env": dict(sorted(t.env.items()))}
                for t in self.tasks
            ],
            "cluster": None if self.cluster is None else dict(self.cluster),
            "hostfile": self.hostfile,
            "mpi_launcher": self.mpi_launcher,
            "decisive_task": self.decisive_task,
            "servers_only": list(self.servers_only),
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class _Placed:
    """One task of the whole job, wherever it runs."""

    role: str
    index: int
    rank: int
    node: int
    port: int | None = None
    local_rank: int = 0
    local_world: int = 1

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"


def plan(
    membership: Membership,
    job: JobSpec,
    placement: str | None = None,
    *,
    evaluator: bool = False,
) -> Plan:
    """What this node runs. `placement` (TFBUILD_PLACEMENT) and `evaluator`
    (TFBUILD_EVALUATOR=1) are read from the environment by the caller."""
    backend = job.distributed_backend
    if membership.tf_config is not None:
        if placement:
            raise TopologyError(
                "TF_CONFIG already places every task, so TFBUILD_PLACEMENT cannot apply; "
                "unset one of them"
            )
        return _passthrough(membership, job, evaluator)
    if placement and backend != "ps":
        raise TopologyError(
            f"a placement ({placement!r}) only applies to the ps backend, not {backend!r}; "
            "unset TFBUILD_PLACEMENT"
        )
    if evaluator and backend not in ("ps", "multiworker"):
        raise TopologyError(
            f"an evaluator task needs the ps or multiworker backend, not {backend!r}; "
            "unset TFBUILD_EVALUATOR"
        )
    if membership.process is not None:
        return _launched(membership, job, placement, evaluator)
    _check_nodes(membership, job)
    hosts = membership.hosts
    if backend == "mpi":
        return _mpi(membership, job)
    if backend == "ps":
        layout = _ps_layout(job, len(hosts), placement, evaluator)
    else:
        role = "worker" if backend == "multiworker" else "rank"
        layout = _node_major(role, len(hosts), job.process_count_per_node, evaluator)
    return _assemble(membership, job, _with_ports(layout, hosts, job, backend))


# --- layouts: every task of the job and its node ----------------------------------


def _node_major(role: str, node_count: int, per_node: int, evaluator: bool) -> list[_Placed]:
    """per_node tasks on every node; index and rank run node by node."""
    layout = [
        _Placed(role, node * per_node + local, node * per_node + local, node)
        for node in range(node_count)
        for local in range(per_node)
    ]
    if evaluator:  # the last node: farthest from worker 0, which also saves the model
        layout.append(_Placed("evaluator", 0, len(layout), node_count - 1))
    return layout


def _ps_layout(
    job: JobSpec, node_count: int, placement: str | None, evaluator: bool
) -> list[_Placed]:
    counts = {"chief": 1, "worker": job.worker_count, "ps": job.parameter_server_count}
    if evaluator:
        counts["evaluator"] = 1
    if placement:
        nodes = parse_placement(placement, counts, node_count)
        rule = "placement"
    else:
        order = [(role, i) for role in (*PS_ROUND_ROBIN, "evaluator") for i in
                 range(counts.get(role, 0))]
        nodes = {role: [] for role in counts}
        for position, (role, _) in enumerate(order):
            nodes[role].append(position % node_count)
        rule = "round-robin"
    idle = sorted(set(range(node_count)) - {n for ns in nodes.values() for n in ns})
    if idle:
        total = sum(counts.values())
        raise TopologyError(
            f"the ps layout has {total} task(s) ({_counts_text(counts)}) but node(s) "
            f"{', '.join(map(str, idle))} of {node_count} get none ({rule}); lower "
            "node_count (TFBUILD_NODES), raise worker_count, or change the placement"
        )
    layout, rank = [], 0
    for role in TF_ROLES:
        for index, node in enumerate(nodes[role]):
            layout.append(_Placed(role, index, rank, node))
            rank += 1
    if evaluator:
        layout.append(_Placed("evaluator", 0, rank, nodes["evaluator"][0]))
    return layout


def parse_placement(
    text: str, counts: Mapping[str, int], node_count: int
) -> dict[str, list[int]]:
    """`chief:0,worker:0,worker:1,ps:1` -> {"chief": [0], "worker": [0, 1], "ps": [1]}.

    Items of one role are that role's tasks in index order. Every task must be listed
    exactly once; errors name the offending item.
    """
    nodes: dict[str, list[int]] = {role: [] for role in counts}
    items = [item.strip() for item in text.split(",")]
    for position, item in enumerate(items, start=1):
        where = f"placement item {position} {item!r} (in {text!r})"
        role, sep, node_text = item.partition(":")
        role, node_text = role.strip(), node_text.strip()
        if not sep or not role:
            raise TopologyError(f"{where} is not role:node, e.g. worker:1")
        if role == "master":
            raise TopologyError(f"{where}: the coordinator is called 'chief', not 'master'")
        if role not in counts:
            raise TopologyError(
                f"{where}: role {role!r} is not part of this job; use "
                f"{', '.join(sorted(counts))}"
            )
        if not node_text.isdigit() or int(node_text) >= node_count:
            raise TopologyError(
                f"{where}: node {node_text!r} is not a node number 0..{node_count - 1}"
            )
        if len(nodes[role]) == counts[role]:
            raise TopologyError(
                f"{where}: more {role} items than the job has {role} tasks ({counts[role]})"
            )
        nodes[role].append(int(node_text))
    missing = {role: counts[role] - len(nodes[role]) for role in counts
               if len(nodes[role]) < counts[role]}
    if missing:
        raise TopologyError(
            f"placement {text!r} leaves tasks unplaced: "
            + ", ".join(f"{n} more {role} (add {role}:<node>)" for role, n in missing.items())
        )
    return nodes


def _with_ports(layout: list[_Placed], hosts: Sequence[str], job: JobSpec,
                backend: str) -> list[_Placed]:
    """Fill ports (TF backends) and local ranks. Port counters are per host address,
    so two nodes listed under one address (host networking) never collide."""
    used: dict[str, int] = {}
    per_node: dict[int, int] = {}
    placed = []
    for task in sorted(layout, key=lambda t: t.rank):
        port = None
        if backend in ("ps", "multiworker") and task.role != "evaluator":
            host = hosts[task.node]
            port = job.port + used.get(host, 0)
            used[host] = used.get(host, 0) + 1
            if port == job.control_port or port > 65535:
                raise TopologyError(
                    f"{task.name} on {host} would get port {port}, which "
                    + ("is the agents' control port" if port <= 65535 else "does not exist")
                    + "; choose another TFBUILD_PORT or TFBUILD_CONTROL_PORT"
                )
        local = per_node.get(task.node, 0)
        per_node[task.node] = local + 1
        placed.append(replace(task, port=port, local_rank=local))
    return [replace(t, local_world=per_node[t.node]) for t in placed]


# --- from a layout to this node's plan ----------------------------------------------


def _assemble(membership: Membership, job: JobSpec, layout: list[_Placed],
              only_rank: int | None = None) -> Plan:
    backend = job.distributed_backend
    hosts = membership.hosts
    cluster = _cluster(layout, hosts) if backend in ("ps", "multiworker") else None
    world = sum(1 for t in layout if t.role != "evaluator")
    master = hosts[next(t.node for t in layout if t.rank == 0)]
    mine = [t for t in layout if
            (t.rank == only_rank if only_rank is not None else t.node == membership.node_rank)]
    tasks = []
    for t in mine:
        tf_config = None
        if cluster is not None:
            tf_config = {"cluster": cluster, "task": {"type": t.role, "index": t.index},
                         "environment": "cloud"}
        env = _task_env(t.name, t.rank, t.local_rank, world, t.local_world, t.node,
                        master, job.port, tf_config)
        tasks.append(Task(t.role, t.index, t.rank, t.local_rank, env))
    details: dict[str, Any] = {
        "source": membership.source,
        "placement": [
            {"task": t.name, "node": t.node, "host": hosts[t.node], "port": t.port}
            for t in layout
        ],
    }
    decisive, servers = {
        "ps": ("chief-0", tuple(t.name for t in layout if t.role in ("worker", "ps"))),
        "multiworker": ("worker-0", ()),
    }.get(backend, (None, ()))
    return Plan(
        backend=backend,
        node_rank=membership.node_rank,
        tasks=tuple(tasks),
        world_size=world,
        cluster=cluster,
        decisive_task=decisive,
        servers_only=servers,
        details=details,
        hosts=tuple(hosts),
    )


def _cluster(layout: list[_Placed], hosts: Sequence[str]) -> dict[str, list[str]]:
    cluster: dict[str, list[str]] = {}
    for role in TF_ROLES:
        members = sorted((t for t in layout if t.role == role), key=lambda t: t.index)
        if members:
            cluster[role] = [join_host_port(hosts[t.node], t.port) for t in members]
    return cluster


def _task_env(
    name: str,
    rank: int,
    local_rank: int,
    world: int,
    local_world: int,
    node_rank: int,
    master_addr: str | None,
    master_port: int,
    tf_config: Mapping[str, Any] | str | None = None,
) -> dict[str, str]:
    env = {
        "TFBUILD_TASK": name,
        "RANK": str(rank),
        "LOCAL_RANK": str(local_rank),
        "WORLD_SIZE": str(world),
        "LOCAL_WORLD_SIZE": str(local_world),
        "NODE_RANK": str(node_rank),
        "MASTER_PORT": str(master_port),
    }
    # A placeholder (a node nobody could name) is never exported: no value beats a wrong one.
    if master_addr is not None and not is_placeholder(master_addr):
        env["MASTER_ADDR"] = master_addr
    if isinstance(tf_config, str):
        env["TF_CONFIG"] = tf_config
    elif tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config, separators=(",", ":"), sort_keys=True)
    return env


def _check_nodes(membership: Membership, job: JobSpec) -> None:
    found = membership.node_count
    if found != job.node_count:
        fix = (f"start {job.node_count - found} more node(s)" if found < job.node_count
               else "list only the job's nodes")
        raise TopologyError(
            f"discovery ({membership.source}) found {found} node(s) "
            f"({', '.join(membership.hosts)}) but the job has node_count={job.node_count}; "
            f"{fix}, or set TFBUILD_NODES={found} if that is the intended size"
        )
    if not 0 <= membership.node_rank < found:
        raise TopologyError(
            f"node rank {membership.node_rank} is outside the {found} node(s) discovery "
            f"found ({membership.source})"
        )


def _counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {role}" for role, n in counts.items())


# --- mpi ------------------------------------------------------------------------------


def _mpi(membership: Membership, job: JobSpec) -> Plan:
    per_node = job.process_count_per_node
    hostfile = "".join(f"{host} slots={per_node}\n" for host in membership.hosts)
    return Plan(
        backend="mpi",
        node_rank=membership.node_rank,
        tasks=(),
        world_size=len(membership.hosts) * per_node,
        hostfile=hostfile,
        mpi_launcher=membership.node_rank == 0,
        details={"source": membership.source, "mapping": "by slot: rank r on node r // slots"},
        hosts=membership.hosts,
    )


def mpi_rank_env(rank: int, job: JobSpec, hosts: Sequence[str]) -> dict[str, str]:
    """The variables rank `rank` of an mpi job sees (mpirun --map-by slot, slots =
    process_count_per_node on every host), for the launcher to export."""
    per_node = job.process_count_per_node
    world = len(hosts) * per_node
    if not 0 <= rank < world:
        raise TopologyError(
            f"rank {rank} is outside the job's {len(hosts)} node(s) x {per_node} slot(s)"
        )
    return _task_env(f"rank-{rank}", rank, rank % per_node, world, per_node,
                     rank // per_node, hosts[0], job.port)


# --- launched by mpirun/srun: one agent per process ---------------------------------


def _launched(
    membership: Membership, job: JobSpec, placement: str | None, evaluator: bool
) -> Plan:
    process = membership.process
    assert process is not None  # plan() checked
    backend = job.distributed_backend
    if placement or evaluator:
        raise TopologyError(
            "mpirun/srun already started one process per task, so TFBUILD_PLACEMENT and "
            "TFBUILD_EVALUATOR cannot apply; unset them (the launcher's rank order decides)"
        )
    if backend == "ps":
        needed = 1 + job.worker_count + job.parameter_server_count
        if process.world_size != needed:
            raise TopologyError(
                f"the launcher started {process.world_size} process(es), but the ps layout "
                f"needs 1 chief + {job.worker_count} worker(s) + "
                f"{job.parameter_server_count} ps = {needed}; start {needed} tasks"
            )
    if backend not in ("ps", "multiworker"):
        # MPI-style jobs need no addresses of other ranks: take the launcher's word.
        env = _task_env(f"rank-{process.rank}", process.rank, process.local_rank,
                        process.world_size, process.local_size, membership.node_rank,
                        membership.hosts[0], job.port)
        return Plan(
            backend=backend,
            node_rank=membership.node_rank,
            tasks=(Task("rank", process.rank, process.rank, process.local_rank, env),),
            world_size=process.world_size,
            details={"source": membership.source, "launched_by": "an outside launcher"},
            hosts=membership.hosts,
        )
    if any(is_placeholder(h) for h in membership.hosts):
        raise TopologyError(
            f"TF_CONFIG needs every node's address, but the launcher did not say where the "
            f"other ranks run ({membership.source}); set TFBUILD_HOSTFILE to mpirun's hostfile"
        )
    # TF_CONFIG lists every rank's address, so the rank -> node mapping must be known.
    nodes = _rank_nodes(membership)
    if nodes[process.rank] != (membership.node_rank, process.local_rank):
        raise TopologyError(
            f"rank {process.rank} runs as local rank {process.local_rank} on node "
            f"{membership.node_rank}, but block order would put it at {nodes[process.rank]}; "
            "start ranks in block order (mpirun --map-by slot, srun -m block)"
        )
    layout = []
    for rank, (node, _local) in enumerate(nodes):
        role, index = _role_of_rank(rank, backend, job)
        layout.append(_Placed(role, index, rank, node))
    return _assemble(membership, job, _with_ports(layout, membership.hosts, job, backend),
                     only_rank=process.rank)


def _rank_nodes(membership: Membership) -> list[tuple[int, int]]:
    """(node, local rank) of every rank in block order, from slots or local_size."""
    process = membership.process
    assert process is not None
    slots = membership.slots
    if slots is None or sum(slots) != process.world_size:
        slots = (process.local_size,) * len(membership.hosts)
    out = [(node, local) for node, count in enumerate(slots) for local in range(count)]
    if len(out) < process.world_size:
        raise TopologyError(
            f"{process.world_size} processes do not fit {len(membership.hosts)} node(s) with "
            f"{list(slots)} slot(s) ({membership.source}); check the hostfile or node list"
        )
    return out[: process.world_size]


def _role_of_rank(rank: int, backend: str, job: JobSpec) -> tuple[str, int]:
    if backend == "multiworker":
        return "worker", rank
    if backend == "ps":
        if rank == 0:
            return "chief", 0
        if rank <= job.worker_count:
            return "worker", rank - 1
        return "ps", rank - 1 - job.worker_count
    return "rank", rank


# --- TF_CONFIG given from outside -----------------------------------------------------


def _passthrough(membership: Membership, job: JobSpec, evaluator: bool) -> Plan:
    config = dict(membership.tf_config or {})
    cluster = dict(config["cluster"])
    task = config["task"]
    role, index = str(task["type"]), int(task.get("index", 0))
    members = [(r, i, address) for r in TF_CONFIG_ORDER for i, address in _entries(cluster, r)]
    ranks = {(r, i): pos for pos, (r, i, _) in enumerate(members)}
    world = len(members)
    rank = ranks.get((role, index), world)  # an evaluator is outside the cluster
    master = split_host_port(members[0][2])[0] if members else None
    env = _task_env(f"{role}-{index}", rank, 0, world, 1, membership.node_rank, master,
                    job.port, json.dumps(config, separators=(",", ":")))
    roles = {r for r, _, _ in members}
    decisive = next((f"{r}-0" for r in ("chief", "master") if r in roles), "worker-0")
    servers = ()
    if "ps" in roles:
        servers = tuple(f"{r}-{i}" for r, i, _ in members if r in ("worker", "ps"))
    details: dict[str, Any] = {"source": membership.source, "tf_config": "passed through as given"}
    if evaluator:
        details["ignored"] = "TFBUILD_EVALUATOR: TF_CONFIG decides which tasks exist"
    return Plan(
        backend=job.distributed_backend,
        node_rank=membership.node_rank,
        tasks=(Task(role, index, rank, 0, env),),
        world_size=world,
        cluster=cluster,
        decisive_task=decisive,
        servers_only=servers,
        details=details,
        hosts=membership.hosts,
    )


def _entries(cluster: Mapping[str, Any], role: str) -> list[tuple[int, str]]:
    value = cluster.get(role) or []
    if isinstance(value, Mapping):  # TF's sparse cluster: {"3": "host:port"}
        return sorted((int(k), v) for k, v in value.items())
    return list(enumerate(value))
