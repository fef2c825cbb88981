"""Source 1, explicit: the user lists the nodes.

- `TFBUILD_HOSTS=h1,h2,h3`: node addresses in rank order, no ports. Slurm-style
  ranges work too (`trainer[0-3].lab`); IPv6 literals are written bare (`fd00::2`).
  This node is `TFBUILD_NODE_RANK`, or the entry that matches its hostname or IP.
- `TFBUILD_HOSTFILE=/path`: an MPI-style hostfile (`host slots=N`, `host:N`, comments);
  its slots say how many processes each node runs.

If the agent was itself started by mpirun (OMPI_COMM_WORLD_* or PMI_* set), the
process identity is taken from there as well.
"""

from __future__ import annotations

import ipaddress

from ..errors import DiscoveryError
from ..hostlist import expand_hostlist, parse_hostfile
from . import mpi
from .context import DiscoveryContext
from .envvars import read_int
from .membership import Membership
from .selfmatch import own_positions

NAME = "explicit"
LOOKS_FOR = "TFBUILD_HOSTS=h1,h2,... (with TFBUILD_NODE_RANK) or TFBUILD_HOSTFILE=/path"
HOSTS_VAR = "TFBUILD_HOSTS"
HOSTFILE_VAR = "TFBUILD_HOSTFILE"
RANK_VAR = "TFBUILD_NODE_RANK"


def discover(ctx: DiscoveryContext) -> Membership | None:
    hosts_text = ctx.env.get(HOSTS_VAR, "").strip()
    hostfile = ctx.env.get(HOSTFILE_VAR, "").strip()
    if not hosts_text and not hostfile:
        return None
    if hosts_text and hostfile:
        raise DiscoveryError(
            f"both {HOSTS_VAR} and {HOSTFILE_VAR} are set; they would compete as the list of "
            "nodes, so set only one of them"
        )
    evidence: list[tuple[str, str]] = []
    if hosts_text:
        hosts, slots, where = parse_hosts_var(hosts_text), None, HOSTS_VAR
        source = "explicit"
        evidence.append((HOSTS_VAR, hosts_text))
    else:
        hosts, slots = read_hostfile(ctx, hostfile, HOSTFILE_VAR)
        where, source = f"{HOSTFILE_VAR}={hostfile}", "hostfile"
        evidence.append((HOSTFILE_VAR, hostfile))
    node_rank = node_rank_among(ctx, hosts, where)
    if RANK_VAR in ctx.env:
        evidence.append((RANK_VAR, ctx.env[RANK_VAR]))
    process = mpi.launcher_process(ctx.env, ctx.job)
    return Membership(
        source=source,
        hosts=tuple(hosts),
        node_rank=node_rank,
        slots=slots,
        process=process,
        evidence=tuple(evidence),
    )


def parse_hosts_var(text: str) -> list[str]:
    try:
        hosts = expand_hostlist(text)
    except ValueError as e:
        raise DiscoveryError(
            f"{HOSTS_VAR}={text!r} cannot be read: {e}. "
            "Write node addresses separated by commas, e.g. TFBUILD_HOSTS=10.0.0.1,10.0.0.2"
        ) from None
    for host in hosts:
        if ":" in host and not _is_ip(host):
            raise DiscoveryError(
                f"{HOSTS_VAR} entry {host!r} has a port; list node addresses only: the "
                "ports come from TFBUILD_PORT (default 2222) and are spread over the tasks"
            )
        if any(c.isspace() for c in host):
            raise DiscoveryError(
                f"{HOSTS_VAR} entry {host!r} contains a space; separate hosts with commas"
            )
    return hosts


def read_hostfile(
    ctx: DiscoveryContext, path: str, var: str
) -> tuple[list[str], tuple[int, ...] | None]:
    """Hosts and slots of an MPI hostfile named by `var`; errors say which file and line."""
    text = ctx.read_file(path)
    if text is None:
        raise DiscoveryError(
            f"{var}={path} cannot be read; mount the hostfile into the container "
            f"(docker run -v ...) or unset {var}"
        )
    try:
        entries = parse_hostfile(text)
    except ValueError as e:
        raise DiscoveryError(f"hostfile {path} ({var}): {e}") from None
    if not entries:
        raise DiscoveryError(f"hostfile {path} ({var}) lists no hosts; add `host slots=N` lines")
    hosts = [host for host, _ in entries]
    if all(slots is None for _, slots in entries):
        return hosts, None
    return hosts, tuple(slots or 1 for _, slots in entries)


def node_rank_among(ctx: DiscoveryContext, hosts: list[str], where: str) -> int:
    """TFBUILD_NODE_RANK if set, else the one entry of `hosts` that is this node."""
    rank = read_int(ctx.env, RANK_VAR)
    if rank is not None:
        if rank >= len(hosts):
            raise DiscoveryError(
                f"{RANK_VAR}={rank} but {where} names only {len(hosts)} node(s) "
                f"(ranks 0..{len(hosts) - 1})"
            )
        return rank
    found = own_positions(hosts, ctx.hostname, ctx.own_addresses)
    if len(found) == 1:
        return found[0]
    if not found:
        raise DiscoveryError(
            f"this node (hostname {ctx.hostname!r}, addresses {ctx.own_addresses()}) is not "
            f"among the nodes of {where}: {', '.join(hosts)}. Set {RANK_VAR} to its position "
            "(0-based) or list it under a name it answers to"
        )
    raise DiscoveryError(
        f"this node (hostname {ctx.hostname!r}) matches several entries of {where} "
        f"(positions {found}); set {RANK_VAR} to say which one it is"
    )


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
