"""The build spec: Azure ML TensorFlow-estimator parameters, validated.

`load_spec` reads `tfbuild.yaml` from the source directory and lays command-line
overrides over it; `spec_from_mapping` validates plain data. Both return a frozen
BuildSpec or raise SpecError naming the field, the bad value and the fix. The only
I/O is reading the config file and checking that named files exist.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import yaml

from .compat import KERAS_MODES, Matrix, TFRelease, UnknownTFVersion, load_matrix
from .credentials import redact_url
from .packages import PackageSpecError, parse_apt, parse_conda, parse_pip

CONFIG_NAME = "tfbuild.yaml"
COMMAND_LINE = "command line"
BACKENDS = ("none", "mpi", "ps", "multiworker")
UPLOAD_EXTRAS = ("s3", "azure", "gcs")


class SpecError(Exception):
    """A spec value is wrong. The message says where, what and how to fix it."""

    def __init__(
        self,
        field: str | None,
        value: Any,
        problem: str,
        fix: str,
        source: str = CONFIG_NAME,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.field = field
        self.value = value
        self.problem = problem
        self.fix = fix
        self.source = source
        self.line = line
        self.column = column
        where = [source]
        if line is not None:
            where.append(f"line {line}, column {column}")
        if field:
            where.append(field)
        super().__init__(f"{': '.join(where)}: {problem}; {fix}")


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
    notes: tuple[str, ...] = field(default=(), compare=False)
    """Warnings for the user (not part of the spec: left out of to_dict)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, with credentials in URLs redacted (for labels and `tfbuild inspect`)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "notes":
                continue
            value = getattr(self, f.name)
            if f.name in _URL_FIELDS:
                value = _redact_any(value)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = [str(v) if isinstance(v, Path) else v for v in value]
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out

    def __repr__(self) -> str:
        # Built from to_dict so that index credentials never reach a log.
        inner = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"BuildSpec({inner})"


_URL_FIELDS = frozenset({"pip_index_url", "pip_extra_index_urls", "conda_channels"})
_KEYS = tuple(f.name for f in fields(BuildSpec) if f.name not in ("source_directory", "notes"))

