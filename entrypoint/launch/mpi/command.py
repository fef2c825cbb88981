"""Pure parts of an MPI job: settings from the environment, the mpirun argv, which
variables go to the ranks, and what mpirun's output says about a failure.
Unit-tested in tests/unit/test_mpi_command.py; docs/mpi.md explains every flag."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ...errors import ConfigError
from ...jobspec import JobSpec

EXPORT_NAMES = ("PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONHASHSEED")
EXPORT_PREFIXES = ("TFBUILD_", "TF_", "HOROVOD_", "NCCL_", "KERAS_", "OMP_")
NOT_EXPORTED = frozenset({
    "TFBUILD_JOB_TOKEN",  # a secret the ranks do not need
    "TFBUILD_NODE_RANK",  # the rest differ per node: each node keeps its own
    "TFBUILD_NODE_ID",
    "TFBUILD_ADVERTISE_ADDR",
    "TFBUILD_RENDEZVOUS_SERVE",
    "TF_CONFIG",
})
HOSTS_VAR = "TFBUILD_MPI_HOSTS"
"""Set for mpirun and exported: every rank's wrapper (mpi-rank) reads the node list here."""
LAUNCH_PORT_OFFSET = 1
"""The launch channel listens on control_port + 1 unless TFBUILD_MPI_LAUNCH_PORT says."""
LAUNCH_WAIT_EXTRA = 60.0
"""Non-launcher nodes wait this much longer for the launch than node 0 waits for them."""


@dataclass(frozen=True)
class MpiSettings:
    launch_port: int
    peer_timeout: float
    """How long node 0 waits for every other agent's launch channel."""
    launch_timeout: float
    """How long the other nodes wait for node 0 to launch their daemon."""
    interface: str | None
    """TFBUILD_MPI_IFACE: an interface name or CIDR for Open MPI's TCP; None = detect."""
    extra_args: tuple[str, ...]
    """TFBUILD_MPIRUN_ARGS, added before the command."""
    extra_exports: tuple[str, ...]
    """TFBUILD_MPI_EXPORT: more variable names for the ranks."""


def mpi_settings(env: Mapping[str, str], job: JobSpec, discovery_timeout: float) -> MpiSettings:
    port = job.control_port + LAUNCH_PORT_OFFSET
    text = env.get("TFBUILD_MPI_LAUNCH_PORT", "").strip()
    if text:
        if not text.isdigit() or not 0 < int(text) < 65536:
            raise ConfigError(
                f"TFBUILD_MPI_LAUNCH_PORT={text!r} is not a port; set it to 1-65535 on every node"
            )
        port = int(text)
    if port in (job.control_port, job.port):
        raise ConfigError(
            f"the MPI launch port {port} collides with the job's "
            f"{'control' if port == job.control_port else 'task'} port; set "
            "TFBUILD_MPI_LAUNCH_PORT to a free port on every node"
        )
    launch_timeout = discovery_timeout + LAUNCH_WAIT_EXTRA
    text = env.get("TFBUILD_MPI_LAUNCH_TIMEOUT", "").strip()
    if text:
        try:
            launch_timeout = float(text)
        except ValueError:
            launch_timeout = -1.0
        if not launch_timeout > 0:
            raise ConfigError(
                f"TFBUILD_MPI_LAUNCH_TIMEOUT={text!r} is not a number of seconds above 0"
            )
    try:
        extra = tuple(shlex.split(env.get("TFBUILD_MPIRUN_ARGS", "")))
    except ValueError as e:
        raise ConfigError(f"TFBUILD_MPIRUN_ARGS does not parse as arguments ({e})") from None
    exports = tuple(n.strip() for n in env.get("TFBUILD_MPI_EXPORT", "").split(",") if n.strip())
    return MpiSettings(
        launch_port=port,
        peer_timeout=discovery_timeout,
        launch_timeout=launch_timeout,
        interface=env.get("TFBUILD_MPI_IFACE", "").strip() or None,
        extra_args=extra,
        extra_exports=exports,
    )


def exported_names(
    env: Mapping[str, str], job_environment: Iterable[str], extra: Iterable[str] = ()
) -> list[str]:
    """Names mpirun exports (-x) from node 0 to every rank: the interpreter's and the
    frameworks' settings, TFBUILD_* (minus the secret and per-node ones), the job's
    own environment and TFBUILD_MPI_EXPORT; only those set on node 0."""
    wanted = set(EXPORT_NAMES) | set(job_environment) | set(extra)
    wanted |= {n for n in env if n.startswith(EXPORT_PREFIXES)}
    return sorted(n for n in wanted - NOT_EXPORTED if n in env)


SCHEDULER_COMPONENTS = ("slurm", "tm", "gridengine", "lsf")
"""Open MPI's batch-system components (allocation and launch); absent ones are ignored."""


