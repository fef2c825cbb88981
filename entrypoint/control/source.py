"""The control plane's two entry points for the runner.

- `RendezvousSource`: the discovery source for TFBUILD_RENDEZVOUS=host:port (plain
  `docker run` on separate hosts). The node that owns host:port serves, every node
  joins, and the join returns the job's Membership. The source object keeps the
  channel the join opened; the runner passes it on to `open_control` (no hidden state).
- `open_control`: the job control channel for a membership any source found; without
  a rendezvous, node 0 serves on job.control_port and the others connect to hosts[0].
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from ..discovery.membership import Membership
from ..errors import DiscoveryError
from ..jobspec import JobSpec
from .channel import ControlChannel
from .client import _as_log, join_rendezvous
from .config import parse_address, settings_from_env


class RendezvousSource:
    """Discovery-chain entry: applies when TFBUILD_RENDEZVOUS is set.

    Called with a DiscoveryContext (env, job, hostname, timeout, log, sleep, monotonic).
    After a join, `channel` holds the formed channel for `open_control(formed=...)`.
    """

    NAME = "rendezvous"

    def __init__(self) -> None:
        self.channel: ControlChannel | None = None

    def __call__(self, ctx: Any) -> Membership | None:
        value = ctx.env.get("TFBUILD_RENDEZVOUS", "")
        if not value:
            return None
        if self.channel is not None:
            raise DiscoveryError(
                "this rendezvous source already joined a job; make a new RendezvousSource "
                "for another join"
            )
        host, port = parse_address(value, ctx.job.control_port)
        settings = settings_from_env(
            ctx.env, host=host, port=port, node_count=ctx.job.node_count, hostname=ctx.hostname
        )
        self.channel = join_rendezvous(
            settings, ctx.log, timeout=ctx.timeout, sleep=ctx.sleep, monotonic=ctx.monotonic
        )
        return self.channel.membership


def open_control(
    membership: Membership,
    job: JobSpec,
    env: Mapping[str, str],
    log: Callable[[str], None],
    *,
    timeout: float,
    decisive_task: str | None = None,
    hostname: str | None = None,
    formed: ControlChannel | None = None,
) -> ControlChannel:
    """The job control channel for a formed membership.

    `formed` is the channel a rendezvous join already opened (RendezvousSource.channel):
    it is used as it is. Otherwise node 0 serves on job.control_port and the others
    connect to hosts[0]. A single node, or one agent per process under mpirun/srun
    (whose launcher already stops the other processes), gets a channel with no peers.
    """
    say = _as_log(log)
    if formed is not None:
        channel = formed
    elif membership.source == "rendezvous":
        # Serving again on the control port would stand up a second, empty job.
        raise DiscoveryError(
            "a rendezvous membership needs the channel its join opened: pass "
            "RendezvousSource.channel as open_control(formed=...)"
        )
    elif membership.node_count <= 1 or membership.process is not None:
        channel = ControlChannel.solo(membership, say)
    else:
        settings = settings_from_env(
            env,
            host=membership.hosts[0],
            port=job.control_port,
            node_count=membership.node_count,
            hostname=hostname or socket.gethostname(),
            node_rank=membership.node_rank,
        )
        settings = replace(settings, serve=membership.node_rank == 0)
        channel = join_rendezvous(settings, say, timeout=timeout, hosts=membership.hosts)
        channel.membership = membership  # discovery's view stays the reference
    channel.decisive_task = decisive_task
    return channel
