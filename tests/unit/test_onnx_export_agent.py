"""export_onnx: the spec key, what the image and job.json get, and the real agent on this
host converting (or failing to convert) what a script saved in ./outputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tfbuild.image.build import job_for
from tfbuild.image.render import image_layers, render_dockerfile
from tfbuild.spec import SpecError, spec_from_mapping
from tfbuild_agent.export.onnx_export import last_json_line, summary
from tfbuild_agent.jobspec import load_job

ENTRYPOINT = Path(__file__).resolve().parents[2] / "entrypoint"


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "train.py").write_text("")
    return root


def spec(proj: Path, **data):
    return spec_from_mapping({"entry_script": "train.py", **data}, proj)


def fails(proj: Path, **data) -> SpecError:
    with pytest.raises(SpecError) as e:
        spec(proj, **data)
    assert e.value.field == "export_onnx"
    return e.value


def test_true_gives_the_defaults_and_false_nothing(proj):
    assert spec(proj, export_onnx=True).export_onnx == {
        "opset": 17, "model": None, "fail_job": False}
    assert spec(proj, export_onnx=False).export_onnx is None
    assert spec(proj).export_onnx is None
    options = {"opset": 15, "model": "outputs/saved", "fail_job": True}
    assert spec(proj, export_onnx=options).export_onnx == {
        "opset": 15, "model": "saved", "fail_job": True}


@pytest.mark.parametrize(
    ("value", "problem", "fix"),
    [
        ("yes", "is not true, false or a mapping", "export_onnx: true"),
        ({"opst": 17}, "'opst' is not an export_onnx option", "did you mean 'opset'?"),
        ({"opset": 7}, "opset 7 is not one tf2onnx converts to", "from 13 to 18"),
        ({"model": "../model.keras"}, "is not a path inside ./outputs", "relative to ./outputs"),
        ({"fail_job": "yes"}, "'yes' is not true or false", "fail_job: true"),
    ],
)
def test_bad_options_name_the_fix(proj, value, problem, fix):
    e = fails(proj, export_onnx=value)
    assert problem in e.problem and fix in e.fix, str(e)


def test_only_releases_with_a_verified_tf2onnx_accept_it(proj):
    e = fails(proj, export_onnx=True, tensorflow_version="2.18.1")
    assert "no tf2onnx release is verified with TensorFlow 2.18.1" in e.problem
    assert "2.21.0" in e.fix


def test_the_image_gets_the_verified_converter_and_job_json_the_options(proj):
    s = spec(proj, export_onnx={"fail_job": True}, pip_packages=["rich"])
    text = render_dockerfile(image_layers(s))
    install = next(line for line in text.splitlines() if "--prefix /opt/tfbuild/layers/us" in line)
    assert install.endswith("rich tf2onnx==1.17.0 onnxruntime==1.32.0 \\")
    baked = json.loads(job_for(s).to_json())
    assert baked["export_onnx"] == {"opset": 17, "model": None, "fail_job": True}
    assert load_job(baked, {}).export_onnx == baked["export_onnx"]
    assert load_job(baked, {"TFBUILD_EXPORT_ONNX": "0"}).export_onnx is None


def test_the_record_entry_comes_from_the_converters_last_json_line():
    out = 'noise\n{"status": "ok", "onnx": "outputs/model.onnx", "max_abs_diff": 1e-07}\n'
    report = last_json_line(out)
    assert summary(report) == {"status": "ok", "path": "outputs/model.onnx",
                               "report": "outputs/onnx-report.json", "max_abs_diff": 1e-07,
                               "reason": ""}
    assert last_json_line("no json here\n") is None


def run_agent(work: Path, python: str, export: str) -> subprocess.CompletedProcess:
    lib = work.parent / "lib"
    lib.mkdir(exist_ok=True)
    if not (lib / "tfbuild_agent").exists():
        (lib / "tfbuild_agent").symlink_to(ENTRYPOINT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFBUILD_")}
    env.update({"TFBUILD_ENTRY_SCRIPT": "train.py", "TFBUILD_RUN_ID": "run-onnx",
                "TFBUILD_EXPORT_ONNX": export, "PYTHONPATH": str(lib)})
    return subprocess.run([python, "-m", "tfbuild_agent", "run"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=900)


def record(work: Path, task: str = "rank-0") -> dict:
    return json.loads((work / "logs" / ".tfbuild" / f"run-{task}.json").read_text())


@pytest.mark.parametrize("fail_job", [False, True])
def test_a_failed_export_is_recorded_and_fails_the_job_only_if_asked(tmp_path, fail_job):
    """No model in ./outputs: the converter says so before it needs TensorFlow, so this
    runs with the test's own Python."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "train.py").write_text("print('trained, saved nothing')\n")
    done = run_agent(work, sys.executable, json.dumps({"fail_job": fail_job}))
    rec = record(work)
    assert rec["onnx"]["status"] == "failed", rec
    assert rec["onnx"]["reason"].startswith("no model in ./outputs"), rec
    assert json.loads((work / "outputs" / "onnx-report.json").read_text())["status"] == "failed"
    if fail_job:
        assert done.returncode == 1, done.stderr
        assert rec["status"] == "Failed"
        assert rec["reason"].startswith("ONNX export failed: no model"), rec
    else:
        assert done.returncode == 0, done.stderr
        assert rec["status"] == "Completed", rec
        assert "the training result is kept" in done.stderr