# Estimator parameters that tfbuild spells differently or does not use.
_ESTIMATOR_HINTS = {
    "framework_version": "tfbuild calls it tensorflow_version",
    "custom_docker_image": "tfbuild calls it custom_docker_base_image",
    "distributed_training": (
        "use distributed_backend (mpi, ps or multiworker) with node_count, "
        "process_count_per_node, worker_count and parameter_server_count"
    ),
    "pip_requirements_file": "list the requirements under pip_packages",
    "pip_requirements_file_path": "list the requirements under pip_packages",
    "conda_dependencies_file": "list the packages under conda_packages and conda_channels",
    "conda_dependencies_file_path": "list the packages under conda_packages and conda_channels",
    "image_registry_details": "set tag to the image name and log in with `docker login`",
    "source_directory": "the folder holding tfbuild.yaml is the source directory; remove it",
}
_AZURE_ONLY = (
    "compute_target",
    "vm_size",
    "vm_priority",
    "use_docker",
    "inputs",
    "shm_size",
    "resume_from",
    "max_run_duration_seconds",
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


# Loading


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
    return _Validator({**data, **given}, src, origins, label, matrix or load_matrix()).run()


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
    origins = {k: source for k in data}
    return _Validator(data, Path(base_dir), origins, source, matrix or load_matrix()).run()


_MAPPING_FIX = "write one `key: value` per line, e.g. `entry_script: train.py`"


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


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that keeps versions such as `3.10` as the text written (no floats) and
    refuses duplicate keys."""


_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, Hashable) and key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first given on line {seen[key] + 1})",
                key_node.start_mark,
            )
        if isinstance(key, Hashable):
            seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node)


_ConfigLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def parse_config_text(text: str, label: str = CONFIG_NAME) -> dict[str, Any]:
    """tfbuild.yaml's text -> its mapping (empty file -> {}). Pure."""
    try:
        data = yaml.load(text, Loader=_ConfigLoader)  # a SafeLoader subclass: no object tags
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "malformed YAML"
        raise SpecError(
            None,
            None,
            f"YAML syntax error: {problem}",
            "fix the YAML there (indentation, a missing ':', or quote a value containing ': ')",
            label,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as e:
        raise SpecError(None, None, f"YAML error: {e}", "fix the file's syntax", label) from None
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


def _looks_like_local_channel(channel: str) -> bool:
    return channel.startswith(("/", "./", "../", "~", "file:"))


def _absolutize_cli_paths(given: dict[str, Any], cwd: Path) -> dict[str, Any]:
    """Command-line paths are relative to where the command runs, not the source dir."""
    out = dict(given)

    def absolute(p: Any) -> Any:
        return str(cwd / Path(p).expanduser()) if isinstance(p, str | Path) else p

    if isinstance(out.get("ca_certs"), str | Path):
        out["ca_certs"] = [out["ca_certs"]]
    if isinstance(out.get("ca_certs"), Sequence):
        out["ca_certs"] = [absolute(p) for p in out["ca_certs"]]
    if isinstance(out.get("conda_channels"), Sequence) and not isinstance(
        out["conda_channels"], str
    ):
        out["conda_channels"] = [
            absolute(c)
            if isinstance(c, str) and _looks_like_local_channel(c) and "://" not in c
            else c
            for c in out["conda_channels"]
        ]
    return out


# Validation


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODULE = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")
_PYTHON = re.compile(r"^3\.\d+$")
_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*$")
# Docker's reference grammar (distribution/reference), without IPv6 hosts.
_REF_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REF_DOMAIN = (
    r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?"
)
_REF_NAME = rf"(?:{_REF_DOMAIN}/)?{_REF_COMPONENT}(?:/{_REF_COMPONENT})*"
_REF_TAG = r"[\w][\w.-]{0,127}"
_REF_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_IMAGE_TAG = re.compile(rf"^{_REF_NAME}(?::{_REF_TAG})?$")
_IMAGE_REF = re.compile(rf"^{_REF_NAME}(?::{_REF_TAG})?(?:@{_REF_DIGEST})?$")


def _scalar_text(value: Any) -> str | None:
    """A YAML scalar as the user wrote it; None when it is not a scalar."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


class _Validator:
    def __init__(
        self,
        data: Mapping[str, Any],
        base_dir: Path,
        origins: Mapping[str, str],
        default_source: str,
        matrix: Matrix,
    ) -> None:
        # A key given as null means "use the default".
        self.data = {k: v for k, v in data.items() if v is not None}
        self.base_dir = base_dir
        self.origins = origins
        self.default_source = default_source
        self.matrix = matrix
        self.notes: list[str] = []

    def fail(self, key: str, value: Any, problem: str, fix: str) -> SpecError:
        return SpecError(key, value, problem, fix, self.origins.get(key, self.default_source))

    # Typed readers

    def text(self, key: str, default: str | None = None) -> str | None:
        if key not in self.data:
            return default
        value = self.data[key]
        text = _scalar_text(value)
        if text is None or isinstance(value, bool):
            raise self.fail(
                key, value, f"{value!r} is not a text value", f"write a single value: {key}: ..."
            )
        return text.strip()

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(
                key, value, f"{value!r} is not true or false", f"write {key}: true or {key}: false"
            )
        return value

    def count(self, key: str, default: int, minimum: int) -> int:
        value = self.data.get(key, default)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(
                key,
                value,
                f"{value!r} is not a whole number",
                f"write a number, e.g. {key}: {max(minimum, 1) + 1}",
            )
        if value < minimum:
            raise self.fail(
                key, value, f"{value} is less than {minimum}", f"set it to {minimum} or more"
            )
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key, ())
        if isinstance(value, str | Path):
            value = [value]
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise self.fail(
                key, value, f"{value!r} is not a list", f"write a YAML list: {key}: [a, b]"
            )
        out = []
        for item in value:
            text = str(item) if isinstance(item, Path) else _scalar_text(item)
            if text is None or not text.strip():
                raise self.fail(
                    key, item, f"the item {item!r} is not a single text value", "list plain values"
                )
            out.append(text.strip())
        return tuple(out)

    def text_map(self, key: str) -> dict[str, str]:
        value = self.data.get(key, {})
        if not isinstance(value, Mapping):
            raise self.fail(
                key, value, f"{value!r} is not a mapping", f"write it as {key}: {{NAME: value}}"
            )
        out = {}
        for k, v in value.items():
            text = _scalar_text(v)
            if not isinstance(k, str) or text is None:
                raise self.fail(
                    key,
                    {k: v},
                    f"the entry {k!r}: {v!r} is not name: value text",
                    "give each entry a text name and a single value (quote it: '')",
                )
            out[k] = text
        return out

    # The whole spec

    def run(self) -> BuildSpec:
        self.check_keys()
        _check_source_directory(self.base_dir, self.default_source)
        base = self.base_dir.resolve()
        entry_script = self.entry_script(base)
        script_params = self.script_params()
        release = self.tensorflow()
        custom_base = self.image_ref("custom_docker_base_image", _IMAGE_REF)
        python_version = self.python_version(release, custom_base)
        use_gpu = self.flag("use_gpu", False)
        if use_gpu and not release.gpu:
            gpu_versions = self.matrix.gpu_tf_versions()
            raise self.fail(
                "use_gpu",
                True,
                f"TensorFlow {release.version} has no GPU build in the compatibility matrix",
                f"use tensorflow_version {' or '.join(gpu_versions) or '(none has one)'}, "
                "or use_gpu: false",
            )
        backend = self.backend()
        counts = self.counts(backend)
        keras = self.keras(release)
        horovod = self.horovod(backend, release, keras)
        return BuildSpec(
            source_directory=base,
            entry_script=entry_script,
            script_params=script_params,
            tensorflow_version=release.version,
            python_version=python_version,
            pip_packages=self.pip_packages(),
            conda_packages=self.conda_packages(),
            conda_channels=self.conda_channels(base),
            apt_packages=self.apt_packages(),
            use_gpu=use_gpu,
            custom_docker_base_image=custom_base,
            distributed_backend=backend,
            **counts,
            environment_variables=MappingProxyType(self.environment_variables()),
            labels=MappingProxyType(self.labels()),
            horovod=horovod,
            pip_index_url=self.url("pip_index_url", self.text("pip_index_url")),
            pip_extra_index_urls=tuple(
                self.url("pip_extra_index_urls", u) for u in self.texts("pip_extra_index_urls")
            ),
            ca_certs=self.ca_certs(base),
            trust_host_ca=self.flag("trust_host_ca", False),
            tag=self.image_ref("tag", _IMAGE_TAG),
            upload_extras=self.upload_extras(),
            keras=keras,
            notes=tuple(self.notes),
        )

    def check_keys(self) -> None:
        for key in self.data:
            if key in _KEYS:
                continue
            if not isinstance(key, str):
                raise self.fail(
                    str(key), key, f"{key!r} is not a key name", "use the names in docs/spec.md"
                )
            if key in _ESTIMATOR_HINTS:
                fix = _ESTIMATOR_HINTS[key]
            elif key in _AZURE_ONLY:
                fix = "it is an Azure ML run setting that tfbuild does not use; remove it"
            else:
                fix = f"{_did_you_mean(key, _KEYS)}the keys are listed in docs/spec.md"
            raise self.fail(key, self.data[key], f"{key!r} is not a tfbuild key", fix)

    def entry_script(self, base: Path) -> str:
        text = self.text("entry_script")
        if not text:
            raise self.fail(
                "entry_script",
                text,
                "is not set",
                "add `entry_script: train.py` to tfbuild.yaml or pass --entry-script",
            )
        if text.startswith("-m"):
            module = text[2:].strip()
            if not _MODULE.match(module):
                raise self.fail(
                    "entry_script",
                    text,
                    f"{module!r} is not a module name",
                    "write it as `-m package.module`",
                )
            return f"-m {module}"
        words = text.split()
        if len(words) > 1 and words[0].endswith((".py", ".sh")):
            raise self.fail(
                "entry_script",
                text,
                f"{text!r} has arguments in it",
                f"set entry_script: {words[0]} and put the arguments under script_params",
            )
        path = PurePosixPath(text)
        if path.is_absolute() or text.startswith("~"):
            raise self.fail(
                "entry_script",
                text,
                f"{text!r} is an absolute path",
                f"give it relative to the source directory {base}, e.g. {path.name}",
            )
        if path.suffix not in (".py", ".sh"):
            raise self.fail(
                "entry_script",
                text,
                f"{text!r} is neither a .py nor a .sh file",
                "name a .py or .sh file in the source directory, or a module: `-m package.module`",
            )
        normal = os.path.normpath(text).replace(os.sep, "/")
        target = (base / path).resolve()  # follows symlinks, so links out are caught too
        if normal == ".." or normal.startswith("../") or not target.is_relative_to(base):
            raise self.fail(
                "entry_script",
                text,
                f"{text!r} is outside the source directory {base}",
                "move the script into the source directory, or build from a folder that holds it",
            )
        if not target.exists():
            hint = _did_you_mean(text, list(_scripts_in(base)))
            raise self.fail(
                "entry_script",
                text,
                f"{text!r} does not exist in {base}",
                f"{hint}give a path relative to the source directory",
            )
        if not target.is_file():
            raise self.fail(
                "entry_script", text, f"{text!r} is not a file", "name a .py or .sh file"
            )
        return normal

    def script_params(self) -> tuple[str, ...]:
        value = self.data.get("script_params", ())
        if isinstance(value, Mapping):
            return tuple(self._params_from_mapping(value))
        if isinstance(value, Sequence) and not isinstance(value, str):
            return self.texts("script_params")
        raise self.fail(
            "script_params",
            value,
            f"{value!r} is neither a list of arguments nor a mapping",
            "write script_params: {'--batch-size': 50} or script_params: ['--batch-size', '50']",
        )

    def _params_from_mapping(self, params: Mapping[Any, Any]) -> Iterator[str]:
        for flag, value in params.items():
            if not isinstance(flag, str):
                raise self.fail(
                    "script_params",
                    flag,
                    f"the argument name {flag!r} is not text",
                    "quote it, e.g. '--epochs': 5",
                )
            if value is True or value is None:  # a bare switch, as the estimator passes it
                yield flag
            elif value is False:
                continue
            elif isinstance(value, list):
                items = [_scalar_text(v) for v in value]
                if None in items:
                    raise self.fail(
                        "script_params",
                        {flag: value},
                        f"the value of {flag} holds something that is not a plain value",
                        "give a plain value or a list of plain values",
                    )
                yield flag
                yield from (i for i in items if i is not None)
            else:
                text = _scalar_text(value)
                if text is None:
                    raise self.fail(
                        "script_params",
                        {flag: value},
                        f"the value of {flag} is a {type(value).__name__}",
                        "give a plain value, e.g. '--lr': 0.01",
                    )
                yield flag
                yield text

    def tensorflow(self) -> TFRelease:
        wanted = self.text("tensorflow_version", self.matrix.default_tensorflow)
        try:
            return self.matrix.tf_release(wanted)
        except UnknownTFVersion as e:
            minors = list(dict.fromkeys(self.matrix.releases[v].minor for v in e.known))
            hint = _did_you_mean(wanted, [*minors, *e.known])
            raise self.fail(
                "tensorflow_version",
                wanted,
                f"{wanted!r} is not a TensorFlow version tfbuild knows",
                f"{hint}use one of {', '.join(e.known)} "
                f"(or a major.minor such as {minors[-1]!r} for its newest patch)",
            ) from None

    def python_version(self, release: TFRelease, custom_base: str | None) -> str:
        default = self.matrix.default_python(release.version)
        py = self.text("python_version", default)
        supported = ", ".join(release.python)
        if not _PYTHON.match(py):
            raise self.fail(
                "python_version",
                py,
                f"{py!r} is not a major.minor Python version",
                f"write it like {default!r} (TensorFlow {release.version} supports {supported})",
            )
        if py not in release.python:
            raise self.fail(
                "python_version",
                py,
                f"TensorFlow {release.version} does not support Python {py}",
                f"use one of {supported}, or leave python_version out for {default}",
            )
        if custom_base is None and self.matrix.debian_suite_for_python(py) is None:
            shipped = [
                f"{p} ({self.matrix.debian_suite_for_python(p)})"
                for p in release.python
                if self.matrix.debian_suite_for_python(p)
            ]
            raise self.fail(
                "python_version",
                py,
                f"no Debian suite the default base image is built from ships Python {py}",
                (f"use {' or '.join(shipped)}, or " if shipped else "")
                + f"set custom_docker_base_image to an image that has Python {py}",
            )
        return py

    def backend(self) -> str:
        value = self.text("distributed_backend", "none").lower()
        if value not in BACKENDS:
            raise self.fail(
                "distributed_backend",
                value,
                f"{value!r} is not a backend",
                f"use one of {', '.join(BACKENDS)}",
            )
        return value

    def counts(self, backend: str) -> dict[str, int]:
        counts = {
            "node_count": self.count("node_count", 1, 1),
            "process_count_per_node": self.count("process_count_per_node", 1, 1),
            "worker_count": self.count("worker_count", 1, 0),
            "parameter_server_count": self.count("parameter_server_count", 0, 0),
        }
        if backend == "ps":
            for key, what in (("worker_count", "worker"), ("parameter_server_count", "server")):
                if counts[key] < 1:
                    raise self.fail(
                        key,
                        counts[key],
                        f"the ps backend needs at least one parameter {what}, got {counts[key]}"
                        if what == "server"
                        else f"the ps backend needs at least one worker, got {counts[key]}",
                        f"set {key}: 1 or more, or use another distributed_backend",
                    )
        return counts

    def keras(self, release: TFRelease) -> str:
        keras = self.text("keras", "legacy")
        if keras not in KERAS_MODES:
            raise self.fail(
                "keras", keras, f"{keras!r} is not a Keras mode", f"use {' or '.join(KERAS_MODES)}"
            )
        if keras == "keras3" and not release.ships_keras3:
            newer = [v for v in self.matrix.known_tf_versions() if self.matrix.releases[v].tf_keras]
            raise self.fail(
                "keras",
                keras,
                f"TensorFlow {release.version} comes with Keras 2 only",
                f"use keras: legacy, or a tensorflow_version with Keras 3 ({', '.join(newer)})",
            )
        return keras

    def horovod(self, backend: str, release: TFRelease, keras: str) -> bool:
        explicit = "horovod" in self.data
        horovod = self.flag("horovod", backend == "mpi")
        if not horovod:
            return False
        if backend != "mpi":
            raise self.fail(
                "horovod",
                True,
                f"Horovod runs under MPI, but distributed_backend is {backend!r}",
                "set distributed_backend: mpi, or remove horovod",
            )
        support = release.horovod
        if not support.supported:
            key = "horovod" if explicit else "distributed_backend"
            buildable = self.matrix.horovod_tf_versions()
            raise self.fail(
                key,
                True if explicit else backend,
                f"Horovod cannot be built against TensorFlow {release.version} ({support.reason})",
                f"use a tensorflow_version Horovod builds against ({', '.join(buildable)}), "
                "or distributed_backend: multiworker, or horovod: false for an mpi4py-only image",
            )
        if not support.verified:
            self.notes.append(
                f"Horovod {support.version} with TensorFlow {release.version} is not verified "
                f"({support.reason}); the image build checks it"
            )
        if keras == "keras3" and release.ships_keras3:
            self.notes.append(
                "horovod.tensorflow.keras needs legacy Keras; with keras: keras3 use "
                "horovod.tensorflow directly"
            )
        return True

    def environment_variables(self) -> dict[str, str]:
        env = self.text_map("environment_variables")
        owned = {"TF_CONFIG": "the agent writes it at run time; remove it"}
        owned |= {
            name: "set keras: legacy or keras: keras3 instead"
            for name in self.matrix.legacy_keras_env
        }
        for name in env:
            if not _ENV_NAME.match(name):
                raise self.fail(
                    "environment_variables",
                    name,
                    f"{name!r} is not a valid variable name",
                    "use letters, digits and _ and do not start with a digit",
                )
            if name in owned:
                raise self.fail(
                    "environment_variables", name, f"{name} is managed by tfbuild", owned[name]
                )
        return env

    def labels(self) -> dict[str, str]:
        labels = self.text_map("labels")
        for name in labels:
            if not name or any(c.isspace() or c == "=" for c in name):
                raise self.fail(
                    "labels",
                    name,
                    f"{name!r} is not a label key",
                    "use a key without spaces or '=', e.g. org.example.team",
                )
        return labels

    def pip_packages(self) -> tuple[str, ...]:
        items = self.texts("pip_packages")
        for item in items:
            try:
                req = parse_pip(item)
            except PackageSpecError as e:
                raise self.fail("pip_packages", item, f"{item!r} {e.problem}", e.fix) from None
            self._refuse_tensorflow("pip_packages", item, req.name)
        return items

    def conda_packages(self) -> tuple[str, ...]:
        items = self.texts("conda_packages")
        for item in items:
            try:
                spec = parse_conda(item)
            except PackageSpecError as e:
                raise self.fail("conda_packages", item, f"{item!r} {e.problem}", e.fix) from None
            self._refuse_tensorflow("conda_packages", item, spec.name)
        return items

    def _refuse_tensorflow(self, key: str, item: str, name: str) -> None:
        if self.matrix.is_tensorflow_distribution(name):
            raise self.fail(
                key,
                item,
                f"{item!r} would replace the image's TensorFlow",
                "remove it and choose the version with tensorflow_version (and use_gpu)",
            )

    def apt_packages(self) -> tuple[str, ...]:
        items = self.texts("apt_packages")
        for item in items:
            try:
                parse_apt(item)
            except PackageSpecError as e:
                raise self.fail("apt_packages", item, f"{item!r} {e.problem}", e.fix) from None
        return items

    def conda_channels(self, base: Path) -> tuple[str, ...]:
        out = []
        for channel in self.texts("conda_channels"):
            if channel.startswith("file:") or (
                "://" not in channel and _looks_like_local_channel(channel)
            ):
                out.append(self._local_channel(channel, base))
            elif "://" in channel:
                out.append(self.url("conda_channels", channel))
            elif _CHANNEL_NAME.match(channel):
                out.append(channel)
            else:
                raise self.fail(
                    "conda_channels",
                    channel,
                    f"{channel!r} is not a channel name, URL or path",
                    "give a name (conda-forge), a URL, or a path starting with / or ./",
                )
        return tuple(out)

    def _local_channel(self, channel: str, base: Path) -> str:
        raw = urlsplit(channel).path if channel.startswith("file:") else channel
        path = (base / Path(raw).expanduser()).resolve()
        if not path.is_dir():
            raise self.fail(
                "conda_channels",
                channel,
                f"the local channel {str(path)!r} is not a directory",
                "check the path (paths in tfbuild.yaml are relative to the source directory)",
            )
        if not any(path.glob("*/repodata.json")):
            raise self.fail(
                "conda_channels",
                channel,
                f"{str(path)!r} has no <subdir>/repodata.json, so it is not a conda channel",
                "index it first, e.g. `conda index DIR` or `rattler-index fs DIR`",
            )
        return str(path)

    def url(self, key: str, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        ok = (parts.scheme in ("http", "https") and bool(parts.hostname)) or parts.scheme == "file"
        if not ok:
            shown = redact_url(url)
            raise self.fail(
                key,
                shown,
                f"{shown!r} is not an http(s) or file URL",
                "give a full URL, e.g. https://pypi.example.com/simple",
            )
        return url

    def ca_certs(self, base: Path) -> tuple[Path, ...]:
        out = []
        for item in self.texts("ca_certs"):
            path = (base / Path(item).expanduser()).resolve()
            if not path.is_file():
                raise self.fail(
                    "ca_certs",
                    item,
                    f"{str(path)!r} is not a file",
                    "give PEM certificate files (paths in tfbuild.yaml are relative to the "
                    "source directory)",
                )
            out.append(path)
        return tuple(out)

    def image_ref(self, key: str, pattern: re.Pattern[str]) -> str | None:
        ref = self.text(key)
        if ref is None:
            return None
        if not pattern.match(ref):
            lower = bool(pattern.match(ref.lower()))
            raise self.fail(
                key,
                ref,
                f"{ref!r} is not a valid image reference"
                + (" (repository names are lower case)" if lower else ""),
                "write it as [registry[:port]/]name[:tag], e.g. localhost:5000/team/train:1",
            )
        return ref

    def upload_extras(self) -> tuple[str, ...]:
        items = self.texts("upload_extras")
        for item in items:
            if item not in UPLOAD_EXTRAS:
                raise self.fail(
                    "upload_extras",
                    item,
                    f"{item!r} is not an upload backend",
                    f"{_did_you_mean(item, UPLOAD_EXTRAS)}use any of {', '.join(UPLOAD_EXTRAS)}",
                )
        return tuple(dict.fromkeys(items))


def _scripts_in(base: Path, limit: int = 2000) -> Iterator[str]:
    """.py/.sh files under base (hidden folders skipped, bounded for huge trees)."""
    seen = 0
    for root, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            seen += 1
            if seen > limit:
                return
            if name.endswith((".py", ".sh")):
                yield (Path(root) / name).relative_to(base).as_posix()
