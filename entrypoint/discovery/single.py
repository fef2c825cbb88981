"""Fallback, single: a one-node job needs no peers; it runs on localhost."""

from __future__ import annotations

from .context import DiscoveryContext
from .membership import Membership

NAME = "single"
LOOKS_FOR = "node_count 1 (nothing to discover)"


def discover(ctx: DiscoveryContext) -> Membership | None:
    if ctx.job.node_count != 1:
        return None
    return Membership(NAME, ("localhost",), 0, evidence=(("node_count", "1"),))
