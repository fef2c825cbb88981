"""Source 2, TF_CONFIG: something already told TensorFlow the cluster (Kubeflow TFJob,
Azure ML, a hand-written job). It is kept exactly as it is; this source only reads it.

Hosts, one entry per task in a stable order: chief, master (TF1 name, accepted as input
only), worker, ps, each by index; addresses lose their `:port`. An evaluator is not a
peer, so it is left out of that list; on the evaluator itself its own address is
appended last so that node_rank points at it. node_rank is this task's position.
A cluster role may also be a sparse mapping {"1": "host:port"} (TF's sparse cluster).
`TF_CONFIG` that is empty or has no `cluster` does not count as set.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import DiscoveryError
from ..hostlist import split_host_port
from .context import DiscoveryContext
from .membership import Membership

NAME = "tf_config"
LOOKS_FOR = "TF_CONFIG with a cluster and a task (Kubeflow TFJob, Azure ML)"
VAR = "TF_CONFIG"
HOST_ORDER = ("chief", "master", "worker", "ps")
TASK_TYPES = (*HOST_ORDER, "evaluator")


def discover(ctx: DiscoveryContext) -> Membership | None:
    text = ctx.env.get(VAR, "").strip()
    if not text:
        return None
    config = parse(text)
    if not config.get("cluster"):
        return None
    cluster = config["cluster"]
    if not isinstance(cluster, Mapping):
        raise DiscoveryError(f"{VAR} 'cluster' must be an object of role -> addresses")
    task_type, task_index = read_task(config)
    members = cluster_members(cluster)
    hosts = [host for _, _, host in members]
    if task_type == "evaluator":
        hosts.append(_evaluator_host(cluster, task_index, ctx.hostname))
        node_rank = len(hosts) - 1
    else:
        positions = {(role, index): pos for pos, (role, index, _) in enumerate(members)}
        if (task_type, task_index) not in positions:
            count = sum(1 for role, _, _ in members if role == task_type)
            raise DiscoveryError(
                f"{VAR} says this is task {task_type} {task_index}, but its cluster has "
                f"{count} {task_type} entr{'y' if count == 1 else 'ies'}; "
                "fix task.index or the cluster"
            )
        node_rank = positions[(task_type, task_index)]
    return Membership(
        source=NAME,
        hosts=tuple(hosts),
        node_rank=node_rank,
        tf_config=config,
        evidence=((VAR, text),),
    )


def parse(text: str) -> dict[str, Any]:
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        before, after = text[max(0, e.pos - 30) : e.pos], text[e.pos : e.pos + 30]
        raise DiscoveryError(
            f"{VAR} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno} "
            f"(character {e.pos}): ...{before}<here>{after}... "
            "Check the quoting where TF_CONFIG is set (it must be one JSON object)"
        ) from None
    if not isinstance(config, dict):
        raise DiscoveryError(
            f"{VAR} must be a JSON object like "
            '{"cluster": {...}, "task": {"type": "worker", "index": 0}}, '
            f"not a {type(config).__name__}"
        )
    return config


def read_task(config: Mapping[str, Any]) -> tuple[str, int]:
    task = config.get("task")
    if not isinstance(task, Mapping) or "type" not in task:
        raise DiscoveryError(
            f'{VAR} has a cluster but no "task": {{"type": ..., "index": ...}}; '
            "every task of the job needs its own TF_CONFIG saying which one it is"
        )
    task_type, index = task["type"], task.get("index", 0)
    if task_type not in TASK_TYPES:
        raise DiscoveryError(
            f"{VAR} task type {task_type!r} is not one of {', '.join(TASK_TYPES)}"
        )
    if isinstance(index, str) and index.isdigit():
        index = int(index)
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise DiscoveryError(f"{VAR} task index {index!r} is not a whole number >= 0")
    return task_type, index


def cluster_members(cluster: Mapping[str, Any]) -> list[tuple[str, int, str]]:
    """(role, index, host) for every peer, in HOST_ORDER then index order."""
    members = []
    for role in HOST_ORDER:
        for index, address in role_addresses(cluster, role):
            members.append((role, index, _host(address, role, index)))
    return members


def role_addresses(cluster: Mapping[str, Any], role: str) -> list[tuple[int, str]]:
    entries = cluster.get(role) or []
    if isinstance(entries, Mapping):  # sparse: {"0": "host:port", "3": ...}
        try:
            return sorted((int(k), v) for k, v in entries.items())
        except ValueError:
            raise DiscoveryError(
                f"{VAR} cluster.{role} is a mapping whose keys are not task indices"
            ) from None
    if not isinstance(entries, list):
        raise DiscoveryError(f"{VAR} cluster.{role} must be a list of host:port strings")
    return list(enumerate(entries))


def _host(address: Any, role: str, index: int) -> str:
    if not isinstance(address, str):
        raise DiscoveryError(f"{VAR} cluster.{role}[{index}] is {address!r}, not 'host:port'")
    try:
        return split_host_port(address)[0]
    except ValueError as e:
        raise DiscoveryError(f"{VAR} cluster.{role}[{index}]: {e}") from None


def _evaluator_host(cluster: Mapping[str, Any], index: int, hostname: str) -> str:
    for i, address in role_addresses(cluster, "evaluator"):
        if i == index:
            return _host(address, "evaluator", index)
    return hostname
