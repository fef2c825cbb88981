"""Source 3, MPI: the agent was started by mpirun (Open MPI) or an MPICH/PMI launcher.

Every process then carries its identity, and the agent runs exactly that one process:
- Open MPI: OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE.
- PMI (MPICH Hydra, Intel MPI, `srun --mpi=pmi2`): PMI_RANK, PMI_SIZE; local rank from
  MPI_LOCALRANKID/MPI_LOCALNRANKS (Hydra) or SLURM_LOCALID.
- Without local values, `--map-by slot` is assumed: process_count_per_node ranks per node.

Hosts, in this order: the hostfile mpirun was given (OMPI_MCA_orte_default_hostfile,
OMPI_MCA_prte_default_hostfile, PRTE_MCA_prte_default_hostfile, HYDRA_HOST_FILE) when
readable here; the Slurm node list when inside a Slurm job; otherwise placeholders
`node-<i>.invalid` (this node gets its own hostname). Placeholders never resolve, and
topology leaves MASTER_ADDR unset rather than point it at one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..errors import DiscoveryError
from ..hostlist import parse_hostfile, placeholder_host
from ..jobspec import JobSpec
from . import slurm
from .context import DiscoveryContext
from .envvars import first_set, read_int
from .membership import Membership, ProcessIdentity
from .selfmatch import own_positions

NAME = "mpi"
LOOKS_FOR = (
    "OMPI_COMM_WORLD_RANK and OMPI_COMM_WORLD_SIZE (mpirun), or PMI_RANK and PMI_SIZE "
    "(Hydra, srun --mpi=pmi2)"
)
HOSTFILE_VARS = (
    "OMPI_MCA_orte_default_hostfile",
    "OMPI_MCA_prte_default_hostfile",
    "PRTE_MCA_prte_default_hostfile",
    "HYDRA_HOST_FILE",
)
_FLAVOURS = (
    # rank var, size var, local rank vars, local size vars
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
     ("OMPI_COMM_WORLD_LOCAL_RANK",), ("OMPI_COMM_WORLD_LOCAL_SIZE",)),
    ("PMI_RANK", "PMI_SIZE", ("MPI_LOCALRANKID", "SLURM_LOCALID"), ("MPI_LOCALNRANKS",)),
)


def launcher_process(env: Mapping[str, str], job: JobSpec) -> ProcessIdentity | None:
    """The process identity an MPI launcher gave this agent, or None without one."""
    for rank_var, size_var, local_rank_vars, local_size_vars in _FLAVOURS:
        rank = read_int(env, rank_var)
        if rank is None:
            continue
        size = read_int(env, size_var, minimum=1)
        if size is None:
            raise DiscoveryError(
                f"{rank_var} is set but {size_var} is not; both come from the MPI launcher, "
                "so pass both into the container (mpirun -x, or the runtime's env passing)"
            )
        if rank >= size:
            raise DiscoveryError(f"{rank_var}={rank} is not below {size_var}={size}")
        local_size = _first_int(env, local_size_vars, 1) or _slurm_local_size(env)
        local_size = local_size or min(job.process_count_per_node, size)
        local_rank = _first_int(env, local_rank_vars, 0)
        local_rank = rank % local_size if local_rank is None else local_rank
        if local_rank >= local_size:
            raise DiscoveryError(
                f"local rank {local_rank} is not below the local size {local_size} "
                f"({', '.join(local_rank_vars + local_size_vars)})"
            )
        return ProcessIdentity(rank, size, local_rank, local_size)
    return None


def discover(ctx: DiscoveryContext) -> Membership | None:
    process = launcher_process(ctx.env, ctx.job)
    if process is None:
        return None
    evidence = [(v, ctx.env[v]) for flavour in _FLAVOURS for v in (
        flavour[0], flavour[1], *flavour[2], *flavour[3]) if v in ctx.env]
    hosts, slots, where = _hosts_from_hostfile(ctx, evidence)
    slurm_nodes = slurm.nodes(ctx.env) if slurm.applies(ctx.env) else None
    if hosts is None and slurm_nodes is not None:
        where, hosts = slurm_nodes
        slots = slurm.slots_for(ctx.env, where, len(hosts), ctx.log)
        evidence.append((where, ctx.env[where]))
    if hosts is None:
        node_count = math.ceil(process.world_size / process.local_size)
        node_rank = process.rank // process.local_size
        hosts = [placeholder_host(i) for i in range(node_count)]
        hosts[node_rank] = ctx.hostname
        evidence.append(("hosts", "placeholders: no readable hostfile and no Slurm node list"))
        return Membership(NAME, tuple(hosts), node_rank, None, process, None, tuple(evidence))
    node_rank = _node_rank(ctx, hosts, slots, process, where)
    return Membership(NAME, tuple(hosts), node_rank, slots, process, None, tuple(evidence))


def _hosts_from_hostfile(
    ctx: DiscoveryContext, evidence: list[tuple[str, str]]
) -> tuple[list[str] | None, tuple[int, ...] | None, str]:
    for var in HOSTFILE_VARS:
        path = ctx.env.get(var, "").strip()
        if not path:
            continue
        text = ctx.read_file(path)
        if text is None:
            # mpirun's hostfile usually lives on the launcher only; that is normal.
            evidence.append((var, f"{path} (not readable here)"))
            continue
        try:
            entries = parse_hostfile(text)
        except ValueError as e:
            raise DiscoveryError(f"hostfile {path} ({var}): {e}") from None
        if entries:
            evidence.append((var, path))
            slots = None
            if any(s is not None for _, s in entries):
                slots = tuple(s or 1 for _, s in entries)
            return [h for h, _ in entries], slots, f"{var}={path}"
    return None, None, ""


def _node_rank(
    ctx: DiscoveryContext,
    hosts: list[str],
    slots: tuple[int, ...] | None,
    process: ProcessIdentity,
    where: str,
) -> int:
    """This node's position: SLURM_NODEID under Slurm, else its name, else its rank's slot."""
    if where in slurm.NODELIST_VARS and read_int(ctx.env, "SLURM_NODEID") is not None:
        return slurm.node_rank_of(ctx, hosts, where)
    found = own_positions(hosts, ctx.hostname, ctx.own_addresses)
    if len(found) == 1:
        return found[0]
    # By-slot mapping (mpirun --map-by slot, Slurm's block distribution).
    per_node = list(slots) if slots else [process.local_size] * len(hosts)
    end = 0
    for node, count in enumerate(per_node):
        end += count
        if process.rank < end:
            return node
    raise DiscoveryError(
        f"rank {process.rank} of {process.world_size} does not fit the {sum(per_node)} slots "
        f"of {where}, and hostname {ctx.hostname!r} is not listed there; "
        "check that mpirun got the same hostfile"
    )


def _first_int(env: Mapping[str, str], names: tuple[str, ...], minimum: int) -> int | None:
    found = first_set(env, *names)
    return None if found is None else read_int(env, found[0], minimum)


def _slurm_local_size(env: Mapping[str, str]) -> int | None:
    """Tasks on this node of the srun step, for PMI launches that do not say it."""
    found = slurm.nodes(env) if slurm.applies(env) else None
    node_id = read_int(env, "SLURM_NODEID")
    if found is None or node_id is None:
        return None
    slots = slurm.slots_for(env, found[0], len(found[1]))
    return slots[node_id] if slots and node_id < len(slots) else None
