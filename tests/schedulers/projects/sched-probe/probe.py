"""The scheduler tests' entry script: reports what the agent gave it (a PROBE line and
outputs/rank-<RANK>.json), then exits as told. No TensorFlow: the scheduler tests are
about discovery, ranks, signals, exit codes and uploads, not training.

--seconds N      stay alive N seconds (a job to kill or cancel mid-run)
--exit-code C    exit with C (on --exit-rank only, default every rank)
On SIGTERM it writes outputs/term-rank-<RANK>.txt and exits 143, like a training
script that saves a checkpoint when its scheduler stops it.
"""

import argparse
import json
import os
import pathlib
import signal
import sys
import time

KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK", "TF_CONFIG",
        "TFBUILD_TASK", "TFBUILD_RUN_ID", "MASTER_ADDR", "SLURM_JOB_ID", "SLURM_PROCID",
        "PMI_RANK", "OMPI_COMM_WORLD_RANK")

p = argparse.ArgumentParser()
p.add_argument("--seconds", type=float, default=0.0)
p.add_argument("--exit-code", type=int, default=0)
p.add_argument("--exit-rank", type=int, default=-1)
args = p.parse_args()

info = {k: os.environ[k] for k in KEYS if k in os.environ}
rank = info.get("RANK", "0")
outputs = pathlib.Path("outputs")
outputs.mkdir(exist_ok=True)
(outputs / f"rank-{rank}.json").write_text(json.dumps(info, sort_keys=True))
print("PROBE " + json.dumps(info, sort_keys=True), flush=True)


def on_term(signum, frame):
    (outputs / f"term-rank-{rank}.txt").write_text(f"SIGTERM in {info.get('TFBUILD_TASK')}")
    print(f"probe: rank {rank} got SIGTERM, saved", flush=True)
    sys.exit(143)


signal.signal(signal.SIGTERM, on_term)
deadline = time.monotonic() + args.seconds
while time.monotonic() < deadline:
    time.sleep(0.2)
if args.exit_rank in (-1, int(rank)):
    sys.exit(args.exit_code)
