"""Source 4, Slurm: the job's nodes from the variables slurmd sets for every task.

Applies when SLURM_JOB_ID or SLURM_PROCID is set (container runtimes such as
pyxis/enroot and Apptainer pass them through; with `docker run` add `-e`).

- nodes:  SLURM_STEP_NODELIST (the srun step), else SLURM_JOB_NODELIST / SLURM_NODELIST
          (the allocation); bracket ranges like `gpu[01-03,07],cpu5` are expanded.
- slots:  SLURM_STEP_TASKS_PER_NODE or SLURM_TASKS_PER_NODE, e.g. `2(x3),1`.
- this node: SLURM_NODEID, else SLURMD_NODENAME / the hostname found in the list.
- one agent per task: when srun runs more than one task on a node (SLURM_STEP_ID set
  and some node has more than one slot), each agent is one process:
  rank SLURM_PROCID, world SLURM_STEP_NUM_TASKS / SLURM_NTASKS, local rank SLURM_LOCALID.
  With one task per node the agent starts process_count_per_node processes itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..errors import DiscoveryError
from ..hostlist import expand_hostlist, expand_tasks_per_node
from .context import DiscoveryContext
from .envvars import first_set, read_int
from .membership import Membership, ProcessIdentity
from .selfmatch import own_positions

NAME = "slurm"
LOOKS_FOR = (
    "SLURM_JOB_ID or SLURM_PROCID, with SLURM_STEP_NODELIST or SLURM_JOB_NODELIST "
    "(srun sets them; pass them into the container)"
)
NODELIST_VARS = ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")
# Tasks-per-node that belongs to each node list (the step's counts go with the step's nodes).
TASKS_VARS = {
    "SLURM_STEP_NODELIST": ("SLURM_STEP_TASKS_PER_NODE",),
    "SLURM_JOB_NODELIST": ("SLURM_TASKS_PER_NODE", "SLURM_JOB_TASKS_PER_NODE"),
    "SLURM_NODELIST": ("SLURM_TASKS_PER_NODE",),
}


def applies(env: Mapping[str, str]) -> bool:
    return bool(first_set(env, "SLURM_JOB_ID", "SLURM_JOBID", "SLURM_PROCID"))


def discover(ctx: DiscoveryContext) -> Membership | None:
    if not applies(ctx.env):
        return None
    found = nodes(ctx.env)
    if found is None:
        raise DiscoveryError(
            "this runs in a Slurm job (SLURM_JOB_ID/SLURM_PROCID is set) but none of "
            f"{', '.join(NODELIST_VARS)} is; pass them into the container "
            "(e.g. docker run -e SLURM_STEP_NODELIST ...) or name the nodes with TFBUILD_HOSTS"
        )
    list_var, hosts = found
    slots = slots_for(ctx.env, list_var, len(hosts), ctx.log)
    node_rank = node_rank_of(ctx, hosts, list_var)
    evidence = [(list_var, ctx.env[list_var])]
    evidence += [(v, ctx.env[v]) for v in ("SLURM_NODEID", "SLURM_PROCID", "SLURM_JOB_ID",
                                             *TASKS_VARS[list_var]) if v in ctx.env]
    return Membership(
        source=NAME,
        hosts=tuple(hosts),
        node_rank=node_rank,
        slots=slots,
        process=task_process(ctx.env, slots, node_rank),
        evidence=tuple(evidence),
    )


def nodes(env: Mapping[str, str]) -> tuple[str, list[str]] | None:
    """(variable, expanded hosts) from the most specific node list that is set."""
    found = first_set(env, *NODELIST_VARS)
    if found is None:
        return None
    var, text = found
    try:
        return var, expand_hostlist(text)
    except ValueError as e:
        raise DiscoveryError(f"{var}={text!r} is not a Slurm host list: {e}") from None


def slots_for(
    env: Mapping[str, str],
    list_var: str,
    node_count: int,
    log: Callable[[str], None] | None = None,
) -> tuple[int, ...] | None:
    found = first_set(env, *TASKS_VARS[list_var])
    if found is None:
        return None
    var, text = found
    try:
        counts = expand_tasks_per_node(text)
    except ValueError as e:
        raise DiscoveryError(f"{var}={text!r} is not a Slurm task count list: {e}") from None
    if len(counts) != node_count:
        # Happens when only some variables were passed into the container; slots are
        # informative, so go on without them rather than guess.
        if log is not None:
            log(f"{var}={text} has {len(counts)} entries for {node_count} nodes; ignoring it")
        return None
    return tuple(counts)


def node_rank_of(ctx: DiscoveryContext, hosts: list[str], list_var: str) -> int:
    node_id = read_int(ctx.env, "SLURM_NODEID")
    if node_id is not None:
        if node_id >= len(hosts):
            raise DiscoveryError(
                f"SLURM_NODEID={node_id} but {list_var} names {len(hosts)} node(s): "
                f"{','.join(hosts)}; pass the step's variables (SLURM_STEP_NODELIST) too"
            )
        return node_id
    name = ctx.env.get("SLURMD_NODENAME") or ctx.hostname
    found = own_positions(hosts, name, ctx.own_addresses)
    if len(found) != 1:
        raise DiscoveryError(
            f"SLURM_NODEID is not set and node {name!r} is "
            f"{'not' if not found else 'more than once'} in {list_var}={ctx.env[list_var]}; "
            "pass SLURM_NODEID into the container"
        )
    return found[0]


def task_process(
    env: Mapping[str, str], slots: tuple[int, ...] | None, node_rank: int
) -> ProcessIdentity | None:
    """This agent's identity when srun started one agent per task, else None."""
    in_step = first_set(env, "SLURM_STEP_ID", "SLURM_STEPID") is not None
    if not in_step or slots is None or max(slots) <= 1:
        return None
    rank = read_int(env, "SLURM_PROCID")
    world = read_int(env, "SLURM_STEP_NUM_TASKS", 1) or read_int(env, "SLURM_NTASKS", 1)
    world = world or sum(slots)
    local_rank = read_int(env, "SLURM_LOCALID")
    if rank is None or local_rank is None:
        raise DiscoveryError(
            "srun runs several tasks per node here, but SLURM_PROCID or SLURM_LOCALID is not "
            "set; pass both into the container so each agent knows its process"
        )
    if rank >= world or local_rank >= slots[node_rank]:
        raise DiscoveryError(
            f"SLURM_PROCID={rank}/SLURM_LOCALID={local_rank} do not fit a step of {world} "
            f"task(s) with {slots[node_rank]} on this node"
        )
    return ProcessIdentity(rank, world, local_rank, slots[node_rank])
