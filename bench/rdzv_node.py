"""One tfbuild node of the loopback rendezvous benchmark (started by section_rendezvous).

    python rdzv_node.py PORT NODES IDENTITY SCRIPT|-

Joins the rendezvous at 127.0.0.1:PORT the way the agent does (whoever binds the port
serves), prints when it was ready to join and when the job formed, runs SCRIPT as the
agent would (unless it is `-`), then keeps its channel open until the bench stops it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tfbuild_agent.control.client import join_rendezvous
from tfbuild_agent.control.config import settings_from_env


def log(message: str) -> None:
    print(f"{time.time():.3f} {message}", file=sys.stderr, flush=True)


def main() -> int:
    port, nodes, identity, script = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    settings = settings_from_env(os.environ, host="127.0.0.1", port=port, node_count=nodes,
                                 hostname=identity)
    ready = time.time()
    channel = join_rendezvous(settings, log, timeout=300)
    rank = channel.membership.node_rank
    print(f"BENCH-FORMED {ready:.6f} {time.time():.6f} rank {rank}", flush=True)
    if script != "-":
        subprocess.run([sys.executable, "-u", script], check=True)
    time.sleep(3600)  # node 0 serves the channel: stay until the bench ends the job
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
