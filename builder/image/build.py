"""`tfbuild image`: spec -> build context -> Dockerfile -> engine build -> tag -> push."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfbuild_agent.jobspec import JobSpec

from .. import console
from ..credentials import ca_bundle_files, pip_conf_text
from ..engine.bootstrap import base_image_exists, make_base_image
from ..engine.build import BuildResult, build_image, push_image
from ..engine.buildlog import format_seconds
from ..engine.setup import engine_client, image_attrs
from ..spec import BuildSpec
from .agent_bundle import add_agent
from .context import BuildContext, source_excludes
from .render import (
    TFBUILD_BASE_PREFIX,
    ImageLayers,
    horovod_patch_files,
    image_layers,
    render_dockerfile,
    requirements_files,
)

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
SPEC_LABEL = "io.tfbuild.spec"
"""The image label holding the spec it was built from (written by render.image_layers)."""


@dataclass
class PreparedBuild:
    context: BuildContext
    layers: ImageLayers
    dockerfile: str


def job_for(spec: BuildSpec) -> JobSpec:
    """The part of the spec the agent needs at run time (baked as job.json)."""
    return JobSpec(
        entry_script=spec.entry_script,
        script_params=tuple(spec.script_params),
        distributed_backend=spec.distributed_backend,
        node_count=spec.node_count,
        process_count_per_node=spec.process_count_per_node,
        worker_count=spec.worker_count,
        parameter_server_count=spec.parameter_server_count,
        use_gpu=spec.use_gpu,
        inputs=tuple(i.to_dict() for i in spec.inputs),
        max_run_duration_seconds=spec.max_run_duration_seconds,
        export_onnx=dict(spec.export_onnx) if spec.export_onnx else None,
    )


def prepare(spec: BuildSpec) -> PreparedBuild:
    """Everything that goes to the engine, computed without touching it."""
    ctx = BuildContext()
    ctx.add_tree(spec.source_directory, "src", source_excludes(spec.source_directory))
    source_digest = ctx.digest("src/")
    vendored = add_agent(ctx, "tfbuild/agent", tuple(spec.upload_extras), spec.python_version)
    ctx.add_bytes("tfbuild/job.json", job_for(spec).to_json().encode() + b"\n")
    extra_ca = [*spec.ca_certs, *([HOST_CA_BUNDLE] if spec.trust_host_ca else [])]
    for name, pem in ca_bundle_files(extra_ca).items():
        ctx.add_bytes(f"tfbuild/ca/{name}", pem)
    conf = pip_conf_text(spec.pip_index_url, spec.pip_extra_index_urls)
    if conf:
        ctx.add_bytes("tfbuild/pip/pip.conf", conf.encode())
    if spec.conda_packages:
        from .conda import add_conda_request

        add_conda_request(ctx, spec)
    layers = image_layers(spec, source_digest=source_digest, has_pip_conf=bool(conf),
                          agent_vendored=vendored)
    for path, data in {**horovod_patch_files(layers), **requirements_files(spec)}.items():
        ctx.add_bytes(path, data)
    dockerfile = render_dockerfile(layers)
    ctx.add_bytes("Dockerfile", dockerfile.encode())
    return PreparedBuild(ctx, layers, dockerfile)


def default_tag(spec: BuildSpec) -> str:
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in spec.source_directory.name)
    return f"tfbuild/{name.lower().strip('-.') or 'train'}:latest"


def build(
    spec: BuildSpec,
    *,
    tag: str | None = None,
    push: bool = False,
    quiet: bool = False,
    nocache: bool = False,
    progress: str = "auto",
) -> tuple[str, BuildResult]:
    tag = tag or spec.tag or default_tag(spec)
    prepared = prepare(spec)
    if not quiet:
        for note in spec.notes:
            console.note(note)
    client = engine_client()
    base = prepared.layers.base_image
    if base.startswith(TFBUILD_BASE_PREFIX) and not base_image_exists(base):
        console.step(f"base image {base} is missing: making it offline with debootstrap")
        make_base_image(suite=base.removeprefix(TFBUILD_BASE_PREFIX), tag=base)
    if not quiet:
        console.step(f"building {tag} ({len(prepared.context.files)} files in the context)")
    suite = base.removeprefix(TFBUILD_BASE_PREFIX) if base.startswith(TFBUILD_BASE_PREFIX) else ""
    result = build_image(
        client,
        prepared.context.tar_bytes(),
        tag,
        quiet=quiet,
        nocache=nocache,
        progress=progress,
        suite=suite or "of your base image",
    )
    size = client.images.get(tag).attrs.get("Size", 0)
    cache_note = (
        "every step came from the cache"
        if result.cached_steps >= result.steps - _from_count(prepared.dockerfile)
        else f"{result.cached_steps}/{result.steps} steps from the cache"
    )
    if not quiet:
        console.step(f"built {tag} in {format_seconds(result.seconds)} ({cache_note}), "
                     f"{size / 1e6:.0f} MB")
        console.note(f"full log: {result.log_path}")
    if push:
        if not quiet:
            console.step(f"pushing {tag}")
        digest = push_image(client, tag, quiet=quiet, progress=progress)
        if not quiet:
            console.step(f"pushed {tag}@{digest}" if digest else f"pushed {tag}")
    return tag, result


def _from_count(dockerfile: str) -> int:
    return sum(1 for line in dockerfile.splitlines() if line.startswith("FROM "))


def recorded_spec(attrs: dict) -> dict[str, Any]:
    """The spec an image was built from (its io.tfbuild.spec label), {} if it has none."""
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    try:
        return json.loads(labels.get(SPEC_LABEL) or "{}")
    except ValueError:
        return {}


def inspect_labels(image: str) -> dict[str, object]:
    attrs = image_attrs(engine_client(), image)
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    out: dict[str, object] = {k: v for k, v in labels.items() if k != SPEC_LABEL}
    if SPEC_LABEL in labels:
        out["spec"] = recorded_spec(attrs)
    out["id"] = attrs["Id"]
    out["size_mb"] = round(attrs.get("Size", 0) / 1e6)
    return out
