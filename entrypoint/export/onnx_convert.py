"""Convert the model a training script saved in ./outputs to ONNX and check it.

Run by the agent (export/onnx_export.py) with the *training* Python, the one that has
TensorFlow, tf2onnx and onnxruntime, as
    python onnx_convert.py OUTPUTS_DIR OPSET [MODEL]
It imports nothing from tfbuild_agent (the agent's own venv has no TensorFlow).

It finds the model (MODEL relative to OUTPUTS_DIR, else model.keras, another .keras or
.h5 file, or a SavedModel folder), converts it with tf2onnx to OUTPUTS_DIR/model.onnx,
runs a fixed random sample through TensorFlow and onnxruntime, and writes
OUTPUTS_DIR/onnx-report.json. The last stdout line is the report as JSON; the exit code
is 0 only when the export succeeded and the outputs agree within the tolerance.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TOLERANCE = 1e-4
ONNX_NAME = "model.onnx"
REPORT_NAME = "onnx-report.json"
SAMPLE_BATCH = 2
FREE_DIM = 8
"""The size given to a model's unknown non-batch dimensions in the sample input."""


class ExportFailed(Exception):
    pass


def find_model(outputs: Path, given: str | None) -> Path:
    if given:
        path = outputs / given
        if not path.exists():
            raise ExportFailed(f"outputs/{given} does not exist (export_onnx.model); "
                               "check what the script saves")
        return path
    if (outputs / "model.keras").is_file():
        return outputs / "model.keras"
    candidates = sorted(outputs.rglob("*.keras")) + sorted(outputs.rglob("*.h5"))
    candidates += sorted(p.parent for p in outputs.rglob("saved_model.pb"))
    if not candidates:
        raise ExportFailed("no model in ./outputs (looked for *.keras, *.h5 and a SavedModel "
                           "folder); save one there, or name it with export_onnx.model")
    return candidates[0]


def _sample(shape: Any, dtype: Any, rng: Any) -> Any:
    import numpy as np

    dims = [SAMPLE_BATCH if i == 0 and d is None else (FREE_DIM if d is None else int(d))
            for i, d in enumerate(shape)]
    np_dtype = np.dtype(dtype)
    if np.issubdtype(np_dtype, np.integer):
        return rng.integers(0, 2, size=dims).astype(np_dtype)
    if np_dtype == np.bool_:
        return rng.integers(0, 2, size=dims).astype(bool)
    return rng.standard_normal(dims).astype(np_dtype)


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [value[k] for k in sorted(value)]
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def convert_keras(path: Path, onnx_path: Path, opset: int) -> tuple[list[Any], dict[str, Any]]:
    """(TensorFlow's outputs, the feed) for a .keras/.h5 file converted with from_keras."""
    import numpy as np
    import tensorflow as tf
    import tf2onnx

    model = tf.keras.models.load_model(str(path), compile=False)
    rng = np.random.default_rng(0)
    specs, feed = [], {}
    for i, tensor in enumerate(model.inputs):
        name = f"input_{i}"
        dtype = tf.as_dtype(tensor.dtype)
        shape = tuple(tensor.shape)
        specs.append(tf.TensorSpec((None, *shape[1:]), dtype, name=name))
        feed[name] = _sample(shape, dtype.as_numpy_dtype, rng)
    try:
        tf2onnx.convert.from_keras(model, input_signature=specs, opset=opset,
                                   output_path=str(onnx_path))
    except Exception:
        # tf2onnx 1.17's from_keras cannot name a Keras 3 Sequential model's outputs
        # (KeyError 'keras_tensor_N'); the model called as a tf.function converts.
        def call(*xs: Any) -> Any:
            return model(list(xs) if len(xs) > 1 else xs[0], training=False)

        tf2onnx.convert.from_function(tf.function(call), input_signature=specs, opset=opset,
                                      output_path=str(onnx_path))
    args = [feed[s.name] for s in specs]
    expected = model(args if len(args) > 1 else args[0], training=False)
    return [np.asarray(t) for t in _as_list(expected)], feed


