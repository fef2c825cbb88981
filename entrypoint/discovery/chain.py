"""The discovery chain: try each source in a fixed order; the first that applies wins.

Order (docs/discovery.md explains each):
  1 explicit, 2 tf_config, 3 mpi, 4 slurm, 5 kubernetes, 6 dns,
  7 rendezvous (supplied by the caller), then `single` for one-node jobs.
A source that applies but is misconfigured raises at once: falling through to a later
source would hide the user's mistake behind a different, confusing one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..errors import DiscoveryError
from . import dns, explicit, kubernetes, mpi, single, slurm, tf_config
from .context import DiscoveryContext
from .membership import Membership

Source = Callable[[DiscoveryContext], "Membership | None"]

SOURCES = (explicit, tf_config, mpi, slurm, kubernetes, dns)
RENDEZVOUS_NAME = "rendezvous"
RENDEZVOUS_LOOKS_FOR = (
    "TFBUILD_RENDEZVOUS=host:port of the serving node, with TFBUILD_JOB_TOKEN "
    "(or TFBUILD_TRUST_NETWORK=1)"
)
ORDER = (*(source.NAME for source in SOURCES), RENDEZVOUS_NAME, single.NAME)


def discover(ctx: DiscoveryContext, rendezvous: Source | None = None) -> Membership:
    """This node's Membership from the first source that applies."""
    for source in SOURCES:
        found = source.discover(ctx)
        if found is not None:
            return _announce(ctx, found)
    if rendezvous is not None:
        found = rendezvous(ctx)
        if found is not None:
            return _announce(ctx, found)
    found = single.discover(ctx)
    if found is not None:
        return _announce(ctx, found)
    raise DiscoveryError(nothing_found_message(ctx.job.node_count))


def nothing_found_message(node_count: int) -> str:
    lines = [
        f"this job has {node_count} nodes, but nothing tells the agent who the peers are. "
        "It looked for (in this order):"
    ]
    looks = [(s.NAME, s.LOOKS_FOR) for s in SOURCES] + [(RENDEZVOUS_NAME, RENDEZVOUS_LOOKS_FOR)]
    lines += [f"  {i}. {name}: {what}" for i, (name, what) in enumerate(looks, start=1)]
    lines.append(
        "Set one of them, or TFBUILD_NODES=1 for a single-node run "
        "(`tfbuild-agent describe` shows what each source saw)."
    )
    return "\n".join(lines)


def describe(ctx: DiscoveryContext) -> dict[str, Any]:
    """What every source sees here, without waiting: for `tfbuild-agent describe`.

    Waiting sources get one attempt (timeout 0). The rendezvous is not joined: joining
    would make this node take part in the job.
    """
    quick = replace(ctx, timeout=0.0, sleep=lambda _seconds: None, log=lambda _message: None)
    reports: list[dict[str, Any]] = []
    chosen: str | None = None
    for source in SOURCES:
        report = _probe(source, quick)
        reports.append(report)
        if chosen is None and report["applies"]:
            chosen = source.NAME
    configured = bool(ctx.env.get("TFBUILD_RENDEZVOUS", "").strip())
    reports.append({
        "source": RENDEZVOUS_NAME,
        "looks_for": RENDEZVOUS_LOOKS_FOR,
        "applies": configured,
        "why": "TFBUILD_RENDEZVOUS is set (not joined by describe)"
        if configured else "TFBUILD_RENDEZVOUS is not set",
    })
    if chosen is None and configured:
        chosen = RENDEZVOUS_NAME
    reports.append(_probe(single, quick))
    if chosen is None and reports[-1]["applies"]:
        chosen = single.NAME
    return {"order": list(ORDER), "chosen": chosen, "sources": reports}


def _probe(source: Any, ctx: DiscoveryContext) -> dict[str, Any]:
    report: dict[str, Any] = {"source": source.NAME, "looks_for": source.LOOKS_FOR}
    try:
        found = source.discover(ctx)
    except DiscoveryError as e:
        report.update(applies=True, error=str(e))
        return report
    if found is None:
        report.update(applies=False, why=f"not found: {source.LOOKS_FOR}")
    else:
        report.update(applies=True, membership=found.describe())
    return report


def _announce(ctx: DiscoveryContext, found: Membership) -> Membership:
    hosts = list(found.hosts)
    shown = ", ".join(hosts if len(hosts) <= 8 else [*hosts[:8], f"... ({len(hosts)} in all)"])
    ctx.log(
        f"discovery: {found.source} found {len(hosts)} node(s) [{shown}]; "
        f"this is node {found.node_rank} ({hosts[found.node_rank]})"
    )
    return found
