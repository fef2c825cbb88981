"""mpi4py job for the MPI backend tests: every rank adds rank+1 with an allreduce
and prints what it got; with --fail-rank N, rank N raises while the others wait in
a barrier (so only mpirun's abort can end them)."""

import argparse
import json
import os
import socket
import time

from mpi4py import MPI

p = argparse.ArgumentParser()
p.add_argument("--fail-rank", type=int, default=-1)
args = p.parse_args()

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
total = comm.allreduce(rank + 1, op=MPI.SUM)
seen = {k: os.environ.get(k) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                                       "NODE_RANK", "MASTER_ADDR", "TFBUILD_TASK",
                                       "TFBUILD_RUN_ID", "TFBUILD_JOB_TOKEN")}
print("ALLREDUCE " + json.dumps({"rank": rank, "size": size, "sum": total,
                                 "host": socket.gethostname(), "env": seen}), flush=True)
if rank == args.fail_rank:
    time.sleep(1)
    raise RuntimeError(f"rank {rank} fails on purpose")
if args.fail_rank >= 0:
    comm.Barrier()  # never completes: the failing rank does not arrive
