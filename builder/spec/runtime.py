"""What the image runs on: `tensorflow_version`, `python_version`, `use_gpu`, `keras`,
`environment_variables` and `labels`, checked against the compatibility matrix."""

from __future__ import annotations

import re

from .compat import KERAS_MODES, Matrix, TFRelease, UnknownTFVersion
from .fields import Fields, did_you_mean

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PYTHON = re.compile(r"^3\.\d+$")


def tensorflow(f: Fields, matrix: Matrix) -> TFRelease:
    wanted = f.text("tensorflow_version", matrix.default_tensorflow)
    try:
        return matrix.tf_release(wanted)
    except UnknownTFVersion as e:
        minors = list(dict.fromkeys(matrix.releases[v].minor for v in e.known))
        hint = did_you_mean(wanted, [*minors, *e.known])
        raise f.fail(
            "tensorflow_version",
            wanted,
            f"{wanted!r} is not a TensorFlow version tfbuild knows",
            f"{hint}use one of {', '.join(e.known)} "
            f"(or a major.minor such as {minors[-1]!r} for its newest patch)",
        ) from None


def python_version(f: Fields, matrix: Matrix, release: TFRelease, custom_base: str | None) -> str:
    default = matrix.default_python(release.version)
    py = f.text("python_version", default)
    supported = ", ".join(release.python)
    if not _PYTHON.match(py):
        raise f.fail(
            "python_version",
            py,
            f"{py!r} is not a major.minor Python version",
            f"write it like {default!r} (TensorFlow {release.version} supports {supported})",
        )
    if py not in release.python:
        raise f.fail(
            "python_version",
            py,
            f"TensorFlow {release.version} does not support Python {py}",
            f"use one of {supported}, or leave python_version out for {default}",
        )
    if custom_base is None and matrix.debian_suite_for_python(py) is None:
        shipped = [
            f"{p} ({matrix.debian_suite_for_python(p)})"
            for p in release.python
            if matrix.debian_suite_for_python(p)
        ]
        raise f.fail(
            "python_version",
            py,
            f"no Debian suite the default base image is built from ships Python {py}",
            (f"use {' or '.join(shipped)}, or " if shipped else "")
            + f"set custom_docker_base_image to an image that has Python {py}",
        )
    return py


def use_gpu(f: Fields, matrix: Matrix, release: TFRelease) -> bool:
    gpu = f.flag("use_gpu", False)
    if gpu and not release.gpu:
        gpu_versions = matrix.gpu_tf_versions()
        raise f.fail(
            "use_gpu",
            True,
            f"TensorFlow {release.version} has no GPU build in the compatibility matrix",
            f"use tensorflow_version {' or '.join(gpu_versions) or '(none has one)'}, "
            "or use_gpu: false",
        )
    return gpu


def keras(f: Fields, matrix: Matrix, release: TFRelease) -> str:
    mode = f.text("keras", "legacy")
    if mode not in KERAS_MODES:
        raise f.fail(
            "keras", mode, f"{mode!r} is not a Keras mode", f"use {' or '.join(KERAS_MODES)}"
        )
    if mode == "keras3" and not release.ships_keras3:
        newer = [v for v in matrix.known_tf_versions() if matrix.releases[v].tf_keras]
        raise f.fail(
            "keras",
            mode,
            f"TensorFlow {release.version} comes with Keras 2 only",
            f"use keras: legacy, or a tensorflow_version with Keras 3 ({', '.join(newer)})",
        )
    return mode


def environment_variables(f: Fields, matrix: Matrix) -> dict[str, str]:
    env = f.text_map("environment_variables")
    owned = {"TF_CONFIG": "the agent writes it at run time; remove it"}
    owned |= {
        name: "set keras: legacy or keras: keras3 instead" for name in matrix.legacy_keras_env
    }
    for name in env:
        if not _ENV_NAME.match(name):
            raise f.fail(
                "environment_variables",
                name,
                f"{name!r} is not a valid variable name",
                "use letters, digits and _ and do not start with a digit",
            )
        if name in owned:
            raise f.fail(
                "environment_variables", name, f"{name} is managed by tfbuild", owned[name]
            )
    return env


def labels(f: Fields) -> dict[str, str]:
    out = f.text_map("labels")
    for name in out:
        if not name or any(c.isspace() or c == "=" for c in name):
            raise f.fail(
                "labels",
                name,
                f"{name!r} is not a label key",
                "use a key without spaces or '=', e.g. org.example.team",
            )
    return out


# go-units RAMInBytes, what `docker run --shm-size` parses: 512m, 2g, 1.5GiB, 1073741824.
_SIZE = re.compile(r"^(\d+(?:\.\d+)?) ?([kKmMgGtTpP])?[iI]?[bB]?$")


def shm_size(f: Fields) -> str | None:
    """`shm_size`: /dev/shm for the job's containers, in docker's notation."""
    size = f.text("shm_size")
    if size is None:
        return None
    m = _SIZE.match(size)
    if not m or float(m.group(1)) <= 0:
        raise f.fail(
            "shm_size",
            size,
            f"{size!r} is not a size",
            "write a number with a unit as docker run --shm-size does, e.g. 2g or 512m",
        )
    return size


def max_run_duration_seconds(f: Fields) -> int | None:
    """`max_run_duration_seconds`: the agent stops the job after this long."""
    if not f.given("max_run_duration_seconds"):
        return None
    return f.count("max_run_duration_seconds", 0, minimum=1)