def convert_saved_model(
    path: Path, onnx_path: Path, opset: int
) -> tuple[list[Any], dict[str, Any]]:
    """The same for a SavedModel folder (its serving_default signature)."""
    import numpy as np
    import tensorflow as tf

    done = subprocess.run(
        [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(path),
         "--output", str(onnx_path), "--opset", str(opset)],
        capture_output=True, text=True,
    )
    if done.returncode != 0:
        raise ExportFailed("tf2onnx could not convert the SavedModel: "
                           + (done.stderr.strip().splitlines() or ["(no message)"])[-1])
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    rng = np.random.default_rng(0)
    _, kwargs = fn.structured_input_signature
    feed = {name: _sample(tuple(spec.shape), spec.dtype.as_numpy_dtype, rng)
            for name, spec in sorted(kwargs.items())}
    out = fn(**{k: tf.constant(v) for k, v in feed.items()})
    # tf2onnx names a signature's inputs and outputs `name:0`.
    feed = {f"{k}:0": v for k, v in feed.items()}
    return [np.asarray(out[k]) for k in sorted(out)], feed


def export(outputs: Path, opset: int, given: str | None) -> dict[str, Any]:
    start = time.monotonic()
    report: dict[str, Any] = {"status": "failed", "onnx": None, "opset": opset,
                              "tolerance": TOLERANCE, "max_abs_diff": None}
    try:
        model = find_model(outputs, given)
        report["model"] = f"outputs/{model.relative_to(outputs).as_posix()}"
        import numpy as np
        import onnxruntime
        import tensorflow as tf
        import tf2onnx

        report |= {"tensorflow": tf.__version__, "tf2onnx": tf2onnx.__version__,
                   "onnxruntime": onnxruntime.__version__}
        onnx_path = outputs / ONNX_NAME
        if model.is_dir():
            expected, feed = convert_saved_model(model, onnx_path, opset)
        else:
            expected, feed = convert_keras(model, onnx_path, opset)
        session = onnxruntime.InferenceSession(str(onnx_path),
                                               providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        if set(names) == set(feed):
            arrays = {n: feed[n] for n in names}
        else:  # Keras 3 names the graph's inputs itself: they come in the model's order
            arrays = dict(zip(names, feed.values(), strict=True))
        got = session.run(None, arrays)
        if len(got) != len(expected):
            raise ExportFailed(f"the ONNX model has {len(got)} outputs, TensorFlow's "
                               f"{len(expected)}")
        diff = max(float(np.max(np.abs(np.asarray(g, dtype=np.float64)
                                       - np.asarray(e, dtype=np.float64))))
                   for g, e in zip(got, expected, strict=True))
        report |= {"onnx": f"outputs/{ONNX_NAME}", "max_abs_diff": diff,
                   "sample": {n: list(a.shape) for n, a in arrays.items()}}
        if diff > TOLERANCE:
            raise ExportFailed(f"onnxruntime's output differs from TensorFlow's by {diff:.3g} "
                               f"(more than {TOLERANCE:g})")
        report["status"] = "ok"
    except ExportFailed as e:
        report["reason"] = str(e)
    except Exception as e:  # any converter error is the export's failure, not the agent's
        report["reason"] = f"{type(e).__name__}: {e}".splitlines()[0][:500]
    report["seconds"] = round(time.monotonic() - start, 1)
    return report


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print("usage: python onnx_convert.py OUTPUTS_DIR OPSET [MODEL]", file=sys.stderr)
        return 2
    outputs = Path(argv[0])
    report = export(outputs, int(argv[1]), argv[2] if len(argv) == 3 else None)
    outputs.mkdir(parents=True, exist_ok=True)
    (outputs / REPORT_NAME).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(json.dumps(report, sort_keys=True))
    return 0 if report["status"] == "ok" else 1


if __name__ == "__main__":
    # Run by path: this folder is sys.path[0], and its modules must not shadow the
    # converter's own imports (onnx, tf2onnx).
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        sys.path.pop(0)
    raise SystemExit(main(sys.argv[1:]))
