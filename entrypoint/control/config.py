"""TFBUILD_* environment -> the settings of the rendezvous and the job control channel.

Pure: reads a mapping, returns a frozen dataclass or raises ConfigError.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ConfigError
from ..settings import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_HEARTBEAT_MISSES,
    parse_bool,
    parse_float,
    parse_int,
)

DEFAULT_PROGRESS_INTERVAL = 10.0


@dataclass(frozen=True)
class ChannelSettings:
    """How this node takes part in the job's rendezvous/control channel."""

    host: str
    """Where the serving node listens (rendezvous host, or hosts[0] without rendezvous)."""
    port: int
    node_count: int
    identity: str
    """Stable name of this node: TFBUILD_NODE_ID, else the hostname. Ranks sort by it."""
    token: str | None
    node_rank: int | None = None
    """Explicit rank (TFBUILD_NODE_RANK, or the rank discovery already found)."""
    advertise: str | None = None
    """Address the other nodes use for this one; None = what the server sees."""
    serve: bool | None = None
    """True: serve; False: only join; None: serve if this node can bind host:port."""
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    heartbeat_misses: int = DEFAULT_HEARTBEAT_MISSES
    progress_interval: float = DEFAULT_PROGRESS_INTERVAL

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def loss_bound(self) -> float:
        """Silence after which a peer (or the server) counts as lost."""
        return self.heartbeat_interval * self.heartbeat_misses


def parse_address(value: str, default_port: int) -> tuple[str, int]:
    """`host`, `host:port` or `[v6]:port` -> (host, port)."""
    text = value.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else rest
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ConfigError(
            f"TFBUILD_RENDEZVOUS={value!r} has no host; set it to host:port of the serving node"
        )
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(
            f"TFBUILD_RENDEZVOUS={value!r} has an invalid port {port_text!r}; "
            "use host:port with a port between 1 and 65535"
        )
    return host, int(port_text)


def job_token(env: Mapping[str, str], node_count: int) -> str | None:
    """The shared job token, or None when the user declared the network trusted.

    A multi-node job without a token would let anything that reaches the port join
    the job or stop it, so the agent refuses unless told the network is trusted.
    """
    token = env.get("TFBUILD_JOB_TOKEN", "")
    if token:
        return token
    if node_count > 1 and not parse_bool(env, "TFBUILD_TRUST_NETWORK", False):
        raise ConfigError(
            f"this is a {node_count}-node job and TFBUILD_JOB_TOKEN is not set, so the agent "
            "refuses to start: set TFBUILD_JOB_TOKEN to the same secret on every node "
            "(for example the output of `openssl rand -hex 32`), or set "
            "TFBUILD_TRUST_NETWORK=1 if the network between the nodes is trusted"
        )
    return None


def settings_from_env(
    env: Mapping[str, str],
    *,
    host: str,
    port: int,
    node_count: int,
    hostname: str,
    node_rank: int | None = None,
) -> ChannelSettings:
    """Everything but the address comes from TFBUILD_* variables."""
    token = job_token(env, node_count)
    rank = node_rank
    if rank is None and env.get("TFBUILD_NODE_RANK", "") != "":
        rank = parse_int(env, "TFBUILD_NODE_RANK", 0, minimum=0)
    if rank is not None and rank >= node_count:
        raise ConfigError(
            f"node rank {rank} does not fit a {node_count}-node job; ranks run from 0 to "
            f"{node_count - 1} (check TFBUILD_NODE_RANK and TFBUILD_NODES)"
        )
    serve = None
    if env.get("TFBUILD_RENDEZVOUS_SERVE", "") != "":
        serve = parse_bool(env, "TFBUILD_RENDEZVOUS_SERVE", False)
    elif rank is not None:
        serve = rank == 0
    interval = parse_float(
        env, "TFBUILD_HEARTBEAT_INTERVAL", DEFAULT_HEARTBEAT_INTERVAL, positive=True
    )
    misses = parse_int(env, "TFBUILD_HEARTBEAT_MISSES", DEFAULT_HEARTBEAT_MISSES, minimum=1)
    return ChannelSettings(
        host=host,
        port=port,
        node_count=node_count,
        identity=env.get("TFBUILD_NODE_ID", "") or hostname,
        token=token,
        node_rank=rank,
        advertise=env.get("TFBUILD_ADVERTISE_ADDR", "") or None,
        serve=serve,
        heartbeat_interval=interval,
        heartbeat_misses=misses,
    )
