"""BuildSpec, the validated spec, and the names of its keys (with the hints for
Azure ML estimator parameters that tfbuild spells differently or does not use)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tfbuild_agent.inputs.plan import Input

from ..credentials import redact_url

DERIVED = MappingProxyType({"derived": True})
"""Field metadata: computed from other inputs, not a key of tfbuild.yaml."""


def _empty_map() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, repr=False)
class BuildSpec:
    source_directory: Path
    entry_script: str
    """A relative .py or .sh path inside source_directory, or `-m package.module`."""
    tensorflow_version: str
    python_version: str
    script_params: tuple[str, ...] = ()
    pip_packages: tuple[str, ...] = ()
    conda_packages: tuple[str, ...] = ()
    conda_channels: tuple[str, ...] = ()
    """Channel names, URLs, or absolute paths of local channels."""
    apt_packages: tuple[str, ...] = ()
    use_gpu: bool = False
    custom_docker_base_image: str | None = None
    distributed_backend: str = "none"
    node_count: int = 1
    process_count_per_node: int = 1
    worker_count: int = 1
    parameter_server_count: int = 0
    environment_variables: Mapping[str, str] = field(default_factory=_empty_map, hash=False)
    labels: Mapping[str, str] = field(default_factory=_empty_map, hash=False)
    horovod: bool = False
    pip_index_url: str | None = None
    pip_extra_index_urls: tuple[str, ...] = ()
    ca_certs: tuple[Path, ...] = ()
    trust_host_ca: bool = False
    tag: str | None = None
    upload_extras: tuple[str, ...] = ()
    keras: str = "legacy"
    inputs: tuple[Input, ...] = ()
    """Data inputs: `{download: URI}` script params and the `inputs:` mapping."""
    pip_requirements_file: str | None = None
    """A requirements.txt in the source directory (posix path relative to it)."""
    conda_dependencies_file: str | None = None
    """An environment.yml in the source directory (posix path relative to it)."""
    max_run_duration_seconds: int | None = None
    shm_size: str | None = None
    """Docker's --shm-size notation (e.g. 2g); the default `tfbuild run` uses."""
    export_onnx: Mapping[str, Any] | None = field(default=None, hash=False)
    """{opset, model, fail_job} when the agent exports the model to ONNX; None: it does not."""
    pip_requirements: tuple[str, ...] = field(default=(), metadata=DERIVED)
    """The requirement lines read from pip_requirements_file and the environment file's
    pip section, flattened (not a key: derived from the files)."""
    pip_constraints: tuple[str, ...] = field(default=(), metadata=DERIVED)
    """Constraint lines from their `-c` files (derived)."""
    notes: tuple[str, ...] = field(default=(), compare=False)
    """Warnings for the user (not part of the spec: left out of to_dict)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, with credentials in URLs redacted (for labels and `tfbuild inspect`)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "notes":
                continue
            value = getattr(self, f.name)
            if f.name in URL_FIELDS:
                value = _redact_any(value)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = [
                    str(v) if isinstance(v, Path) else v.to_dict() if isinstance(v, Input) else v
                    for v in value
                ]
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out

    def __repr__(self) -> str:
        # Built from to_dict so that index credentials never reach a log.
        inner = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"BuildSpec({inner})"


URL_FIELDS = frozenset({"pip_index_url", "pip_extra_index_urls", "conda_channels"})
KEYS = tuple(
    f.name
    for f in fields(BuildSpec)
    if f.name not in ("source_directory", "notes") and not f.metadata.get("derived")
)
"""The keys tfbuild.yaml may hold."""

ESTIMATOR_HINTS = {
    "framework_version": "tfbuild calls it tensorflow_version",
    "custom_docker_image": "tfbuild calls it custom_docker_base_image",
    "distributed_training": (
        "use distributed_backend (mpi, ps or multiworker) with node_count, "
        "process_count_per_node, worker_count and parameter_server_count"
    ),
    "pip_requirements_file_path": "tfbuild calls it pip_requirements_file",
    "conda_dependencies_file_path": "tfbuild calls it conda_dependencies_file",
    "image_registry_details": "set tag to the image name and log in with `docker login`",
    "source_directory": "the folder holding tfbuild.yaml is the source directory; remove it",
}
"""Estimator parameters that tfbuild spells differently or does not use."""

AZURE_ONLY = (
    "compute_target",
    "vm_size",
    "vm_priority",
    "use_docker",
    "resume_from",
    "source_directory_data_store",
    "user_managed",
    "environment_definition",
)


def _redact_any(value: Any) -> Any:
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, tuple):
        return tuple(_redact_any(v) for v in value)
    return value
