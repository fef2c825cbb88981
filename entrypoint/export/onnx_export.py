"""export_onnx on the agent's side: after the script succeeded on rank 0 (the chief),
run onnx_convert.py with the training Python, bounded, and sum up its report for the
run record. The training result is kept whatever happens; `fail_job` decides whether a
failed export fails the job."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..contract import ONNX_EXPORT_TIMEOUT_SECONDS

CONVERTER = Path(__file__).with_name("onnx_convert.py")
REPORT = "outputs/onnx-report.json"


@dataclass
class ExportResult:
    ok: bool
    fail_job: bool
    reason: str = ""
    record: dict[str, Any] = field(default_factory=dict)
    """What the run record says under `onnx`."""


def summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """The run record's `onnx` entry from the converter's report. Pure."""
    return {
        "status": report.get("status", "failed"),
        "path": report.get("onnx"),
        "report": REPORT,
        "max_abs_diff": report.get("max_abs_diff"),
        "reason": report.get("reason", ""),
    }


def last_json_line(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def run_export(
    options: Mapping[str, Any],
    python: str,
    workdir: Path,
    env: Mapping[str, str],
    log: Callable[[str], None],
    timeout: float = ONNX_EXPORT_TIMEOUT_SECONDS,
) -> ExportResult:
    fail_job = bool(options.get("fail_job"))
    argv = [python, str(CONVERTER), str(Path(workdir) / "outputs"), str(options.get("opset", 17))]
    if options.get("model"):
        argv.append(str(options["model"]))
    log(f"onnx: exporting the model in ./outputs with tf2onnx (opset {argv[3]}; "
        f"bounded to {timeout:g} s)")
    report: dict[str, Any] | None = None
    try:
        done = subprocess.run(argv, cwd=workdir, env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"},
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        report = last_json_line(done.stdout)
        if report is None:
            tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            report = {"status": "failed",
                      "reason": f"the converter ended with exit code {done.returncode}: {tail}"}
    except subprocess.TimeoutExpired:
        report = {"status": "failed", "reason": f"the export did not finish within {timeout:g} s"}
    except OSError as e:
        report = {"status": "failed", "reason": f"cannot start {python}: {e.strerror}"}
    record = summary(report)
    ok = record["status"] == "ok"
    if ok:
        log(f"onnx: wrote {record['path']} (max abs difference from TensorFlow "
            f"{record['max_abs_diff']:.3g}; report {REPORT})")
    else:
        log(f"onnx: export failed: {record['reason']}"
            + ("" if fail_job else " (the training result is kept; fail_job: false)"))
    return ExportResult(ok, fail_job, record["reason"], record)
