"""The trivial training script of the rendezvous benchmark: says when it started."""

import time

print(f"BENCH-SCRIPT {time.time():.6f}", flush=True)
