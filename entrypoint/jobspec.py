"""The job as the agent sees it: baked into the image at /etc/tfbuild/job.json by
`tfbuild image`, then overridden by TFBUILD_* environment variables at run time.

Pure: `load_job(baked, env)` takes a dict and a mapping and returns a JobSpec.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .contract import BACKENDS, DEFAULT_CONTROL_PORT, DEFAULT_TF_PORT
from .errors import ConfigError

BAKED_JOB_PATH = Path("/etc/tfbuild/job.json")


@dataclass(frozen=True)
class JobSpec:
    entry_script: str = "train.py"
    """A .py file, a .sh file, or `-m package.module`; relative to workdir."""
    script_params: tuple[str, ...] = ()
    """Baked default arguments; `docker run IMAGE ARGS` are merged over them."""
    distributed_backend: str = "none"
    node_count: int = 1
    process_count_per_node: int = 1
    worker_count: int = 1
    parameter_server_count: int = 0
    use_gpu: bool = False
    port: int = DEFAULT_TF_PORT
    control_port: int = DEFAULT_CONTROL_PORT
    python: str = "/opt/tfbuild/venv/bin/python"
    workdir: str = "/app"
    environment: Mapping[str, str] = field(default_factory=dict)
    inputs: tuple[Mapping[str, Any], ...] = ()
    """Data inputs (name, uri, mode, arg); see inputs/plan.py. TFBUILD_INPUTS overrides."""
    max_run_duration_seconds: int | None = None
    """The agent stops the tasks after this long (max_run_duration_seconds); None: no limit."""
    export_onnx: Mapping[str, Any] | None = None
    """{opset, model, fail_job}: rank 0 exports the saved model to ONNX after success."""

    def to_json(self) -> str:
        data = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self).items()}
        data["environment"] = dict(self.environment)
        data["inputs"] = [dict(i) for i in self.inputs]
        if not self.inputs:
            del data["inputs"]  # images without inputs keep the job.json they had
        return json.dumps(data, indent=2, sort_keys=True)


def export_setting(text: str) -> dict[str, Any] | None:
    """TFBUILD_EXPORT_ONNX: 0/no turns the export off, 1/yes turns it on with the
    defaults, a JSON object sets its options (opset, model, fail_job)."""
    word = text.strip().lower()
    if word in ("0", "no", "false", "off"):
        return None
    if word in ("1", "yes", "true", "on"):
        return {"opset": 17, "model": None, "fail_job": False}
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict) or set(value) - {"opset", "model", "fail_job"}:
        raise ValueError(text)
    return {"opset": 17, "model": None, "fail_job": False, **value}


export_setting.__name__ = "0, 1 or a JSON object of opset/model/fail_job"

# TFBUILD_* variable -> (JobSpec field, converter)
_ENV_OVERRIDES: dict[str, tuple[str, Any]] = {
    "TFBUILD_BACKEND": ("distributed_backend", str),
    "TFBUILD_NODES": ("node_count", int),
    "TFBUILD_PROCS_PER_NODE": ("process_count_per_node", int),
    "TFBUILD_WORKERS": ("worker_count", int),
    "TFBUILD_PS": ("parameter_server_count", int),
    "TFBUILD_PORT": ("port", int),
    "TFBUILD_CONTROL_PORT": ("control_port", int),
    "TFBUILD_ENTRY_SCRIPT": ("entry_script", str),
    "TFBUILD_MAX_RUN_DURATION_SECONDS": ("max_run_duration_seconds", int),
    "TFBUILD_EXPORT_ONNX": ("export_onnx", export_setting),
}


def load_job(baked: Mapping[str, Any] | None, env: Mapping[str, str]) -> JobSpec:
    """Baked job.json contents + TFBUILD_* overrides -> validated JobSpec."""
    known = {f for f in JobSpec.__dataclass_fields__}
    data = dict(baked or {})
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"job.json has unknown keys {unknown}; rebuild the image with this tfbuild version"
        )
    if "script_params" in data:
        data["script_params"] = tuple(str(a) for a in data["script_params"])
    if "inputs" in data:
        data["inputs"] = tuple(dict(i) if isinstance(i, Mapping) else i for i in data["inputs"])
    job = JobSpec(**data)
    for var, (name, conv) in _ENV_OVERRIDES.items():
        if var in env and env[var] != "":
            try:
                job = replace(job, **{name: conv(env[var])})
            except ValueError:
                raise ConfigError(
                    f"{var}={env[var]!r} is not a valid {conv.__name__}; "
                    f"set it to a {conv.__name__} or unset it"
                ) from None
    return validate_job(job)


def validate_job(job: JobSpec) -> JobSpec:
    from .inputs.plan import from_job

    from_job(job.inputs)
    if job.distributed_backend not in BACKENDS:
        raise ConfigError(
            f"distributed_backend {job.distributed_backend!r} is unknown; "
            f"use one of {', '.join(BACKENDS)}"
        )
    limit = job.max_run_duration_seconds
    if limit is not None and limit < 1:
        raise ConfigError(
            f"max_run_duration_seconds is {limit}; it must be at least 1 (unset it for no limit)"
        )
    for name in ("node_count", "process_count_per_node"):
        if getattr(job, name) < 1:
            raise ConfigError(f"{name} is {getattr(job, name)}; it must be at least 1")
    if job.distributed_backend == "ps" and (
        job.worker_count < 1 or job.parameter_server_count < 1
    ):
        raise ConfigError(
            "the ps backend needs worker_count >= 1 and parameter_server_count >= 1 "
            f"(got {job.worker_count} and {job.parameter_server_count})"
        )
    return job


def read_baked_job(path: Path = BAKED_JOB_PATH) -> dict[str, Any] | None:
    """The job.json baked into the image, or None outside a tfbuild image."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON ({e}); rebuild the image") from None
