"""Spec validation from a plain mapping, as the spec tests use it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfbuild.spec import BuildSpec, SpecError, spec_from_mapping


def spec(proj: Path, **data) -> BuildSpec:
    """The spec of `data` (entry_script defaults to train.py) for the project `proj`."""
    return spec_from_mapping({"entry_script": "train.py", **data}, proj)


def fails(proj: Path, **data) -> SpecError:
    """The SpecError `data` must raise."""
    with pytest.raises(SpecError) as e:
        spec(proj, **data)
    return e.value
