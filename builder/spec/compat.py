"""The TensorFlow / Python / CUDA / cuDNN / Horovod matrix, read from base-images/compat.yaml.

Every version tfbuild knows comes from that file; code and templates ask here.
`load_matrix()` reads and checks it once; `Matrix.from_mapping` builds one from
plain data (tests use it for made-up matrices).
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..errors import CompatError
from .yaml_reader import YamlSyntaxError, parse_yaml

COMPAT_FILE = "compat.yaml"
KERAS_MODES = ("legacy", "keras3")
_PYTHON_RE = re.compile(r"^3\.\d+$")
_MINOR_RE = re.compile(r"^\d+\.\d+$")


class UnknownTFVersion(LookupError):
    """A TensorFlow version the matrix does not list."""

    def __init__(self, version: str, known: Sequence[str]) -> None:
        self.version = version
        self.known = tuple(known)
        super().__init__(
            f"TensorFlow {version!r} is not in the compatibility matrix; "
            f"known versions: {', '.join(self.known)}"
        )


@dataclass(frozen=True)
class HorovodSupport:
    """Which Horovod builds against a TensorFlow release, if any."""

    version: str | None
    verified: bool
    reason: str | None
    """Why it is unsupported, or why it is unverified."""
    patches: tuple[str, ...] = ()
    """Files of base-images/patches/horovod/<version>/ applied to the sdist, in order."""

    @property
    def supported(self) -> bool:
        return self.version is not None


@dataclass(frozen=True)
class TFRelease:
    version: str
    python: tuple[str, ...]
    cuda: str
    cudnn: str
    gpu: bool
    cpu_package: str
    gpu_package: str
    tf_keras: str | None
    """The tf-keras requirement that gives legacy Keras; None when TF ships Keras 2 itself."""
    tensorboard: str
    horovod: HorovodSupport

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])

    @property
    def ships_keras3(self) -> bool:
        return self.tf_keras is not None


@dataclass(frozen=True)
class HorovodBuild:
    env: Mapping[str, str]
    apt_packages: tuple[str, ...]
    pip_requirements: tuple[str, ...]
    """Installed before Horovod, which builds with --no-build-isolation."""
    patch_apt_packages: tuple[str, ...] = ()
    gpu_cuda_keyring: str = ""
    gpu_apt_packages: tuple[str, ...] = ()
    """With {cuda} / {cuda_dashed} for the release's CUDA row."""
    gpu_env: Mapping[str, str] = field(default_factory=dict)

    def gpu_for(self, cuda: str) -> tuple[tuple[str, ...], dict[str, str]]:
        """GPU build packages and variables for one CUDA version ("12.5")."""
        fill = {"cuda": cuda, "cuda_dashed": cuda.replace(".", "-")}
        packages = tuple(p.format(**fill) for p in self.gpu_apt_packages)
        return packages, {k: v.format(**fill) for k, v in self.gpu_env.items()}


