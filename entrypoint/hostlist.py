"""Host list notations the schedulers use, parsed into plain Python lists.

Pure functions; they raise ValueError with a message naming the bad part, and the
discovery source that called them adds which variable or file it came from.

- Slurm host lists:      `gpu[01-03,07],cpu5` -> gpu01 gpu02 gpu03 gpu07 cpu5
- Slurm task counts:     `2(x3),1` -> 2 2 2 1
- MPI hostfiles:         `host slots=N`, `host:N`, `host`, `# comments`
- Addresses with ports:  `host:2222`, `[fe80::1]:2222`, `10.0.0.1`
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

PLACEHOLDER_DOMAIN = "invalid"
"""Hosts a source could not learn are named `node-<i>.invalid`: RFC 6761 reserves
`.invalid` so such a name can never resolve to a wrong machine by accident."""


def expand_hostlist(text: str) -> list[str]:
    """Expand a Slurm host list, keeping order, zero padding and duplicates.

    Supports several bracket groups in one name (`r[1-2]-n[01-02]` is the product,
    the later group varying fastest, as Slurm prints it).
    """
    hosts: list[str] = []
    for item in _split_top_level(text.strip()):
        if not item:
            raise ValueError(f"empty entry in host list {text!r}")
        hosts.extend(_expand_one(item))
    return hosts


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside brackets."""
    items, depth, start = [], 0, 0
    for pos, char in enumerate(text):
        if char == "[":
            depth += 1
            if depth > 1:
                raise ValueError(f"nested '[' at position {pos} in {text!r}")
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"']' without '[' at position {pos} in {text!r}")
        elif char == "," and depth == 0:
            items.append(text[start:pos].strip())
            start = pos + 1
    if depth != 0:
        raise ValueError(f"'[' is never closed in {text!r}")
    items.append(text[start:].strip())
    return items


def _expand_one(item: str) -> list[str]:
    match = re.search(r"\[([^\]]*)\]", item)
    if match is None:
        return [item]
    head, tail = item[: match.start()], item[match.end() :]
    return [head + n + rest for n in _expand_range_list(match.group(1), item)
            for rest in _expand_one(tail)]


def _expand_range_list(ranges: str, item: str) -> list[str]:
    out: list[str] = []
    for part in ranges.split(","):
        part = part.strip()
        low, sep, high = part.partition("-")
        if not low.isdigit() or (sep and not high.isdigit()):
            raise ValueError(f"{part!r} in {item!r} is not a number or a range like 01-03")
        if not sep:
            out.append(low)
            continue
        if int(high) < int(low):
            raise ValueError(f"range {part!r} in {item!r} counts backwards")
        # Slurm pads to the width of the lower bound: [01-10] -> 01..10, [8-10] -> 8..10.
        out.extend(str(n).zfill(len(low)) for n in range(int(low), int(high) + 1))
    return out


def expand_tasks_per_node(text: str) -> list[int]:
    """`2(x3),1` -> [2, 2, 2, 1] (SLURM_TASKS_PER_NODE, SLURM_STEP_TASKS_PER_NODE)."""
    counts: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:\(x(\d+)\))?\s*", part)
        if match is None:
            raise ValueError(f"{part!r} in {text!r} is neither N nor N(xM)")
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    return counts


def parse_hostfile(text: str) -> list[tuple[str, int | None]]:
    """MPI hostfile text -> [(host, slots or None)], one entry per distinct host.

    Accepts Open MPI lines (`host slots=4 max_slots=8`), the MPICH/Intel MPI
    shorthand (`host:4`), bare hosts, comments and blank lines. A host listed twice
    is one node whose slots add up, as in Open MPI.
    """
    merged: dict[str, int | None] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        host, slots = _parse_hostfile_line(line, number)
        if host not in merged:
            merged[host] = slots
        elif merged[host] is not None or slots is not None:
            # A line without slots counts as one slot once any line states slots.
            merged[host] = (merged[host] or 1) + (slots or 1)
    return list(merged.items())


def _parse_hostfile_line(line: str, number: int) -> tuple[str, int | None]:
    first, *options = line.split()
    slots: int | None = None
    host = first
    shorthand = re.fullmatch(r"(.+?):(\d+)", first)
    if shorthand and not _is_ipv6(first):
        host, slots = shorthand.group(1), int(shorthand.group(2))
    for option in options:
        key, sep, value = option.partition("=")
        if key in ("slots", "max_slots", "max-slots"):
            if not sep or not value.isdigit():
                raise ValueError(f"line {number}: {option!r} needs a whole number, e.g. slots=4")
            if key == "slots":
                slots = int(value)
        else:
            raise ValueError(
                f"line {number}: unknown option {option!r}; expected `host slots=N` or `host:N`"
            )
    if slots == 0:
        raise ValueError(f"line {number}: {host} has 0 slots")
    return host, slots


def split_host_port(address: str) -> tuple[str, int | None]:
    """`host:2222` -> ('host', 2222); `[fe80::1]:2222` -> ('fe80::1', 2222); bare -> None."""
    text = address.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host:
        raise ValueError(f"{address!r} has no host")
    if port and not port.isdigit():
        raise ValueError(f"{address!r} has a port that is not a number")
    return host, int(port) if port else None


def join_host_port(host: str, port: int) -> str:
    """Inverse of split_host_port; IPv6 literals get brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


def sort_addresses(addresses: Iterable[str]) -> list[str]:
    """Distinct IPs in numeric order (10.0.0.9 before 10.0.0.10), IPv4 before IPv6."""
    unique = {ipaddress.ip_address(a) for a in addresses}
    return [str(a) for a in sorted(unique, key=lambda a: (a.version, int(a)))]


def placeholder_host(node: int) -> str:
    return f"node-{node}.{PLACEHOLDER_DOMAIN}"


def is_placeholder(host: str) -> bool:
    return host.endswith("." + PLACEHOLDER_DOMAIN)
