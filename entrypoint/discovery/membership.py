"""What discovery finds: the nodes of the job and where this container stands.

Every discovery source returns a `Membership`; topology turns it into tasks.
Pure data, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ProcessIdentity:
    """Set when an outside launcher (mpirun, srun) already started one agent per process."""

    rank: int
    world_size: int
    local_rank: int
    local_size: int


@dataclass(frozen=True)
class Membership:
    source: str
    """Which discovery source found it: explicit, hostfile, tf_config, mpi, slurm,
    kubernetes, dns, rendezvous or single."""
    hosts: tuple[str, ...]
    """Node addresses (hostname or IP, no port), index = node rank."""
    node_rank: int
    slots: tuple[int, ...] | None = None
    """Processes per node, when the source says (hostfile slots, SLURM_TASKS_PER_NODE)."""
    process: ProcessIdentity | None = None
    tf_config: Mapping[str, Any] | None = None
    """An existing TF_CONFIG to keep exactly as it is (Kubeflow TFJob, Azure ML)."""
    evidence: tuple[tuple[str, str], ...] = field(default=())
    """(variable or file, value) pairs that led here, for `tfbuild-agent describe`."""

    @property
    def node_count(self) -> int:
        return len(self.hosts)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source,
            "hosts": list(self.hosts),
            "node_rank": self.node_rank,
        }
        if self.slots is not None:
            out["slots"] = list(self.slots)
        if self.process is not None:
            out["process"] = vars(self.process)
        if self.tf_config is not None:
            out["tf_config"] = dict(self.tf_config)
        out["evidence"] = dict(self.evidence)
        return out
