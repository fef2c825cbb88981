"""tfbuild-agent: the entrypoint of every training image tfbuild builds.

It discovers the job's peers, works out this container's role, exports TF_CONFIG
(or MPI ranks), runs the entry script and keeps ./outputs and ./logs in a store.
Only its own light dependencies (watchdog, fsspec) are installed into images.

    cli, runner    the commands; runner is the main path (reads the environment once)
    settings       AgentSettings and the table of every TFBUILD_* variable
    jobspec        the baked job.json + overrides
    discovery/     who the peers are (one module per source, chain.py orders them)
    topology       roles, ranks, TF_CONFIG (pure, golden-tested)
    control/       rendezvous and the job control channel between agents
    launch/        starting and supervising the script; launch/mpi/ for the mpi backend
    recorder       run records + the Syncer's lifecycle, the same for every backend
    runrecord      the run record document (pure)
    sync/          uploads of ./outputs, ./logs and records to a store
    contract       values the builder and the agent share
    errors         every error class, under AgentError
"""

__version__ = "0.1.0"
