"""Which GPUs this container sees, and which one each local process gets.

The NVIDIA container runtime exposes devices as /dev/nvidia<N> and says which in
NVIDIA_VISIBLE_DEVICES; CUDA_VISIBLE_DEVICES, when the user set it, narrows them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

_DEVICE = re.compile(r"^nvidia(\d+)$")


def visible_gpus(env: Mapping[str, str], dev_entries: Iterable[str]) -> list[str]:
    """GPU ids processes may use, in order (pure: pass os.listdir('/dev'))."""
    cuda = env.get("CUDA_VISIBLE_DEVICES")
    if cuda is not None:
        return [g.strip() for g in cuda.split(",") if g.strip() and g.strip() != "-1"]
    found = sorted(int(m.group(1)) for e in dev_entries if (m := _DEVICE.match(e)))
    return [str(i) for i in range(len(found))]


def processes_per_node(requested: int, explicit: bool, use_gpu: bool, gpus: Sequence[str]) -> int:
    """One process per GPU by default on GPU jobs; an explicit count always wins."""
    if use_gpu and not explicit and requested == 1 and len(gpus) > 1:
        return len(gpus)
    return requested


def device_for(local_rank: int, local_size: int, gpus: Sequence[str]) -> str | None:
    """CUDA_VISIBLE_DEVICES for one local process: its own GPU(s), split evenly."""
    if not gpus or local_size <= 1:
        return None
    per = max(1, len(gpus) // local_size)
    start = (local_rank * per) % len(gpus)
    return ",".join(gpus[start:start + per])
