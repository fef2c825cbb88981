"""Spec -> Dockerfile text. Pure: `image_layers(spec)` decides what each layer
holds (reading the compat matrix), `render_dockerfile(layers)` fills the Jinja2
templates in base-images/. Golden-tested in tests/unit/test_render.py."""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from .. import __version__
from ..spec import BuildSpec, compat

VENV = "/opt/tfbuild/venv"
LAYERS = "/opt/tfbuild/layers"
AGENT_VENV = "/opt/tfbuild/agent"
WORKDIR = "/app"
# What `tfbuild base` puts into its image (see bootstrap.BASE_PACKAGES): builds on
# it need no apt step for Python.
TFBUILD_BASE_PREFIX = "tfbuild/debian:"
PYTHON_OS_PACKAGES = ("python3", "python3-venv", "ca-certificates")
MPI_RUNTIME_PACKAGES = ("openmpi-bin",)
HOROVOD_PATCH_CONTEXT = "tfbuild/patches/horovod"
SHM_SIZE_LABEL = "io.tfbuild.shm-size"
"""The image's shm_size, for schedulers and `docker inspect` (tfbuild run reads it from
the spec label)."""
REQUIREMENTS_CONTEXT = "tfbuild/requirements"
"""The flattened dependency-file lists in the build context (requirements.txt,
constraints.txt): the only files the user-package layer copies, so editing code
leaves it cached."""


@dataclass(frozen=True)
class MpiLayer:
    mpi4py: str
    build_packages: tuple[str, ...]
    horovod_version: str | None = None
    horovod_build_requirements: tuple[str, ...] = ()
    horovod_env: dict[str, str] = field(default_factory=dict)
    horovod_patches: tuple[str, ...] = ()
    """Applied to the sdist in this order; empty: the unpatched release from PyPI."""
    horovod_cuda_keyring: str = ""
    """GPU images: NVIDIA's apt keyring package, for nvcc and NCCL (build stage only)."""


@dataclass(frozen=True)
class CondaLayer:
    packages: tuple[str, ...]
    channels: tuple[str, ...]
    installer: str


@dataclass(frozen=True)
class ImageLayers:
    """Everything the templates need, decided up front (templates hold no policy)."""

    base_image: str
    base_is_tfbuild: bool
    os_packages: tuple[str, ...]
    tensorflow_version: str
    gpu: bool
    tf_requirements: tuple[str, ...]
    tf_nodeps_requirements: tuple[str, ...]
    mpi: MpiLayer | None
    conda: CondaLayer | None
    pip_packages: tuple[str, ...]
    pip_requirements: bool
    """A flattened requirements.txt from the dependency files is in the context."""
    pip_constraints: bool
    apt_packages: tuple[str, ...]
    ca_certs: bool
    pip_conf: bool
    env: dict[str, str]
    labels: dict[str, str]
    build_jobs: int = 2
    agent_vendored: bool = False
    """The agent's requirements are files in the context (agent_bundle): no pip for them."""
    tfbuild_version: str = __version__
    venv: str = VENV
    layers: str = LAYERS
    agent_venv: str = AGENT_VENV
    workdir: str = WORKDIR

    @property
    def user_pip(self) -> bool:
        return bool(self.pip_packages) or self.pip_requirements

    @property
    def constraints(self) -> str:
        if self.mpi:
            return f"{LAYERS}/mpi/tfbuild-constraints.txt"
        return f"{VENV}/tfbuild-constraints.txt"

    @property
    def tf_wheel(self) -> str:
        """The wheel that holds the `tensorflow` module (extras dropped): a stage that
        compiles against TensorFlow takes the C++ headers from it."""
        name, _, version = self.tf_requirements[0].partition("==")
        return f"{name.split('[')[0]}=={version}"

    @property
    def pip_env(self) -> str:
        """Prefix for every pip call in build stages (credentials stay in those stages)."""
        conf = "PIP_CONFIG_FILE=/tmp/tfbuild-pip/pip.conf " if self.pip_conf else ""
        return f"PIP_DISABLE_PIP_VERSION_CHECK=1 {conf}"


