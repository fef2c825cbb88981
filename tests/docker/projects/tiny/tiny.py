"""The scale tests' entry script: no TensorFlow, only what the agent gives it.

--end-at EPOCH   exit 0 at that wall-clock second (every container ends on the same one)
--end-file PATH  the same, with EPOCH read from PATH once it exists (the test writes it
                 when every container runs, so slow container starts cannot spread the end)
--burn SECONDS   before ending, keep one CPU at 100% for that long (a graph-building
                 stall); with --end-file it starts when the file appears, so all burn at once
--wait SECONDS   or just sleep (for kill -9 / docker pause tests)
"""

import argparse
import json
import os
import time

p = argparse.ArgumentParser()
p.add_argument("--end-at", type=float, default=0.0)
p.add_argument("--end-file", default="")
p.add_argument("--burn", type=float, default=0.0)
p.add_argument("--wait", type=float, default=0.0)
args = p.parse_args()
print("TINY " + json.dumps({"task": os.environ.get("TFBUILD_TASK"),
                            "rank": os.environ.get("RANK")}), flush=True)
end_at = args.end_at
if args.end_file:
    while not os.path.exists(args.end_file):
        time.sleep(0.2)
    with open(args.end_file) as f:
        end_at = float(f.read())
stop_burning = time.monotonic() + args.burn
while time.monotonic() < stop_burning:
    sum(i * i for i in range(10000))
if args.wait:
    time.sleep(args.wait)
if end_at:
    time.sleep(max(0.0, end_at - time.time()))
print("TINY done", flush=True)
