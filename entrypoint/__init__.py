"""tfbuild-agent: the entrypoint of every training image tfbuild builds.

It discovers the job's peers, works out this container's role, exports TF_CONFIG
(or MPI ranks), runs the entry script and keeps ./outputs and ./logs in a store.
Only its own light dependencies (watchdog, fsspec) are installed into images.
"""

__version__ = "0.1.0"