@dataclass(frozen=True)
class Matrix:
    default_tensorflow: str
    releases: Mapping[str, TFRelease]
    debian_suites: Mapping[str, str]
    """Debian suite -> the Python version it ships."""
    openmpi_packages: tuple[str, ...]
    mpi4py_version: str
    mpi4py_build_apt_packages: tuple[str, ...]
    conda_installer: str
    """The pip requirement of the tool that installs conda packages."""
    horovod_build: HorovodBuild
    legacy_keras_env: Mapping[str, str]
    tensorflow_distributions: tuple[str, ...]
    onnx_export: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    """TensorFlow release -> the pip requirements of its verified ONNX export."""

    @classmethod
    def from_mapping(cls, data: Any, source: str = COMPAT_FILE) -> Matrix:
        return _parse_matrix(data, source)

    def known_tf_versions(self) -> list[str]:
        return sorted(self.releases, key=Version)

    def resolve_tf_version(self, version: str) -> str:
        """'X.Y' -> the newest known X.Y.Z; a full known version -> itself."""
        version = str(version).strip()
        if version in self.releases:
            return version
        if _MINOR_RE.match(version):
            patches = [v for v in self.known_tf_versions() if v.startswith(version + ".")]
            if patches:
                return patches[-1]
        raise UnknownTFVersion(version, self.known_tf_versions())

    def tf_release(self, version: str) -> TFRelease:
        return self.releases[self.resolve_tf_version(version)]

    def python_versions(self, tf: str) -> tuple[str, ...]:
        return self.tf_release(tf).python

    def debian_suite_for_python(self, python: str) -> str | None:
        for suite, py in self.debian_suites.items():
            if py == python:
                return suite
        return None

    def default_python(self, tf: str) -> str:
        """The Python of the first Debian suite in compat.yaml that the release
        supports (suites are listed in order of preference: bookworm is the base
        everything was verified on); the newest supported one if none is shipped."""
        supported = self.python_versions(tf)
        for python in self.debian_suites.values():
            if python in supported:
                return python
        return max(supported, key=Version)

    def horovod_for(self, tf: str) -> HorovodSupport | None:
        support = self.tf_release(tf).horovod
        return support if support.supported else None

    def horovod_tf_versions(self) -> list[str]:
        return [v for v in self.known_tf_versions() if self.releases[v].horovod.supported]

    def gpu_tf_versions(self) -> list[str]:
        return [v for v in self.known_tf_versions() if self.releases[v].gpu]

    def tf_pip_requirements(self, tf: str, gpu: bool, keras: str = "legacy") -> list[str]:
        """TensorFlow pinned exactly, TensorBoard, and tf-keras when legacy Keras is wanted."""
        release = self.tf_release(tf)
        package = release.gpu_package if gpu else release.cpu_package
        reqs = [f"{package}=={release.version}", release.tensorboard]
        if _check_keras(keras) == "legacy" and release.tf_keras:
            reqs.append(release.tf_keras)
        return reqs

    def tf_keras_requirement(self, tf: str, keras: str = "legacy") -> str | None:
        """tf-keras for legacy Keras. It depends on `tensorflow`, which would pull the
        full TensorFlow next to tensorflow-cpu: CPU images install it with --no-deps."""
        release = self.tf_release(tf)
        return release.tf_keras if _check_keras(keras) == "legacy" else None

    def runtime_env(self, tf: str, keras: str = "legacy") -> dict[str, str]:
        """Variables the image needs at run time: those that make `tf.keras` the
        legacy Keras 2 when asked for and the release ships Keras 3."""
        if _check_keras(keras) == "legacy" and self.tf_release(tf).ships_keras3:
            return dict(self.legacy_keras_env)
        return {}

    def mpi4py_requirement(self) -> str:
        return f"mpi4py=={self.mpi4py_version}"

    def mpi_build_packages(self, horovod: bool = True) -> list[str]:
        """Debian packages the MPI build stage needs: mpi4py's, plus Horovod's."""
        packages = list(self.mpi4py_build_apt_packages)
        if horovod:
            packages += self.horovod_build.apt_packages
        return list(dict.fromkeys(packages))

    def is_tensorflow_distribution(self, name: str) -> bool:
        wanted = canonicalize_name(name)
        return any(canonicalize_name(d) == wanted for d in self.tensorflow_distributions)


def _check_keras(keras: str) -> str:
    if keras not in KERAS_MODES:
        raise ValueError(f"keras must be one of {', '.join(KERAS_MODES)}, not {keras!r}")
    return keras


@functools.cache
def load_matrix() -> Matrix:
    """The packaged compat.yaml, parsed and checked (cached)."""
    resource = importlib.resources.files("tfbuild.base_images") / COMPAT_FILE
    try:
        data = parse_yaml(resource.read_text(encoding="utf-8"))
    except YamlSyntaxError as e:
        raise CompatError(f"{COMPAT_FILE}: line {e.line}: {e.problem}") from None
    return Matrix.from_mapping(data)


# Module-level shortcuts over the packaged matrix.


def known_tf_versions() -> list[str]:
    return load_matrix().known_tf_versions()


def resolve_tf_version(version: str) -> str:
    return load_matrix().resolve_tf_version(version)


def tf_release(version: str) -> TFRelease:
    return load_matrix().tf_release(version)


def python_versions(tf: str) -> tuple[str, ...]:
    return load_matrix().python_versions(tf)


