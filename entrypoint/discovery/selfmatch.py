"""Which of the job's hosts is this node: by hostname, short hostname, or own IP."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def own_positions(
    hosts: Sequence[str], hostname: str, own_addresses: Callable[[], list[str]]
) -> list[int]:
    """Positions in `hosts` that name this node, trying the most exact rule first.

    1. the full hostname; 2. the first label (`node1` matches `node1.cluster.local`);
    3. one of this container's IP addresses (looked up only if 1 and 2 find nothing).
    """
    wanted = hostname.lower()
    exact = [i for i, host in enumerate(hosts) if host.lower() == wanted]
    if exact:
        return exact
    short = wanted.split(".", 1)[0]
    by_label = [i for i, host in enumerate(hosts) if host.lower().split(".", 1)[0] == short]
    if by_label and not short.isdigit():  # "10" is the first label of an IP, not a name
        return by_label
    mine = set(own_addresses())
    return [i for i, host in enumerate(hosts) if host in mine]
