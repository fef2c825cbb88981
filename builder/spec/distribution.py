"""How the job is distributed: `distributed_backend`, the counts (`node_count`,
`process_count_per_node`, `worker_count`, `parameter_server_count`) and `horovod`.

A count the chosen backend does not use is an error naming the backend that would
use it (no key silently does nothing)."""

from __future__ import annotations

from tfbuild_agent.contract import BACKENDS

from .compat import Matrix, TFRelease
from .fields import Fields

COUNT_DEFAULTS = {
    "node_count": 1,
    "process_count_per_node": 1,
    "worker_count": 1,
    "parameter_server_count": 0,
}

USED_BY = {
    "process_count_per_node": ("none", "mpi", "multiworker"),
    "worker_count": ("ps",),
    "parameter_server_count": ("ps",),
}
"""Counts that only some backends read (node_count applies to every backend)."""


def _either(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def backend(f: Fields) -> str:
    value = f.text("distributed_backend", "none").lower()
    if value not in BACKENDS:
        raise f.fail(
            "distributed_backend",
            value,
            f"{value!r} is not a backend",
            f"use one of {', '.join(BACKENDS)}",
        )
    return value


def counts(f: Fields, chosen: str) -> dict[str, int]:
    out = {
        "node_count": f.count("node_count", 1, 1),
        "process_count_per_node": f.count("process_count_per_node", 1, 1),
        "worker_count": f.count("worker_count", 1, 0),
        "parameter_server_count": f.count("parameter_server_count", 0, 0),
    }
    for key, users in USED_BY.items():
        if chosen not in users and f.given(key) and out[key] != COUNT_DEFAULTS[key]:
            raise f.fail(
                key,
                out[key],
                f"the {chosen} backend does not use {key}; only {_either(users)} would",
                f"remove {key}, or set distributed_backend to {_either(users)}",
            )
    if chosen == "ps":
        for key, what in (("worker_count", "worker"), ("parameter_server_count", "server")):
            if out[key] < 1:
                raise f.fail(
                    key,
                    out[key],
                    f"the ps backend needs at least one parameter {what}, got {out[key]}"
                    if what == "server"
                    else f"the ps backend needs at least one worker, got {out[key]}",
                    f"set {key}: 1 or more, or use another distributed_backend",
                )
    return out


def horovod(f: Fields, matrix: Matrix, chosen: str, release: TFRelease, keras: str) -> bool:
    explicit = f.given("horovod")
    wanted = f.flag("horovod", chosen == "mpi")
    if not wanted:
        return False
    if chosen != "mpi":
        raise f.fail(
            "horovod",
            True,
            f"Horovod runs under MPI, but distributed_backend is {chosen!r}",
            "set distributed_backend: mpi, or remove horovod",
        )
    support = release.horovod
    if not support.supported:
        key = "horovod" if explicit else "distributed_backend"
        buildable = matrix.horovod_tf_versions()
        raise f.fail(
            key,
            True if explicit else chosen,
            f"Horovod cannot be built against TensorFlow {release.version} ({support.reason})",
            f"use a tensorflow_version Horovod builds against ({', '.join(buildable)}), "
            "or distributed_backend: multiworker, or horovod: false for an mpi4py-only image",
        )
    if not support.verified:
        f.notes.append(
            f"Horovod {support.version} with TensorFlow {release.version} is not verified "
            f"({support.reason}); the image build checks it"
        )
    if keras == "keras3" and release.ships_keras3:
        f.notes.append(
            "horovod.tensorflow.keras needs legacy Keras; with keras: keras3 use "
            "horovod.tensorflow directly"
        )
    return True
