"""Source 5, Kubernetes: pod names that the Job controllers make predictable.

Indexed Job (`completionMode: Indexed`): Kubernetes sets JOB_COMPLETION_INDEX and the
pod hostname `<job>-<index>`; with `subdomain: <headless Service>` in the pod template
every pod is reachable as `<job>-<i>.<subdomain>`. Hosts are those names for
i in range(node_count); this node is JOB_COMPLETION_INDEX. The job name is the
hostname without `-<index>` (or TFBUILD_K8S_JOB_NAME); the subdomain is
TFBUILD_K8S_SUBDOMAIN, else read from the pod's FQDN in /etc/hosts (kubelet writes
`<hostname>.<subdomain>.<namespace>.svc...` there).

JobSet (one replicatedJob): pods are `<jobset>-<replicatedJob>-<jobIndex>-<podIndex>`
and the subdomain defaults to the JobSet name. JobSet sets no variables itself, so expose
two labels with the downward API: JOBSET_NAME (jobset.sigs.k8s.io/jobset-name) and
REPLICATED_JOB_REPLICAS (jobset.sigs.k8s.io/replicatedjob-replicas). Node i is job
i // pods_per_job, pod i % pods_per_job, with pods_per_job = node_count / replicas.

Kubeflow MPIJob: the launcher gets the hostfile /etc/mpi/hostfile (`host slots=N`, or
`host:N` for Intel MPI). Hosts are the workers listed there; a listed pod gets its
position, an unlisted pod (the launcher) gets node_rank 0: it is the node that runs mpirun.
"""

from __future__ import annotations

from ..errors import DiscoveryError
from ..hostlist import parse_hostfile
from .context import DiscoveryContext
from .envvars import read_int
from .membership import Membership
from .selfmatch import own_positions

NAME = "kubernetes"
LOOKS_FOR = (
    "JOB_COMPLETION_INDEX (Indexed Job, or JobSet with JOBSET_NAME) plus a subdomain "
    "(TFBUILD_K8S_SUBDOMAIN or the pod FQDN in /etc/hosts), or the MPIJob hostfile "
    "/etc/mpi/hostfile"
)
INDEX_VAR = "JOB_COMPLETION_INDEX"
SUBDOMAIN_VAR = "TFBUILD_K8S_SUBDOMAIN"
JOB_NAME_VAR = "TFBUILD_K8S_JOB_NAME"
JOBSET_VAR = "JOBSET_NAME"
REPLICAS_VAR = "REPLICATED_JOB_REPLICAS"
MPI_HOSTFILE = "/etc/mpi/hostfile"
ETC_HOSTS = "/etc/hosts"


def discover(ctx: DiscoveryContext) -> Membership | None:
    index = read_int(ctx.env, INDEX_VAR)
    if index is not None:
        if ctx.env.get(JOBSET_VAR, "").strip():
            return jobset(ctx, index)
        return indexed_job(ctx, index)
    text = ctx.read_file(MPI_HOSTFILE)
    if text is not None:
        return mpijob(ctx, text)
    return None


def indexed_job(ctx: DiscoveryContext, index: int) -> Membership:
    node_count = ctx.job.node_count
    _check_index(index, node_count, "completions")
    evidence = [(INDEX_VAR, str(index))]
    subdomain = pod_subdomain(ctx, evidence)
    if node_count == 1 and subdomain is None:
        return Membership(NAME, (ctx.hostname,), 0, evidence=tuple(evidence))
    job_name = ctx.env.get(JOB_NAME_VAR, "").strip() or _strip_index(ctx.hostname, index)
    if subdomain is None:
        raise DiscoveryError(_no_subdomain(f"{job_name}-<i>"))
    hosts = tuple(f"{job_name}-{i}.{subdomain}" for i in range(node_count))
    return Membership(NAME, hosts, index, evidence=tuple(evidence))


