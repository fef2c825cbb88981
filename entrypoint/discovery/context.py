"""Everything a discovery source may look at, passed in so sources stay testable.

Sources never read os.environ, files, DNS or the clock directly: they use the
callables here, which tests replace (no real waiting, no real network).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..errors import ConfigError
from ..hostlist import sort_addresses
from ..jobspec import JobSpec

DEFAULT_TIMEOUT = 300.0
TIMEOUT_VAR = "TFBUILD_DISCOVERY_TIMEOUT"


def resolve_addresses(name: str) -> list[str]:
    """All IPs `name` resolves to, numerically sorted; [] while it does not resolve.

    IPv4 first: a dual-stack Docker network gives each container one A and one AAAA
    record, and counting both would double the peers. IPv6 only if there is no A record.
    """
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            infos = socket.getaddrinfo(name, None, family, socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            continue
        found = [str(info[4][0]).split("%", 1)[0] for info in infos]
        if found:
            return sort_addresses(found)
    return []


def parse_fib_trie(text: str) -> list[str]:
    """IPv4 addresses of this network namespace from /proc/net/fib_trie (`/32 host LOCAL`)."""
    found, last = [], None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|--"):
            last = stripped[3:].split()[0]
        elif stripped.startswith("/32 host LOCAL") and last:
            found.append(last)
    return found


def parse_if_inet6(text: str) -> list[str]:
    """IPv6 addresses from /proc/net/if_inet6 (32 hex digits per line)."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if fields and len(fields[0]) == 32:
            found.append(str(ipaddress.IPv6Address(int(fields[0], 16))))
    return found


def local_addresses() -> list[str]:
    """This container's IPs: kernel's local table plus what its hostname resolves to."""
    found: list[str] = []
    for path, parse in (("/proc/net/fib_trie", parse_fib_trie),
                        ("/proc/net/if_inet6", parse_if_inet6)):
        text = read_text_or_none(path)
        if text:
            found.extend(parse(text))
    found.extend(resolve_addresses(socket.gethostname()))
    return sort_addresses(found)


def read_text_or_none(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def log_to_stderr(message: str) -> None:
    print(f"tfbuild-agent: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class DiscoveryContext:
    env: Mapping[str, str]
    job: JobSpec
    hostname: str
    timeout: float = DEFAULT_TIMEOUT
    """Upper bound in seconds for any wait a source makes (TFBUILD_DISCOVERY_TIMEOUT)."""
    resolve: Callable[[str], list[str]] = resolve_addresses
    own_addresses: Callable[[], list[str]] = local_addresses
    read_file: Callable[[str], str | None] = read_text_or_none
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    log: Callable[[str], None] = log_to_stderr

    @classmethod
    def from_environ(
        cls, job: JobSpec, env: Mapping[str, str] | None = None
    ) -> DiscoveryContext:
        """The real context: process environment, real DNS, files and clock.

        The hostname is $HOSTNAME when set (Kubernetes and Docker set it to the pod or
        container name), else the kernel's.
        """
        env = dict(os.environ if env is None else env)
        return cls(
            env=env,
            job=job,
            hostname=env.get("HOSTNAME") or socket.gethostname(),
            timeout=parse_timeout(env),
        )


def parse_timeout(env: Mapping[str, str]) -> float:
    text = env.get(TIMEOUT_VAR, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ConfigError(
            f"{TIMEOUT_VAR}={text!r} is not a number of seconds; "
            f"set it to e.g. 600 or unset it for the default {DEFAULT_TIMEOUT:g}"
        )
    return value
