"""`export_onnx`: after the script succeeds, the agent on rank 0 (the chief) converts
the model it saved in ./outputs to outputs/model.onnx with tf2onnx and checks it with
onnxruntime. Accepted only for TensorFlow releases whose export compat.yaml lists as
verified (their tf2onnx and onnxruntime are installed with the user packages)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from .compat import Matrix, TFRelease
from .fields import Fields, did_you_mean

OPTIONS = ("opset", "model", "fail_job")
DEFAULT_OPSET = 17
OPSETS = range(13, 19)
"""What tf2onnx 1.17 converts to (it targets opsets up to 18)."""


def export_onnx(f: Fields, matrix: Matrix, release: TFRelease) -> dict[str, Any] | None:
    """`true`, or a mapping of opset/model/fail_job -> the options with defaults; None
    when not asked for."""
    value = f.data.get("export_onnx", False)
    if value is False:
        return None
    if value is True:
        given: Mapping[str, Any] = {}
    elif isinstance(value, Mapping):
        given = value
    else:
        raise f.fail(
            "export_onnx", value, f"{value!r} is not true, false or a mapping",
            "write export_onnx: true, or export_onnx: {opset: 17, model: model.keras}",
        )
    for key in given:
        if key not in OPTIONS:
            raise f.fail(
                "export_onnx", {key: given[key]}, f"{key!r} is not an export_onnx option",
                f"{did_you_mean(str(key), OPTIONS)}use {', '.join(OPTIONS)}",
            )
    opset = given.get("opset", DEFAULT_OPSET)
    if isinstance(opset, bool) or not isinstance(opset, int) or opset not in OPSETS:
        raise f.fail(
            "export_onnx", {"opset": opset}, f"opset {opset!r} is not one tf2onnx converts to",
            f"use a whole number from {OPSETS.start} to {OPSETS.stop - 1} "
            f"(default {DEFAULT_OPSET})",
        )
    model = given.get("model")
    if model is not None:
        path = PurePosixPath(str(model).removeprefix("outputs/"))
        if not str(model).strip() or path.is_absolute() or ".." in path.parts:
            raise f.fail(
                "export_onnx", {"model": model}, f"{model!r} is not a path inside ./outputs",
                "give the file or SavedModel folder the script saves, relative to ./outputs, "
                "e.g. model.keras",
            )
        model = path.as_posix()
    fail_job = given.get("fail_job", False)
    if not isinstance(fail_job, bool):
        raise f.fail("export_onnx", {"fail_job": fail_job}, f"{fail_job!r} is not true or false",
                     "write fail_job: true to fail the job when the export fails")
    if release.version not in matrix.onnx_export:
        verified = ", ".join(matrix.onnx_export) or "none yet"
        raise f.fail(
            "export_onnx", value,
            f"no tf2onnx release is verified with TensorFlow {release.version}",
            f"use tensorflow_version {verified}, or remove export_onnx",
        )
    return {"opset": opset, "model": model, "fail_job": fail_job}
