"""export_onnx end to end: the Keras digits example built with `export_onnx: true`,
trained on two containers, its model.onnx downloaded with `tfbuild runs download` and
scored with onnxruntime against TensorFlow's predictions of the saved model.keras.

Scoring runs in a container of the same image (its venv has TensorFlow, tf2onnx and
onnxruntime; the test venv has neither), on the downloaded files mounted read-only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import REPO, build_project

from tfbuild.run.launch import new_job
from tfbuild.run.local import LocalJob

TFBUILD = str(Path(sys.executable).parent / "tfbuild")
SCORE = """\
import json, numpy as np, onnxruntime as ort, tensorflow as tf
x = np.random.default_rng(7).standard_normal((16, 64)).astype("float32")
model = tf.keras.models.load_model("/downloaded/outputs/model.keras", compile=False)
tf_pred = np.asarray(model(x, training=False))
session = ort.InferenceSession("/downloaded/outputs/model.onnx", providers=["CPUExecutionProvider"])
onnx_pred = session.run(None, {session.get_inputs()[0].name: x})[0]
print("SCORE " + json.dumps({
    "max_abs_diff": float(np.abs(onnx_pred - tf_pred).max()),
    "same_argmax": bool((onnx_pred.argmax(1) == tf_pred.argmax(1)).all())}))
"""


def test_two_node_training_exports_a_model_that_scores_the_same(docker_client, tmp_path):
    image = build_project(REPO / "examples" / "keras-digits", "tfbuild-test/keras-digits-onnx:1",
                          export_onnx=True)
    store = tmp_path / "store"
    launch = new_job(image, 2, upload_to=f"file://{store}", script_args=("--epochs", "2"),
                     backend="multiworker")
    assert LocalJob(launch).run() == 0
    record = json.loads((store / launch.run_id / "run.json").read_text())
    assert record["status"] == "Completed", record
    assert record["onnx"]["status"] == "ok", record["onnx"]
    assert record["onnx"]["max_abs_diff"] <= 1e-4

    down = tmp_path / "down"
    done = subprocess.run([TFBUILD, "runs", "download", str(store), launch.run_id, "outputs",
                           "-o", str(down)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads((down / "outputs" / "onnx-report.json").read_text())
    assert report["status"] == "ok" and report["model"] == "outputs/model.keras"

    out = docker_client.containers.run(
        image, entrypoint=["/opt/tfbuild/venv/bin/python", "-c", SCORE],
        volumes={str(down): {"bind": "/downloaded", "mode": "ro"}}, remove=True,
        environment={"TF_CPP_MIN_LOG_LEVEL": "2"},
    ).decode()
    score = json.loads(out.split("SCORE ", 1)[1].splitlines()[0])
    assert score["same_argmax"], score
    assert score["max_abs_diff"] <= 1e-4, score