def default_python(tf: str) -> str:
    return load_matrix().default_python(tf)


def debian_suite_for_python(python: str) -> str | None:
    return load_matrix().debian_suite_for_python(python)


def horovod_for(tf: str) -> HorovodSupport | None:
    return load_matrix().horovod_for(tf)


def tf_pip_requirements(tf: str, gpu: bool, keras: str = "legacy") -> list[str]:
    return load_matrix().tf_pip_requirements(tf, gpu, keras)


def runtime_env(tf: str, keras: str = "legacy") -> dict[str, str]:
    return load_matrix().runtime_env(tf, keras)


def tf_keras_requirement(tf: str, keras: str = "legacy") -> str | None:
    return load_matrix().tf_keras_requirement(tf, keras)


def mpi4py_requirement() -> str:
    return load_matrix().mpi4py_requirement()


def mpi_build_packages(horovod: bool = True) -> list[str]:
    return load_matrix().mpi_build_packages(horovod)


def horovod_build_requirements() -> list[str]:
    return list(load_matrix().horovod_build.pip_requirements)


def horovod_build_env() -> dict[str, str]:
    return dict(load_matrix().horovod_build.env)


def horovod_build() -> HorovodBuild:
    return load_matrix().horovod_build


def conda_installer() -> str:
    return load_matrix().conda_installer


