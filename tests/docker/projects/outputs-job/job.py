"""A job for `tfbuild run` tests: writes known bytes to ./outputs (per task), and
with --wait sleeps until SIGTERM, then writes one more output and exits 143."""

import hashlib
import os
import pathlib
import signal
import sys
import time


def payload(task: str) -> bytes:
    return hashlib.sha256(task.encode()).digest() * 4096  # 128 KiB, different per task


task = os.environ.get("TFBUILD_TASK", "unknown")
out = pathlib.Path("outputs")
(out / "sub").mkdir(parents=True, exist_ok=True)
(out / "data.bin").write_bytes(payload(task))
(out / "sub" / "note.txt").write_text(f"hello from {task}\n")
shm = os.statvfs("/dev/shm")
print(f"JOB {task} argv={sys.argv[1:]} shm={shm.f_blocks * shm.f_frsize}", flush=True)


def on_term(signum, frame):
    (out / "late.txt").write_text(f"stopped {task}\n")
    print(f"JOB {task} got SIGTERM", flush=True)
    sys.exit(143)


if "--wait" in sys.argv:
    signal.signal(signal.SIGTERM, on_term)
    time.sleep(600)
if "--fail" in sys.argv:
    sys.exit(3)