def tf_python() -> str | None:
    """A Python with tensorflow, tf2onnx and onnxruntime (TFBUILD_TEST_TF_PYTHON): the
    conversion itself needs them, and the test venv has no TensorFlow."""
    python = os.environ.get("TFBUILD_TEST_TF_PYTHON", "")
    return python if python and shutil.which(python) else None


KERAS_SCRIPT = """\
import numpy as np, pathlib, tensorflow as tf
keras = tf.keras
model = keras.Sequential([keras.layers.Input(shape=(64,)),
                          keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
rng = np.random.default_rng(1)
model.fit(rng.standard_normal((64, 64)), rng.integers(0, 10, 64), epochs=1, verbose=0)
pathlib.Path("outputs").mkdir(exist_ok=True)
model.save("outputs/model.keras")
"""


@pytest.mark.skipif(tf_python() is None, reason="set TFBUILD_TEST_TF_PYTHON to a Python with "
                    "tensorflow, tf2onnx and onnxruntime (the image's venv has them)")
@pytest.mark.parametrize(("legacy", "saved"), [("1", ""), ("0", ""), ("1", "saved")],
                         ids=["tf-keras", "keras3", "savedmodel"])
def test_the_saved_model_is_converted_and_checked(tmp_path, legacy, saved, monkeypatch):
    monkeypatch.setenv("TF_USE_LEGACY_KERAS", legacy)
    work = tmp_path / "work"
    work.mkdir()
    script = KERAS_SCRIPT + (f"tf.saved_model.save(model, 'outputs/{saved}')\n" if saved else "")
    (work / "train.py").write_text(script)
    options = json.dumps({"model": saved}) if saved else "1"
    done = run_agent(work, tf_python() or "", options)
    assert done.returncode == 0, done.stderr[-3000:]
    rec = record(work)
    assert rec["status"] == "Completed"
    assert rec["onnx"]["status"] == "ok", rec["onnx"]
    assert rec["onnx"]["path"] == "outputs/model.onnx"
    assert rec["onnx"]["max_abs_diff"] <= 1e-4
    assert (work / "outputs" / "model.onnx").stat().st_size > 1000
    report = json.loads((work / "outputs" / "onnx-report.json").read_text())
    assert report["model"] == f"outputs/{saved or 'model.keras'}" and report["tf2onnx"]
