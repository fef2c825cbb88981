"""A stand-in training script: writes outputs and TensorBoard-like logs over time.

    python sync_writer.py WORKDIR

Phase 1 writes metrics files, a model file in slow chunks (open for ~1 s), a log and an
event file that stay open, then creates WORKDIR/phase1.done and waits (bounded) for
WORKDIR/go. Phase 2 writes more of everything, rewrites one file, closes all and exits.
The test decides what happens to the store between the phases.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from sync_frames import frame

MODEL_CHUNK = 256 * 1024
MODEL_CHUNKS = 4


def main(workdir: Path) -> int:
    out, logs = workdir / "outputs", workdir / "logs"
    (out / "model").mkdir(parents=True, exist_ok=True)
    (logs / "tb").mkdir(parents=True, exist_ok=True)
    log = open(logs / "train.log", "w")  # noqa: SIM115 - kept open like a real log
    events = open(logs / "tb" / f"events.out.tfevents.{int(time.time())}.host", "wb")  # noqa: SIM115
    events.write(frame(b"brain.Event:2"))
    events.flush()
    step = 0

    def train_step() -> None:
        nonlocal step
        log.write(f"step {step} loss {1.0 / (step + 1):.4f}\n")
        log.flush()
        events.write(frame(json.dumps({"step": step, "loss": 1.0 / (step + 1)}).encode()))
        events.flush()
        step += 1

    for i in range(3):
        (out / f"metrics-{i}.json").write_text(json.dumps({"epoch": i, "acc": 0.5 + i / 10}))
        train_step()
        time.sleep(0.05)
    with open(out / "model" / "weights.bin", "wb") as f:
        for i in range(MODEL_CHUNKS):
            f.write(bytes([i]) * MODEL_CHUNK)
            f.flush()
            train_step()
            time.sleep(0.25)
    (workdir / "phase1.done").touch()
    deadline = time.monotonic() + 60
    while not (workdir / "go").exists():
        if time.monotonic() > deadline:
            print("sync_writer: no go file within 60 s", file=sys.stderr)
            return 3
        time.sleep(0.02)
    for i in range(3, 6):
        (out / f"metrics-{i}.json").write_text(json.dumps({"epoch": i, "acc": 0.5 + i / 10}))
        train_step()
        time.sleep(0.05)
    (out / "metrics-0.json").write_text(json.dumps({"epoch": 0, "acc": 0.99, "rewritten": True}))
    (out / "final.txt").write_bytes(os.urandom(3000))
    log.write("done\n")
    log.close()
    events.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