# Parsing: strict, so a typo in compat.yaml fails loudly at the first load.


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> CompatError:
        return CompatError(f"{self.source}: {where}: {problem}")

    def mapping(self, value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected a mapping, found {type(value).__name__}")
        return value

    def get(self, data: Mapping[str, Any], key: str, where: str) -> Any:
        if key not in data:
            raise self.fail(where, f"missing key {key!r}")
        return data[key]

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(where, f"expected a non-empty quoted string, found {value!r}")
        return value

    def optional_text(self, value: Any, where: str) -> str | None:
        return None if value is None else self.text(value, where)

    def texts(self, value: Any, where: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(where, f"expected a non-empty list, found {value!r}")
        return tuple(self.text(v, f"{where}[{i}]") for i, v in enumerate(value))

    def flag(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, f"expected true or false, found {value!r}")
        return value

    def text_map(self, value: Any, where: str) -> Mapping[str, str]:
        data = self.mapping(value, where)
        return MappingProxyType(
            {self.text(k, where): self.text(v, f"{where}.{k}") for k, v in data.items()}
        )


def _parse_matrix(data: Any, source: str) -> Matrix:
    r = _Reader(source)
    top = r.mapping(data, "top level")
    releases_data = r.mapping(r.get(top, "tensorflow", "top level"), "tensorflow")
    releases = {}
    for version, entry in releases_data.items():
        version = r.text(version, "tensorflow")
        try:
            Version(version)
        except InvalidVersion:
            raise r.fail("tensorflow", f"{version!r} is not a version") from None
        releases[version] = _parse_release(r, version, entry)
    if not releases:
        raise r.fail("tensorflow", "lists no releases")

    debian = r.mapping(r.get(top, "debian", "top level"), "debian")
    suites_data = r.mapping(r.get(debian, "suites", "debian"), "debian.suites")
    suites = {}
    for suite, entry in suites_data.items():
        where = f"debian.suites.{suite}"
        py = r.text(r.get(r.mapping(entry, where), "python", where), f"{where}.python")
        if not _PYTHON_RE.match(py):
            raise r.fail(where, f"python {py!r} is not a 3.X version")
        suites[r.text(suite, "debian.suites")] = py

    hb = r.mapping(r.get(top, "horovod_build", "top level"), "horovod_build")
    hb_gpu = r.mapping(hb.get("gpu", {}), "horovod_build.gpu")
    mpi4py = r.mapping(r.get(top, "mpi4py", "top level"), "mpi4py")
    default = r.text(r.get(top, "default_tensorflow", "top level"), "default_tensorflow")
    if default not in releases:
        raise r.fail("default_tensorflow", f"{default!r} is not one of the listed releases")
    return Matrix(
        default_tensorflow=default,
        releases=MappingProxyType(releases),
        debian_suites=MappingProxyType(suites),
        openmpi_packages=r.texts(
            r.get(debian, "openmpi_packages", "debian"), "debian.openmpi_packages"
        ),
        mpi4py_version=r.text(r.get(mpi4py, "version", "mpi4py"), "mpi4py.version"),
        mpi4py_build_apt_packages=r.texts(
            r.get(mpi4py, "build_apt_packages", "mpi4py"), "mpi4py.build_apt_packages"
        ),
        conda_installer=r.text(r.get(top, "conda_installer", "top level"), "conda_installer"),
        horovod_build=HorovodBuild(
            patch_apt_packages=_optional_texts(
                r, hb, "patch_apt_packages", "horovod_build.patch_apt_packages"
            ),
            gpu_cuda_keyring=r.text(
                hb_gpu.get("cuda_keyring", ""), "horovod_build.gpu.cuda_keyring"
            ) if hb_gpu else "",
            gpu_apt_packages=_optional_texts(
                r, hb_gpu, "apt_packages", "horovod_build.gpu.apt_packages"
            ),
            gpu_env=r.text_map(hb_gpu.get("env", {}), "horovod_build.gpu.env"),
            env=r.text_map(r.get(hb, "env", "horovod_build"), "horovod_build.env"),
            apt_packages=r.texts(
                r.get(hb, "apt_packages", "horovod_build"), "horovod_build.apt_packages"
            ),
            pip_requirements=r.texts(
                r.get(hb, "pip_requirements", "horovod_build"), "horovod_build.pip_requirements"
            ),
        ),
        legacy_keras_env=r.text_map(
            r.get(top, "legacy_keras_env", "top level"), "legacy_keras_env"
        ),
        tensorflow_distributions=r.texts(
            r.get(top, "tensorflow_distributions", "top level"), "tensorflow_distributions"
        ),
        onnx_export=MappingProxyType({
            r.text(tf, "onnx_export"): r.texts(reqs, f"onnx_export.{tf}")
            for tf, reqs in r.mapping(top.get("onnx_export", {}), "onnx_export").items()
        }),
    )


def _optional_texts(r: _Reader, data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    return r.texts(data[key], where) if key in data else ()


def _parse_release(r: _Reader, version: str, entry: Any) -> TFRelease:
    where = f"tensorflow.{version}"
    e = r.mapping(entry, where)
    python = r.texts(r.get(e, "python", where), f"{where}.python")
    for py in python:
        if not _PYTHON_RE.match(py):
            raise r.fail(f"{where}.python", f"{py!r} is not a 3.X version")
    pip = r.mapping(r.get(e, "pip", where), f"{where}.pip")
    hv = r.mapping(r.get(e, "horovod", where), f"{where}.horovod")
    hv_version = r.optional_text(r.get(hv, "version", f"{where}.horovod"), f"{where}.horovod")
    reason = r.optional_text(hv.get("reason"), f"{where}.horovod.reason")
    if hv_version is None and reason is None:
        raise r.fail(f"{where}.horovod", "an unsupported Horovod needs a 'reason'")
    return TFRelease(
        version=version,
        python=python,
        cuda=r.text(r.get(e, "cuda", where), f"{where}.cuda"),
        cudnn=r.text(r.get(e, "cudnn", where), f"{where}.cudnn"),
        gpu=r.flag(r.get(e, "gpu", where), f"{where}.gpu"),
        cpu_package=r.text(r.get(pip, "cpu", f"{where}.pip"), f"{where}.pip.cpu"),
        gpu_package=r.text(r.get(pip, "gpu", f"{where}.pip"), f"{where}.pip.gpu"),
        tf_keras=r.optional_text(r.get(e, "tf_keras", where), f"{where}.tf_keras"),
        tensorboard=r.text(r.get(e, "tensorboard", where), f"{where}.tensorboard"),
        horovod=HorovodSupport(
            version=hv_version,
            verified=hv_version is not None
            and r.flag(hv.get("verified", False), f"{where}.horovod.verified"),
            reason=reason,
            patches=_optional_texts(r, hv, "patches", f"{where}.horovod.patches"),
        ),
    )
