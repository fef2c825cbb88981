"""Which network the job's nodes share, as a CIDR Open MPI can restrict TCP to.

Open MPI's `btl_tcp_if_include`/`oob_tcp_if_include` take interface names or CIDRs;
the names differ between nodes (eth0 here, ens5 there), the job's subnet does not.
Linux only (ioctl on interface names), which is where the agent runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct

SIOCGIFADDR = 0x8915
SIOCGIFNETMASK = 0x891B


def route_source(peer: str, port: int = 9) -> str | None:
    """This node's IPv4 address on the route to `peer` (no packet is sent)."""
    try:
        infos = socket.getaddrinfo(peer, port, socket.AF_INET, socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError):
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(infos[0][4])  # UDP connect only picks the route
        except OSError:
            return None
        return str(s.getsockname()[0])


def _ioctl_ipv4(sock: socket.socket, name: str, request: int) -> str | None:
    try:
        raw = fcntl.ioctl(sock.fileno(), request, struct.pack("256s", name.encode()[:15]))
    except OSError:
        return None
    return socket.inet_ntoa(raw[20:24])


def interfaces() -> list[tuple[str, str, str]]:
    """(name, IPv4 address, netmask) of every interface with an IPv4 address."""
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            addr = _ioctl_ipv4(s, name, SIOCGIFADDR)
            mask = _ioctl_ipv4(s, name, SIOCGIFNETMASK)
            if addr and mask:
                found.append((name, addr, mask))
    return found


def job_network(peer: str) -> tuple[str, str] | None:
    """(interface name, CIDR of its subnet) on the route to `peer`, or None if unknown."""
    source = route_source(peer)
    if source is None:
        return None
    for name, addr, mask in interfaces():
        if addr == source:
            with contextlib.suppress(ValueError):
                net = ipaddress.IPv4Network(f"{addr}/{mask}", strict=False)
                return name, str(net)
    return None
