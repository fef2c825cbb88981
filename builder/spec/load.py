"""Reading a spec: `load_spec` reads `tfbuild.yaml` from the source directory and
lays command-line overrides over it; `spec_from_mapping` validates plain data. Both
return a frozen BuildSpec or raise SpecError naming the field, the bad value and the
fix. The only I/O is reading the config file and checking that named files exist."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import CONFIG_NAME, SpecError
from . import distribution, entry, export, inputs, packages, registries, runtime
from .compat import Matrix, load_matrix
from .fields import Fields, did_you_mean
from .model import AZURE_ONLY, ESTIMATOR_HINTS, KEYS, BuildSpec
from .requirements_files import ImageFacts
from .yaml_reader import YamlSyntaxError, parse_yaml

COMMAND_LINE = "command line"
_MAPPING_FIX = "write one `key: value` per line, e.g. `entry_script: train.py`"


def load_spec(
    source_directory: str | Path,
    overrides: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
    *,
    matrix: Matrix | None = None,
) -> BuildSpec:
    """Read `tfbuild.yaml` (or `config_file`) and lay `overrides` over it.

    Override values that are None count as not given. Paths given as overrides
    (ca_certs, local conda channels) are relative to the working directory; paths in
    the file are relative to the source directory.
    """
    src = Path(source_directory)
    _check_source_directory(src, COMMAND_LINE)
    if config_file is None:
        path, required = src / CONFIG_NAME, False
    else:
        path, required = Path(config_file), True
    label = str(path)
    data = _read_config(path, label, required)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    given = _absolutize_cli_paths(given, Path.cwd())
    origins = {k: label for k in data} | {k: COMMAND_LINE for k in given}
    fields = Fields({**data, **given}, origins, label)
    return _validate(fields, src, matrix or load_matrix())


def spec_from_mapping(
    data: Mapping[str, Any],
    base_dir: Path,
    *,
    source: str = CONFIG_NAME,
    matrix: Matrix | None = None,
) -> BuildSpec:
    """Validate `data` (tfbuild.yaml's keys) for the source directory `base_dir`."""
    if not isinstance(data, Mapping):
        raise SpecError(
            None, data, f"the spec is a {type(data).__name__}, not a mapping", _MAPPING_FIX, source
        )
    fields = Fields(data, {k: source for k in data}, source)
    return _validate(fields, Path(base_dir), matrix or load_matrix())


def parse_config_text(text: str, label: str = CONFIG_NAME) -> dict[str, Any]:
    """tfbuild.yaml's text -> its mapping (empty file -> {}). Pure."""
    try:
        data = parse_yaml(text)
    except YamlSyntaxError as e:
        fix = (
            "fix the YAML there (indentation, a missing ':', or quote a value containing ': ')"
            if e.line is not None
            else "fix the file's syntax"
        )
        raise SpecError(None, None, e.problem, fix, label, line=e.line, column=e.column) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError(
            None,
            data,
            f"the file holds a {type(data).__name__}, not a mapping of keys",
            _MAPPING_FIX,
            label,
        )
    return data


def _validate(f: Fields, base_dir: Path, matrix: Matrix) -> BuildSpec:
    """Every key, concern by concern, in the order errors are reported."""
    _check_keys(f)
    _check_source_directory(base_dir, f.default_source)
    base = base_dir.resolve()
    entry_script = entry.entry_script(f, base)
    script_params = entry.script_params(f)
    release = runtime.tensorflow(f, matrix)
    custom_base = registries.image_ref(f, "custom_docker_base_image", registries.IMAGE_REF)
    python_version = runtime.python_version(f, matrix, release, custom_base)
    use_gpu = runtime.use_gpu(f, matrix, release)
    backend = distribution.backend(f)
    counts = distribution.counts(f, backend)
    keras = runtime.keras(f, matrix, release)
    horovod = distribution.horovod(f, matrix, backend, release, keras)
    upload_extras = packages.upload_extras(f)
    files = packages.dependency_files(
        f, base, ImageFacts(release.version, python_version, matrix.is_tensorflow_distribution)
    )
    index_url, extra_index_urls = packages.index_urls(f, files)
    return BuildSpec(
        source_directory=base,
        entry_script=entry_script,
        script_params=script_params,
        tensorflow_version=release.version,
        python_version=python_version,
        pip_packages=packages.pip_packages(f, matrix),
        conda_packages=packages.conda_packages(f, matrix) + files.conda_packages,
        conda_channels=packages.conda_channels(f, base, files.conda_channels, files.conda_dir),
        apt_packages=packages.apt_packages(f),
        use_gpu=use_gpu,
        custom_docker_base_image=custom_base,
        distributed_backend=backend,
        **counts,
        environment_variables=MappingProxyType(runtime.environment_variables(f, matrix)),
        labels=MappingProxyType(runtime.labels(f)),
        horovod=horovod,
        pip_index_url=index_url,
        pip_extra_index_urls=extra_index_urls,
        ca_certs=registries.ca_certs(f, base),
        trust_host_ca=f.flag("trust_host_ca", False),
        tag=registries.image_ref(f, "tag", registries.IMAGE_TAG),
        upload_extras=upload_extras,
        keras=keras,
        inputs=inputs.inputs(f, upload_extras),
        pip_requirements_file=files.pip_file,
        conda_dependencies_file=files.conda_file,
        pip_requirements=files.pip_requirements,
        pip_constraints=files.pip_constraints,
        max_run_duration_seconds=runtime.max_run_duration_seconds(f),
        shm_size=runtime.shm_size(f),
        export_onnx=_frozen(export.export_onnx(f, matrix, release)),
        notes=tuple(f.notes),
    )


def _frozen(value: dict[str, Any] | None) -> Mapping[str, Any] | None:
    return None if value is None else MappingProxyType(value)


def _check_keys(f: Fields) -> None:
    for key in f.data:
        if key in KEYS:
            continue
        if not isinstance(key, str):
            raise f.fail(
                str(key), key, f"{key!r} is not a key name", "use the names in docs/spec.md"
            )
        if key in ESTIMATOR_HINTS:
            fix = ESTIMATOR_HINTS[key]
        elif key in AZURE_ONLY:
            fix = "it is an Azure ML run setting that tfbuild does not use; remove it"
        else:
            fix = f"{did_you_mean(key, KEYS)}the keys are listed in docs/spec.md"
        raise f.fail(key, f.data[key], f"{key!r} is not a tfbuild key", fix)


def _check_source_directory(src: Path, source: str) -> None:
    if not src.exists():
        problem = f"{str(src)!r} does not exist"
    elif not src.is_dir():
        problem = f"{str(src)!r} is not a directory"
    else:
        return
    raise SpecError(
        "source_directory",
        str(src),
        problem,
        "pass the folder that holds your training code, e.g. `tfbuild image my-tf-proj`",
        source,
    )


def _read_config(path: Path, label: str, required: bool) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise SpecError(
                None, str(path), "the config file does not exist", "check the path", label
            ) from None
        return {}
    except UnicodeDecodeError:
        raise SpecError(None, None, "is not UTF-8 text", "save it as UTF-8", label) from None
    except OSError as e:
        raise SpecError(
            None, None, f"cannot be read ({e.strerror})", "check that it is a readable file", label
        ) from None
    return parse_config_text(text, label)


def _absolutize_cli_paths(given: dict[str, Any], cwd: Path) -> dict[str, Any]:
    """Command-line paths are relative to where the command runs, not the source dir."""
    out = dict(given)

    def absolute(p: Any) -> Any:
        return str(cwd / Path(p).expanduser()) if isinstance(p, str | Path) else p

    for key in ("pip_requirements_file", "conda_dependencies_file"):
        if isinstance(out.get(key), str | Path):
            out[key] = absolute(out[key])
    if isinstance(out.get("ca_certs"), str | Path):
        out["ca_certs"] = [out["ca_certs"]]
    if isinstance(out.get("ca_certs"), Sequence):
        out["ca_certs"] = [absolute(p) for p in out["ca_certs"]]
    if isinstance(out.get("conda_channels"), Sequence) and not isinstance(
        out["conda_channels"], str
    ):
        out["conda_channels"] = [
            absolute(c)
            if isinstance(c, str) and packages.looks_like_local_channel(c) and "://" not in c
            else c
            for c in out["conda_channels"]
        ]
    return out