def jobset(ctx: DiscoveryContext, index: int) -> Membership:
    name = ctx.env[JOBSET_VAR].strip()
    node_count = ctx.job.node_count
    prefix = f"{name}-"
    parts = ctx.hostname[len(prefix) :].rsplit("-", 2)
    if not ctx.hostname.startswith(prefix) or len(parts) != 3 or not all(
        p.isdigit() for p in parts[1:]
    ):
        raise DiscoveryError(
            f"{JOBSET_VAR}={name} but the hostname {ctx.hostname!r} is not "
            f"{name}-<replicatedJob>-<jobIndex>-<podIndex>; set "
            "spec.network.enableDNSHostnames: true in the JobSet"
        )
    rjob, job_index, pod_index = parts[0], int(parts[1]), int(parts[2])
    if pod_index != index:
        raise DiscoveryError(
            f"hostname {ctx.hostname!r} says pod {pod_index} but {INDEX_VAR}={index}"
        )
    replicas = read_int(ctx.env, REPLICAS_VAR, minimum=1)
    if replicas is None:
        if node_count > 1:
            raise DiscoveryError(
                f"JobSet {name}: {REPLICAS_VAR} is not set, so the pods per job are unknown; "
                "expose the label jobset.sigs.k8s.io/replicatedjob-replicas as "
                f"{REPLICAS_VAR} with the downward API"
            )
        replicas = 1
    if node_count % replicas:
        raise DiscoveryError(
            f"JobSet {name}: node_count {node_count} is not a multiple of "
            f"{REPLICAS_VAR}={replicas}; set TFBUILD_NODES to replicas x completions"
        )
    per_job = node_count // replicas
    if job_index >= replicas or pod_index >= per_job:
        raise DiscoveryError(
            f"pod {ctx.hostname!r} (job {job_index}, pod {pod_index}) lies outside "
            f"{replicas} job(s) x {per_job} pod(s) = node_count {node_count}; "
            "set TFBUILD_NODES to replicas x completions"
        )
    evidence = [(INDEX_VAR, str(index)), (JOBSET_VAR, name), (REPLICAS_VAR, str(replicas))]
    subdomain = pod_subdomain(ctx, evidence) or name  # JobSet's default subdomain
    hosts = tuple(
        f"{name}-{rjob}-{j}-{p}.{subdomain}" for j in range(replicas) for p in range(per_job)
    )
    return Membership(NAME, hosts, job_index * per_job + pod_index, evidence=tuple(evidence))


def mpijob(ctx: DiscoveryContext, text: str) -> Membership:
    try:
        entries = parse_hostfile(text)
    except ValueError as e:
        raise DiscoveryError(f"MPIJob hostfile {MPI_HOSTFILE}: {e}") from None
    if not entries:
        raise DiscoveryError(f"MPIJob hostfile {MPI_HOSTFILE} lists no hosts")
    hosts = [host for host, _ in entries]
    slots = None
    if any(s is not None for _, s in entries):
        slots = tuple(s or 1 for _, s in entries)
    found = own_positions(hosts, ctx.hostname, ctx.own_addresses)
    if len(found) > 1:
        raise DiscoveryError(
            f"hostname {ctx.hostname!r} matches several lines of {MPI_HOSTFILE} ({found})"
        )
    evidence = [(MPI_HOSTFILE, ", ".join(hosts))]
    if not found:
        evidence.append(("role", "MPIJob launcher (this pod is not in the hostfile)"))
    return Membership(
        NAME, tuple(hosts), found[0] if found else 0, slots=slots, evidence=tuple(evidence)
    )


def pod_subdomain(ctx: DiscoveryContext, evidence: list[tuple[str, str]]) -> str | None:
    """The headless Service the pod is under: TFBUILD_K8S_SUBDOMAIN, else /etc/hosts."""
    value = ctx.env.get(SUBDOMAIN_VAR, "").strip()
    if value:
        evidence.append((SUBDOMAIN_VAR, value))
        return value
    subdomain = subdomain_from_hosts_file(ctx.read_file(ETC_HOSTS) or "", ctx.hostname)
    if subdomain:
        evidence.append((ETC_HOSTS, f"{ctx.hostname}.{subdomain}..."))
    return subdomain


def subdomain_from_hosts_file(text: str, hostname: str) -> str | None:
    """`10.1.2.3  job-0.svc.ns.svc.cluster.local  job-0` -> 'svc' for hostname job-0."""
    prefix = hostname.lower() + "."
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        for name in fields[1:]:
            if name.lower().startswith(prefix) and len(name) > len(prefix):
                return name[len(prefix) :].split(".", 1)[0]
    return None


def _strip_index(hostname: str, index: int) -> str:
    suffix = f"-{index}"
    if not hostname.endswith(suffix) or hostname == suffix:
        raise DiscoveryError(
            f"{INDEX_VAR}={index} but the hostname {hostname!r} is not <job>-{index}, "
            f"so the job name is unknown; set {JOB_NAME_VAR} to the Job's name"
        )
    return hostname[: -len(suffix)]


def _check_index(index: int, node_count: int, what: str) -> None:
    if index >= node_count:
        raise DiscoveryError(
            f"{INDEX_VAR}={index} but node_count is {node_count}: the Job's {what} and "
            "the job's node_count differ; set TFBUILD_NODES to the Job's completions"
        )


def _no_subdomain(pattern: str) -> str:
    return (
        f"this Indexed Job's pods have no subdomain, so the other pods ({pattern}) cannot be "
        "reached by name; create a headless Service (clusterIP: None) selecting the job's "
        "pods, set spec.template.spec.subdomain to its name, and set "
        f"{SUBDOMAIN_VAR} to the same name"
    )