def default_base_image(spec: BuildSpec) -> str:
    if spec.custom_docker_base_image:
        return spec.custom_docker_base_image
    return TFBUILD_BASE_PREFIX + compat.debian_suite_for_python(spec.python_version)


def image_layers(
    spec: BuildSpec,
    *,
    source_digest: str = "",
    has_pip_conf: bool = False,
    agent_vendored: bool = False,
) -> ImageLayers:
    """Decide every layer's contents from the spec and the compat matrix."""
    base = default_base_image(spec)
    tf_reqs = compat.tf_pip_requirements(
        spec.tensorflow_version, gpu=spec.use_gpu, keras=spec.keras
    )
    keras_req = compat.tf_keras_requirement(spec.tensorflow_version, keras=spec.keras)
    nodeps = (keras_req,) if keras_req and not spec.use_gpu else ()
    base_is_tfbuild = base.startswith(TFBUILD_BASE_PREFIX)
    use_mpi = spec.distributed_backend == "mpi"
    os_packages = [] if base_is_tfbuild else list(PYTHON_OS_PACKAGES)
    if use_mpi:
        os_packages += MPI_RUNTIME_PACKAGES
    mpi = _mpi_layer(spec) if use_mpi else None
    conda = (
        CondaLayer(
            packages=spec.conda_packages,
            channels=spec.conda_channels,
            installer=compat.conda_installer(),
        )
        if spec.conda_packages
        else None
    )
    env = {
        "PATH": ":".join(
            [
                f"{VENV}/bin",
                f"{LAYERS}/user/bin",
                f"{LAYERS}/mpi/bin",
                f"{LAYERS}/conda/bin",
                f"{AGENT_VENV}/cmd",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ]
        ),
        "PYTHONUNBUFFERED": "1",
        **compat.runtime_env(spec.tensorflow_version, keras=spec.keras),
    }
    if use_mpi:
        # Containers run as root; Open MPI refuses that unless told it is intended.
        env |= {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    if spec.use_gpu:
        env |= {"NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DRIVER_CAPABILITIES": "compute,utility"}
    env |= dict(spec.environment_variables)
    labels = {
        "org.opencontainers.image.title": spec.tag or spec.source_directory.name,
        "io.tfbuild.version": __version__,
        "io.tfbuild.source-digest": source_digest,
        "io.tfbuild.spec": json.dumps(label_spec(spec), sort_keys=True, separators=(",", ":")),
        **({SHM_SIZE_LABEL: spec.shm_size} if spec.shm_size else {}),
        **dict(spec.labels),
    }
    return ImageLayers(
        base_image=base,
        base_is_tfbuild=base_is_tfbuild,
        os_packages=tuple(os_packages),
        tensorflow_version=spec.tensorflow_version,
        gpu=spec.use_gpu,
        tf_requirements=tuple(r for r in tf_reqs if r not in nodeps),
        tf_nodeps_requirements=nodeps,
        mpi=mpi,
        conda=conda,
        pip_packages=spec.pip_packages + onnx_requirements(spec),
        pip_requirements=bool(spec.pip_requirements),
        pip_constraints=bool(spec.pip_constraints),
        apt_packages=spec.apt_packages,
        ca_certs=bool(spec.ca_certs) or spec.trust_host_ca,
        pip_conf=has_pip_conf,
        agent_vendored=agent_vendored,
        env=env,
        labels=labels,
    )


def onnx_requirements(spec: BuildSpec) -> tuple[str, ...]:
    """tf2onnx and onnxruntime for export_onnx, as verified in compat.yaml (user layer:
    they import the image's TensorFlow)."""
    if not spec.export_onnx:
        return ()
    return tuple(compat.load_matrix().onnx_export[spec.tensorflow_version])


def label_spec(spec: BuildSpec) -> dict[str, Any]:
    """The spec for the image label, free of this machine's paths: the same project
    built from two checkouts gets the same label (and so the same cached last step)."""
    out = spec.to_dict()
    out["source_directory"] = spec.source_directory.name
    if not out["inputs"]:
        del out["inputs"]  # images without data inputs keep the label they had
    out["ca_certs"] = [Path(p).name for p in spec.ca_certs]
    out["conda_channels"] = [
        Path(c).name if c.startswith("/") else c for c in out["conda_channels"]
    ]
    return out


def _mpi_layer(spec: BuildSpec) -> MpiLayer:
    hvd = compat.horovod_for(spec.tensorflow_version) if spec.horovod else None
    packages = compat.mpi_build_packages(horovod=hvd is not None)
    env = dict(compat.horovod_build_env()) if hvd else {}
    build = compat.horovod_build()
    keyring = ""
    if hvd and hvd.patches:
        packages += build.patch_apt_packages
    if hvd and spec.use_gpu:
        cuda = compat.tf_release(spec.tensorflow_version).cuda
        gpu_packages, gpu_env = build.gpu_for(cuda)
        packages += gpu_packages
        env |= gpu_env
        keyring = build.gpu_cuda_keyring
    return MpiLayer(
        mpi4py=compat.mpi4py_requirement(),
        build_packages=tuple(dict.fromkeys(packages)),
        horovod_version=hvd.version if hvd else None,
        horovod_build_requirements=tuple(compat.horovod_build_requirements()) if hvd else (),
        horovod_env=env,
        horovod_patches=hvd.patches if hvd else (),
        horovod_cuda_keyring=keyring,
    )


def requirements_files(spec: BuildSpec) -> dict[str, bytes]:
    """Build-context path -> content of the flattened dependency-file lists."""
    out = {}
    for name, lines in (
        ("requirements.txt", spec.pip_requirements),
        ("constraints.txt", spec.pip_constraints),
    ):
        if lines:
            out[f"{REQUIREMENTS_CONTEXT}/{name}"] = ("\n".join(lines) + "\n").encode()
    return out


def horovod_patch_files(layers: ImageLayers) -> dict[str, bytes]:
    """Build-context path -> content of each Horovod patch the image applies."""
    if not layers.mpi or not layers.mpi.horovod_patches:
        return {}
    folder = templates_dir() / "patches" / "horovod" / str(layers.mpi.horovod_version)
    return {
        f"{HOROVOD_PATCH_CONTEXT}/{name}": (folder / name).read_bytes()
        for name in layers.mpi.horovod_patches
    }


def templates_dir() -> Path:
    """base-images/ in a checkout, tfbuild/base_images in an installed wheel."""
    return Path(str(resources.files("tfbuild.base_images")))


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["shquote"] = shlex.quote
    env.filters["dquote"] = lambda s: json.dumps(str(s))
    # LABEL values are literal: a `${tfbuild.input.NAME}` placeholder in the spec label
    # must not reach the Dockerfile's variable substitution (it fails the build).
    env.filters["dlabel"] = lambda s: json.dumps(str(s)).replace("$", "\\$")
    return env


def render_dockerfile(layers: ImageLayers) -> str:
    context: dict[str, Any] = asdict(layers)
    context |= {
        "mpi": layers.mpi,
        "conda": layers.conda,
        "constraints": layers.constraints,
        "pip_env": layers.pip_env,
        "tf_wheel": layers.tf_wheel,
        "user_pip": layers.user_pip,
        "requirements_context": REQUIREMENTS_CONTEXT,
    }
    text = _environment().get_template("Dockerfile.j2").render(**context)
    return _squeeze_blank_lines(text)


def _squeeze_blank_lines(text: str) -> str:
    out: list[str] = []
    for line in text.splitlines():
        if line.strip() == "" and out and out[-1] == "":
            continue
        out.append(line.rstrip())
    return "\n".join(out).strip() + "\n"
