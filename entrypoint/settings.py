"""Every TFBUILD_* variable the agent reads, parsed once at the top into `AgentSettings`.

`VARIABLES` is the one list of them (name, default, what it does): docs/agent.md's
table is generated from it (`markdown_table`) and a unit test keeps the two equal.
`parse_bool` is the one yes/no parser. The runner builds `AgentSettings.from_env` once
and hands it down; discovery sources still see the raw environment for what schedulers
set (SLURM_*, OMPI_*, TF_CONFIG ...) and the store client gets it for credentials.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .contract import DEFAULT_GRACE_SECONDS
from .errors import ConfigError

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")

DEFAULT_HEARTBEAT_INTERVAL = 3.0
DEFAULT_HEARTBEAT_MISSES = 6
"""3 s x 6 = 18 s of silence before a node counts as lost: survives a 10 s stall at 100%
CPU with room to spare, and a kill -9 or SIGSTOP is still detected within 30 s."""


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    doc: str


VARIABLES: tuple[Variable, ...] = (
    # job shape (baked into the image; the variable overrides it)
    Variable("TFBUILD_BACKEND", "baked", "distributed backend: none, mpi, ps, multiworker"),
    Variable("TFBUILD_NODES", "baked", "number of nodes (containers) of the job"),
    Variable("TFBUILD_PROCS_PER_NODE", "baked", "processes per node (default: 1 per GPU, or 1)"),
    Variable("TFBUILD_WORKERS", "baked", "worker count (ps backend)"),
    Variable("TFBUILD_PS", "baked", "parameter server count (ps backend)"),
    Variable("TFBUILD_ENTRY_SCRIPT", "baked", "the script (or -m module) each task runs"),
    Variable("TFBUILD_MAX_RUN_DURATION_SECONDS", "baked",
             "stop the tasks after this many seconds (run recorded Canceled: time limit)"),
    Variable("TFBUILD_EXPORT_ONNX", "baked",
             "0/1 or JSON {opset, model, fail_job}: rank 0 exports ./outputs' model to ONNX"),
    Variable("TFBUILD_PORT", "2222", "TensorFlow's gRPC port per task"),
    Variable("TFBUILD_CONTROL_PORT", "29400", "the agents' rendezvous/control channel port"),
    Variable("TFBUILD_PLACEMENT", "", "task placement, e.g. chief:0,worker:0,worker:1,ps:1"),
    Variable("TFBUILD_EVALUATOR", "0", "yes/no: add an evaluator task outside `cluster`"),
    Variable("TFBUILD_TASK", "", "with TF_CONFIG from a scheduler: which local task this is"),
    # discovery
    Variable("TFBUILD_HOSTS", "", "node addresses in rank order (explicit discovery)"),
    Variable("TFBUILD_HOSTFILE", "", "a hostfile naming the nodes (explicit discovery)"),
    Variable("TFBUILD_NODE_RANK", "", "this node's rank (explicit discovery, rendezvous)"),
    Variable("TFBUILD_DNS_NAME", "", "a name resolving to every node's address (dns discovery)"),
    Variable("TFBUILD_K8S_SUBDOMAIN", "", "the headless Service of the pods (kubernetes)"),
    Variable("TFBUILD_K8S_JOB_NAME", "", "the pods' name without -<index> (kubernetes)"),
    Variable("TFBUILD_DISCOVERY_TIMEOUT", "300", "seconds any discovery wait may take"),
    # rendezvous and control channel
    Variable("TFBUILD_RENDEZVOUS", "", "host:port of the serving node (rendezvous discovery)"),
    Variable("TFBUILD_RENDEZVOUS_SERVE", "", "yes/no: serve the rendezvous (default: if this "
             "node owns the address)"),
    Variable("TFBUILD_NODE_ID", "hostname", "stable node name; rendezvous ranks sort by it"),
    Variable("TFBUILD_ADVERTISE_ADDR", "", "address the other nodes use for this one"),
    Variable("TFBUILD_JOB_TOKEN", "", "shared secret that authenticates every agent message"),
    Variable("TFBUILD_TRUST_NETWORK", "0", "yes/no: allow a multi-node job without a token"),
    Variable("TFBUILD_CONTROL", "on", "yes/no: the job control channel between agents"),
    Variable("TFBUILD_HEARTBEAT_INTERVAL", f"{DEFAULT_HEARTBEAT_INTERVAL:g}",
             "seconds between heartbeats on the control channel"),
    Variable("TFBUILD_HEARTBEAT_MISSES", str(DEFAULT_HEARTBEAT_MISSES),
             "silent intervals before a node counts as lost"),
    # MPI
    Variable("TFBUILD_MPI_LAUNCH_PORT", "control port + 1", "the MPI launch channel's port"),
    Variable("TFBUILD_MPI_LAUNCH_TIMEOUT", "discovery timeout",
             "seconds a node waits for mpirun to reach it"),
    Variable("TFBUILD_MPI_IFACE", "auto", "network interface for Open MPI's traffic"),
    Variable("TFBUILD_MPI_EXPORT", "", "extra variable names mpirun exports to the ranks"),
    Variable("TFBUILD_MPIRUN_ARGS", "", "extra mpirun arguments"),
    Variable("TFBUILD_MPI_HOSTS", "set by the agent", "node list handed to each rank"),
    # run, signals, uploads
    Variable("TFBUILD_RUN_ID", "derived",
             "the run's name in the store (`tfbuild run` sets it; else the Slurm job.step or "
             "the mpirun job when they start one agent per process, or from hosts + token)"),
    Variable("TFBUILD_GRACE_SECONDS", f"{DEFAULT_GRACE_SECONDS:g}",
             "seconds between the forwarded SIGTERM and the kill"),
    Variable("TFBUILD_UPLOAD_TO", "", "store URI for ./outputs, ./logs and run records"),
    Variable("TFBUILD_S3_ENDPOINT_URL", "", "S3-compatible endpoint for uploads (store client)"),
    # data inputs (docs/inputs.md)
    Variable("TFBUILD_INPUTS", "", "run-time input URIs, `NAME=URI` separated by spaces: "
             "replace a baked input's URI or add one at inputs/NAME"),
    Variable("TFBUILD_INPUT_CACHE", "/var/cache/tfbuild/inputs",
             "node-local cache of downloaded inputs (mount it to keep them between runs)"),
    Variable("TFBUILD_INPUT_<NAME>", "set by the agent",
             "each input's local path, for the script (name upper-cased, other than A-Z 0-9 "
             "-> _)"),
)
NAMES = frozenset(v.name for v in VARIABLES)
PATTERNS = tuple(v.name.split("<", 1)[0] for v in VARIABLES if "<" in v.name)
"""Prefixes of variable families such as TFBUILD_INPUT_<NAME>."""


def parse_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    """1/true/yes/on or 0/false/no/off (any case); unset or empty gives `default`."""
    raw = env.get(name, "")
    value = raw.strip().lower()
    if value == "":
        return default
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise ConfigError(
        f"{name}={raw!r} is not a yes/no value; use one of {', '.join(TRUE_WORDS)} "
        f"or {', '.join(FALSE_WORDS)}"
    )


def parse_float(env: Mapping[str, str], name: str, default: float, *, positive: bool) -> float:
    raw = env.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds; fix or unset it") from None
    if value != value or value in (float("inf"), float("-inf")) or value < 0 or (
        positive and value == 0
    ):
        limit = "more than 0" if positive else "at least 0"
        raise ConfigError(f"{name}={raw} must be {limit} seconds")
    return value


def parse_int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number; fix or unset it") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


@dataclass(frozen=True)
class AgentSettings:
    """The run-time options of the agent's main path, parsed and checked once."""

    run_id: str = ""
    job_token: str | None = None
    upload_to: str | None = None
    grace: float = DEFAULT_GRACE_SECONDS
    control: bool = True
    evaluator: bool = False
    placement: str | None = None
    procs_per_node_explicit: bool = False
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    heartbeat_misses: int = DEFAULT_HEARTBEAT_MISSES
    launcher_job: str = ""
    """The outside launcher's id for this job (Slurm job.step, Open MPI's PMIx
    namespace), the same in every process it started; empty when none."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AgentSettings:
        return cls(
            run_id=env.get("TFBUILD_RUN_ID", "").strip(),
            job_token=env.get("TFBUILD_JOB_TOKEN", "") or None,
            upload_to=env.get("TFBUILD_UPLOAD_TO", "").strip() or None,
            grace=parse_float(env, "TFBUILD_GRACE_SECONDS", DEFAULT_GRACE_SECONDS,
                              positive=False),
            control=parse_bool(env, "TFBUILD_CONTROL", True),
            evaluator=parse_bool(env, "TFBUILD_EVALUATOR", False),
            placement=env.get("TFBUILD_PLACEMENT", "").strip() or None,
            procs_per_node_explicit=bool(env.get("TFBUILD_PROCS_PER_NODE", "").strip()),
            heartbeat_interval=parse_float(
                env, "TFBUILD_HEARTBEAT_INTERVAL", DEFAULT_HEARTBEAT_INTERVAL, positive=True
            ),
            heartbeat_misses=parse_int(
                env, "TFBUILD_HEARTBEAT_MISSES", DEFAULT_HEARTBEAT_MISSES, minimum=1
            ),
            launcher_job=launcher_job_id(env),
        )


def launcher_job_id(env: Mapping[str, str]) -> str:
    """What every process of one srun step or one mpirun shares: agents started one per
    process derive the same run id from it instead of each making up its own."""
    slurm_job = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    if slurm_job:
        step = env.get("SLURM_STEP_ID") or env.get("SLURM_STEPID")
        return f"slurm-{slurm_job}" + (f".{step}" if step else "")
    for name in ("PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid", "PMI_JOBID"):
        if env.get(name):
            return f"mpi-{env[name]}"
    return ""


TABLE_BEGIN = "<!-- settings table: generated from entrypoint/settings.py VARIABLES -->"
TABLE_END = "<!-- end of settings table -->"


def markdown_table() -> str:
    """docs/agent.md's table of variables, between TABLE_BEGIN and TABLE_END."""
    rows = ["| variable | default | what |", "|---|---|---|"]
    rows += [f"| `{v.name}` | {v.default or '(unset)'} | {v.doc} |" for v in VARIABLES]
    return "\n".join([TABLE_BEGIN, *rows, TABLE_END])
