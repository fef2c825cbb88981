"""A probe entry script for agent tests: reports what the agent gave it, then
behaves as told by --mode (exit, sleep until SIGTERM, fail after a delay)."""

import argparse
import json
import os
import pathlib
import signal
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("--mode", default="exit", choices=["exit", "wait", "fail-rank"])
p.add_argument("--fail-rank", type=int, default=-1)
p.add_argument("--seconds", type=float, default=60)
p.add_argument("--marker", default="")
p.add_argument("--tag", default="")
args = p.parse_args()

info = {k: os.environ.get(k) for k in ("TF_CONFIG", "RANK", "WORLD_SIZE", "TFBUILD_TASK",
                                       "TFBUILD_RUN_ID", "MASTER_ADDR")}
info["argv"] = sys.argv[1:]
print("PROBE " + json.dumps(info, sort_keys=True), flush=True)


def on_term(signum, frame):
    if args.marker:
        pathlib.Path(args.marker).write_text(f"SIGTERM in {info['TFBUILD_TASK']}")
    print("probe: got SIGTERM", flush=True)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


signal.signal(signal.SIGTERM, on_term)
if args.mode == "wait":
    time.sleep(args.seconds)
elif args.mode == "fail-rank" and int(info["RANK"] or 0) == args.fail_rank:
    time.sleep(2)
    sys.exit(7)
elif args.mode == "fail-rank":
    time.sleep(args.seconds)
