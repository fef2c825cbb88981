"""Data inputs: `{download: URI}` / `{mount: URI}` values in `script_params` (the path
goes into the script's argv, as the estimator's `ds.as_download()` / `ds.as_mount()`)
and the top-level `inputs:` mapping (name -> URI, `{uri, mode}` or `{download: URI}`;
the path is /app/inputs/<name> and TFBUILD_INPUT_<NAME>). The agent's planning module
(`tfbuild_agent.inputs.plan`) owns names, URIs and placeholders; this module checks
what the user wrote against it and against the image's upload extras."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from tfbuild_agent.contract import INPUT_MODES
from tfbuild_agent.inputs.plan import (
    NAME,
    Input,
    env_name,
    extra_for,
    name_from_flag,
    placeholder,
    uri_problem,
)

from .fields import Fields

_FORMS = "{download: s3://bucket/train} or {mount: file:///mnt/data}"


def is_input_value(value: Any) -> bool:
    """A script param value that asks for a data input rather than a plain value."""
    return isinstance(value, Mapping) and bool(set(value) & {*INPUT_MODES, "uri", "mode"})


def _uri_and_mode(f: Fields, key: str, name: str, value: Any) -> tuple[str, str]:
    """URI and mode of one input as written: URI, {download|mount: URI} or {uri, mode}."""
    if isinstance(value, str):
        uri, mode = value, "download"
    elif isinstance(value, Mapping) and set(value) <= {"uri", "mode"} and "uri" in value:
        uri, mode = value["uri"], value.get("mode", "download")
    elif isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in INPUT_MODES:
        mode, uri = next(iter(value.items()))
    else:
        raise f.fail(key, {name: value}, f"input {name!r} is neither a URI nor {_FORMS}",
                     f"write {name}: {_FORMS}, or {{uri: URI, mode: download}}")
    if mode not in INPUT_MODES:
        raise f.fail(key, {name: value}, f"input {name!r} has mode {mode!r}",
                     f"use mode: {' or mode: '.join(INPUT_MODES)}")
    problem = uri_problem(uri)
    if problem:
        raise f.fail(key, {name: value}, f"input {name!r}: {problem[0]}", problem[1])
    return str(uri).strip(), str(mode)


def list_flag(params: Sequence[Any], i: int) -> str:
    """What names the input at `params[i]` of a list: the flag before it, else input<i>."""
    previous = str(params[i - 1]) if i > 0 else ""
    return previous if previous.startswith("-") else f"input{i}"


def param_token(f: Fields, flag: str, value: Any) -> str:
    """The argv token baked for an input script param (the agent puts the path there)."""
    name = name_from_flag(flag)
    _uri_and_mode(f, "script_params", flag, value)
    return placeholder(name)


def _param_inputs(f: Fields) -> Iterator[Input]:
    params = f.data.get("script_params", ())
    pairs: list[tuple[str, Any]] = []
    if isinstance(params, Mapping):
        pairs = [(str(k), v) for k, v in params.items()]
    elif isinstance(params, Sequence) and not isinstance(params, str):
        pairs = [(list_flag(params, i), v) for i, v in enumerate(params) if is_input_value(v)]
    for flag, value in pairs:
        if is_input_value(value):
            uri, mode = _uri_and_mode(f, "script_params", flag, value)
            yield Input(name_from_flag(flag), uri, mode, arg=True)


def inputs(f: Fields, upload_extras: Sequence[str]) -> tuple[Input, ...]:
    """Every input of the spec: script-param inputs first, then the `inputs:` mapping;
    names unique, URIs usable, the store's backend in the image."""
    found = list(_param_inputs(f))
    raw = f.data.get("inputs", {})
    if not isinstance(raw, Mapping):
        raise f.fail("inputs", raw, f"{raw!r} is not a mapping of names to URIs",
                     "write inputs: {train: s3://bucket/train, labels: {mount: file:///mnt/l}}")
    for name, value in raw.items():
        if not isinstance(name, str) or not NAME.match(name):
            raise f.fail("inputs", {name: value}, f"{name!r} is not a usable input name",
                         "use letters, digits, _ and -, starting with a letter or _ (it "
                         "becomes the folder inputs/<name> and the variable "
                         "TFBUILD_INPUT_<NAME>)")
        uri, mode = _uri_and_mode(f, "inputs", name, value)
        found.append(Input(name, uri, mode))
    seen: dict[str, Input] = {}
    for item in found:
        key = "script_params" if item.arg else "inputs"
        var = env_name(item.name)
        if var in seen:
            raise f.fail(key, item.name, f"inputs {seen[var].name!r} and {item.name!r} both "
                         f"become {var} (script param inputs are named after their flag)",
                         "rename one of them")
        seen[var] = item
        extra = extra_for(item.uri)
        if extra and extra not in upload_extras:
            raise f.fail(key, item.uri, f"input {item.name!r} reads {item.uri.split('://')[0]}:// "
                         f"but the image gets no {extra} backend",
                         f"add `upload_extras: [{extra}]` to tfbuild.yaml (or pass "
                         f"--upload-extra {extra})")
    return tuple(found)