def mpirun_argv(
    *,
    world_size: int,
    hostfile: str,
    workdir: str,
    rsh_agent: str | None,
    interface: str | None,
    exports: Sequence[str],
    command: Sequence[str],
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The mpirun (Open MPI 4) command line; docs/mpi.md says why each flag is there."""
    argv = [
        "mpirun", "--allow-run-as-root", "--tag-output",
        "-np", str(world_size), "--hostfile", hostfile, "-wdir", workdir,
        "-bind-to", "none", "-map-by", "slot",
        "--mca", "orte_abort_on_non_zero_status", "1",
        "--mca", "pml", "ob1", "--mca", "btl", "self,vader,tcp",
        "--mca", "btl_vader_single_copy_mechanism", "none",
        # The agent owns the launch: inside a batch job (Slurm, PBS, SGE, LSF) Open MPI
        # would take the allocation's slots as the limit and start its daemons through the
        # scheduler instead of through the agents ("not enough slots available").
        "--mca", "ras", "^" + ",".join(SCHEDULER_COMPONENTS),
        "--mca", "plm", "^" + ",".join(SCHEDULER_COMPONENTS),
    ]
    if rsh_agent is not None:
        # No tree spawn: only mpirun launches (orteds hold no token). Attached: orted
        # stays in the foreground, so the launch connection lives exactly as long as it.
        argv += ["--mca", "plm_rsh_agent", rsh_agent, "--mca", "plm_rsh_no_tree_spawn", "1",
                 "--leave-session-attached"]
    if interface is not None:
        argv += ["--mca", "btl_tcp_if_include", interface,
                 "--mca", "oob_tcp_if_include", interface]
    for name in exports:
        argv += ["-x", name]
    return [*argv, *extra_args, *command]


def rsh_agent_value(agent: Sequence[str], port: int) -> str:
    """plm_rsh_agent's value; Open MPI splits it at spaces, so no part may hold one."""
    parts = [*agent, "mpi-rsh", "--port", str(port)]
    bad = [p for p in parts if not p or any(c.isspace() for c in p)]
    if bad:
        raise ConfigError(
            f"the agent's path {bad[0]!r} contains a space, which Open MPI's plm_rsh_agent "
            "cannot carry; install tfbuild-agent under a path without spaces"
        )
    return " ".join(parts)


# -- reading mpirun's verdict ------------------------------------------------------------

_PROCESS_NAME = re.compile(r"Process name:\s*\[\[\d+,\d+\],(\d+)\]")
_EXIT_CODE = re.compile(r"Exit code:\s*(-?\d+)")
_SIGNALLED = re.compile(
    r"process rank (\d+) with PID \d+ on node (\S+) exited on signal (\d+)(?: \(([^)]*)\))?"
)
_MPI_ABORT = re.compile(r"MPI_ABORT was invoked on rank (\d+) in communicator (\S+)\s+"
                        r"with errorcode (-?\d+)")
_LOST_DAEMON = re.compile(r"(ORTE has lost communication with a remote daemon|"
                          r"ORTE daemon has unexpectedly failed|"
                          r"ORTE was unable to reliably start one or more daemons)")


def describe_failure(
    lines: Sequence[str], code: int, hosts: Sequence[str], per_node: int
) -> str:
    """One sentence for a failed mpirun, naming the rank (and its node) when Open MPI
    said which one failed."""

    def where(rank: int) -> str:
        node = rank // per_node
        return f" (on {hosts[node]})" if 0 <= node < len(hosts) else ""

    text = "\n".join(lines)
    name = _PROCESS_NAME.search(text)
    if name:
        rank = int(name.group(1))
        exit_code = _EXIT_CODE.search(text, name.end())
        how = f"exited with code {exit_code.group(1)}" if exit_code else "failed"
        return f"rank {rank}{where(rank)} {how}; mpirun aborted the job (exit code {code})"
    aborted = _MPI_ABORT.search(text)
    if aborted:
        rank = int(aborted.group(1))
        return (f"rank {rank}{where(rank)} called MPI_Abort on {aborted.group(2)} with error "
                f"code {aborted.group(3)}; Open MPI stopped every rank (exit code {code})")
    signalled = _SIGNALLED.search(text)
    if signalled:
        rank, sig = int(signalled.group(1)), signalled.group(3)
        label = f" ({signalled.group(4)})" if signalled.group(4) else ""
        return (f"rank {rank} (on {signalled.group(2)}) was killed by signal {sig}{label}; "
                f"mpirun aborted the job (exit code {code})")
    lost = _LOST_DAEMON.search(text)
    if lost:
        return (f"mpirun lost a node's daemon ({lost.group(1)}); the job was aborted "
                f"(exit code {code}); see that node's log")
    return f"mpirun exited with code {code}; see its output above and logs/mpirun.log"


def agent_command() -> list[str]:
    """How to start this agent again: the image's launcher script, else whatever
    `tfbuild-agent` is on PATH, else this Python with -m."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "tfbuild-agent" and os.access(argv0, os.X_OK):
        return [os.path.abspath(argv0)]
    found = shutil.which("tfbuild-agent")
    if found:
        return [found]
    return [sys.executable, "-m", "tfbuild_agent"]
