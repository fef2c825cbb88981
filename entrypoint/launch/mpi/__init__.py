"""The `mpi` backend on one node (docs/mpi.md). See node.py for the pieces."""
