"""Source 6, DNS: all containers of the job share one name that resolves to all of them.

`TFBUILD_DNS_NAME=trainers` names a Docker network alias (`docker run --network-alias
trainers`) or a Kubernetes headless Service (give it `publishNotReadyAddresses: true`
so pods appear before they are ready). The name is resolved again and again, with
backoff and within TFBUILD_DISCOVERY_TIMEOUT, until it gives exactly node_count
addresses. Hosts are those IPs in numeric order, so every node computes the same list;
this node is the position of its own IP.
"""

from __future__ import annotations

from ..errors import DiscoveryError, DiscoveryTimeout
from ..hostlist import sort_addresses
from .context import DiscoveryContext
from .membership import Membership

NAME = "dns"
LOOKS_FOR = "TFBUILD_DNS_NAME=<network alias or headless Service>"
VAR = "TFBUILD_DNS_NAME"
FIRST_DELAY = 0.5
MAX_DELAY = 5.0
PROGRESS_EVERY = 30.0  # seconds between progress lines while nothing changes


def discover(ctx: DiscoveryContext) -> Membership | None:
    name = ctx.env.get(VAR, "").strip()
    if not name:
        return None
    addresses = wait_for_peers(ctx, name, ctx.job.node_count)
    own = set(ctx.own_addresses())
    mine = [i for i, ip in enumerate(addresses) if ip in own]
    if len(mine) != 1:
        where = "not among" if not mine else "several times among"
        raise DiscoveryError(
            f"this container's addresses ({', '.join(sorted(own)) or 'none found'}) are "
            f"{where} the {len(addresses)} that {name} resolves to ({', '.join(addresses)}); "
            f"give this container the name too (docker run --network-alias {name}) "
            "or use the network the others are on"
        )
    return Membership(
        source=NAME,
        hosts=tuple(addresses),
        node_rank=mine[0],
        evidence=((VAR, name), ("resolved", ", ".join(addresses))),
    )


def wait_for_peers(ctx: DiscoveryContext, name: str, expected: int) -> list[str]:
    """Resolve `name` until it gives `expected` addresses, or raise DiscoveryTimeout."""
    deadline = ctx.monotonic() + ctx.timeout
    delay = FIRST_DELAY
    last_count, last_log = -1, ctx.monotonic()
    while True:
        found = _resolve(ctx, name)
        now = ctx.monotonic()
        if len(found) == expected:
            ctx.log(f"{expected}/{expected} peers resolved for {name}: {', '.join(found)}")
            return found
        if len(found) != last_count or now - last_log >= PROGRESS_EVERY:
            ctx.log(f"{len(found)}/{expected} peers resolved for {name}"
                    + (f": {', '.join(found)}" if found else ""))
            last_count, last_log = len(found), now
        if now >= deadline:
            raise DiscoveryTimeout(_timeout_message(ctx.timeout, name, expected, found))
        ctx.sleep(min(delay, deadline - now))
        delay = min(delay * 1.5, MAX_DELAY)


def _resolve(ctx: DiscoveryContext, name: str) -> list[str]:
    try:
        return sort_addresses(ctx.resolve(name))
    except (OSError, ValueError) as e:
        ctx.log(f"resolving {name} failed ({e}); retrying")
        return []


def _timeout_message(timeout: float, name: str, expected: int, found: list[str]) -> str:
    listed = ", ".join(found) if found else "none"
    if len(found) > expected:
        hint = (
            "more containers carry this name than the job has nodes: another job shares "
            f"the alias, or node_count is wrong (TFBUILD_NODES={len(found)}?)"
        )
    else:
        hint = (
            f"{expected - len(found)} container(s) are missing: start them with "
            f"--network-alias {name} on the same network, or raise TFBUILD_DISCOVERY_TIMEOUT"
        )
    return (
        f"waited {timeout:g}s for {expected} peers behind DNS name {name!r}, "
        f"found {len(found)} ({listed}); {hint}"
    )
