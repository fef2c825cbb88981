"""Issue 16's data-to-ONNX path end to end: the Keras digits example, its data given as
`--data-folder: {download: s3://...}` from a real moto S3 server, trained on two nodes
by `tfbuild run` (outputs uploaded to the same server), exported to ONNX; `model.onnx`
is fetched with `tfbuild runs download` and scored with onnxruntime on THIS host (the
test venv has onnxruntime, not TensorFlow) against the logits TensorFlow computed in
the chief (outputs/predictions.json).

moto listens on docker0's address (the moto_endpoint fixture), which the job's bridge
network reaches. digits.npz is scikit-learn's load_digits() (x: 1797 x 64, y), committed
as a fixture because the host venv has no scikit-learn."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, TEST_AWS, build_project, moto_client

pytestmark = pytest.mark.services

TFBUILD = str(Path(sys.executable).parent / "tfbuild")
DIGITS = Path(__file__).parent / "data" / "digits.npz"


def softmax(z):
    import numpy as np

    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_s3_data_two_nodes_onnx_scores_on_the_host_like_tensorflow(moto_endpoint, tmp_path):
    import numpy as np
    import onnxruntime as ort

    s3 = moto_client(moto_endpoint)
    s3.create_bucket(Bucket="digits")
    s3.create_bucket(Bucket="runs")
    s3.upload_file(str(DIGITS), "digits", "data/digits.npz")

    image = build_project(
        REPO / "examples" / "keras-digits", "tfbuild-test/keras-digits-s3-onnx:1",
        export_onnx=True, upload_extras=["s3"],
        script_params={"--epochs": 2, "--batch-size": 64,
                       "--data-folder": {"download": "s3://digits/data"}},
    )
    env = {**os.environ, **TEST_AWS, "TFBUILD_S3_ENDPOINT_URL": moto_endpoint,
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run([TFBUILD, "run", image, "--nodes", "2", "--upload-to", "s3://runs/e2e"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "input data-folder: fetching s3://digits/data" in done.stdout, done.stdout[-4000:]
    assert "mode=multi-worker task=worker:1 replicas=2" in done.stdout, done.stdout[-4000:]
    run_id = re.search(r"run-\d{8}-\d{6}-[0-9a-f]{6}", done.stderr).group(0)

    # The run record as written (`runs show --json` summarises it without the onnx entry).
    record = json.loads(s3.get_object(Bucket="runs", Key=f"e2e/{run_id}/run.json")["Body"].read())
    assert record["status"] == "Completed", record
    assert record["onnx"]["status"] == "ok", record.get("onnx")
    assert record["onnx"]["max_abs_diff"] <= 1e-4, record["onnx"]

    down = tmp_path / "down"
    got = subprocess.run([TFBUILD, "runs", "download", "s3://runs/e2e", run_id, "outputs",
                          "-o", str(down)], capture_output=True, text=True, timeout=120, env=env)
    assert got.returncode == 0, got.stderr
    predicted = json.loads((down / "outputs" / "predictions.json").read_text())
    tf_logits = np.asarray(predicted["logits"], dtype="float32")
    with np.load(DIGITS) as f:
        x = (f["x"][: predicted["samples"]] / 16.0).astype("float32")
    session = ort.InferenceSession(str(down / "outputs" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    onnx_logits = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert (onnx_logits.argmax(1) == tf_logits.argmax(1)).all()
    diff = float(np.abs(softmax(onnx_logits) - softmax(tf_logits)).max())
    print(f"onnxruntime vs TensorFlow on {len(x)} samples: max abs diff of probabilities "
          f"{diff:.2e}, of logits {float(np.abs(onnx_logits - tf_logits).max()):.2e}")
    assert diff <= 1e-4
