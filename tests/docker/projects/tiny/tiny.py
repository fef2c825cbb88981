"""The scale tests' entry script: no TensorFlow, only what the agent gives it.

--end-at EPOCH   exit 0 at that wall-clock second (every container ends on the same one)
--burn SECONDS   first keep one CPU at 100% for that long (a graph-building stall)
--wait SECONDS   or just sleep (for kill -9 / docker pause tests)
"""

import argparse
import json
import os
import time

p = argparse.ArgumentParser()
p.add_argument("--end-at", type=float, default=0.0)
p.add_argument("--burn", type=float, default=0.0)
p.add_argument("--wait", type=float, default=0.0)
args = p.parse_args()
print("TINY " + json.dumps({"task": os.environ.get("TFBUILD_TASK"),
                            "rank": os.environ.get("RANK")}), flush=True)
stop_burning = time.monotonic() + args.burn
while time.monotonic() < stop_burning:
    sum(i * i for i in range(10000))
if args.wait:
    time.sleep(args.wait)
if args.end_at:
    time.sleep(max(0.0, args.end_at - time.time()))
print("TINY done", flush=True)
