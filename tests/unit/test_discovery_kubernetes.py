import pytest
from discovery_fakes import make_ctx

from tfbuild_agent.discovery import kubernetes
from tfbuild_agent.discovery.kubernetes import subdomain_from_hosts_file
from tfbuild_agent.errors import DiscoveryError

# /etc/hosts as kubelet writes it for pod example-job-2 with subdomain headless-svc.
ETC_HOSTS = """\
# Kubernetes-managed hosts file.
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
fe00::0\tip6-mcastprefix
fe00::1\tip6-allnodes
fe00::2\tip6-allrouters
10.244.1.7\texample-job-2.headless-svc.default.svc.cluster.local\texample-job-2
"""
# The environment Kubernetes gives a pod of an Indexed Job (plus the Service links).
INDEXED_POD = {
    "JOB_COMPLETION_INDEX": "2",
    "HOSTNAME": "example-job-2",
    "KUBERNETES_SERVICE_HOST": "10.96.0.1",
    "KUBERNETES_SERVICE_PORT": "443",
}


def test_not_applicable_outside_kubernetes():
    assert kubernetes.discover(make_ctx({"KUBERNETES_SERVICE_HOST": "10.96.0.1"})) is None


def test_indexed_job_with_subdomain_from_etc_hosts():
    ctx = make_ctx(
        INDEXED_POD, node_count=3, hostname="example-job-2", files={"/etc/hosts": ETC_HOSTS}
    )
    m = kubernetes.discover(ctx)
    assert m.source == "kubernetes"
    assert m.hosts == (
        "example-job-0.headless-svc",
        "example-job-1.headless-svc",
        "example-job-2.headless-svc",
    )
    assert m.node_rank == 2


def test_indexed_job_with_subdomain_variable_and_dashed_job_name():
    env = {"JOB_COMPLETION_INDEX": "0", "TFBUILD_K8S_SUBDOMAIN": "trainers"}
    m = kubernetes.discover(make_ctx(env, node_count=2, hostname="my-tf-job-0"))
    assert m.hosts == ("my-tf-job-0.trainers", "my-tf-job-1.trainers")
    assert m.node_rank == 0


def test_indexed_job_of_one_pod_needs_no_subdomain():
    m = kubernetes.discover(make_ctx({"JOB_COMPLETION_INDEX": "0"}, hostname="solo-0"))
    assert m.hosts == ("solo-0",) and m.node_rank == 0


def test_job_name_override_when_hostname_is_custom():
    env = {"JOB_COMPLETION_INDEX": "1", "TFBUILD_K8S_JOB_NAME": "tf", "TFBUILD_K8S_SUBDOMAIN": "s"}
    m = kubernetes.discover(make_ctx(env, node_count=2, hostname="custom"))
    assert m.hosts == ("tf-0.s", "tf-1.s")


@pytest.mark.parametrize(
    ("env", "hostname", "fragment"),
    [
        ({"JOB_COMPLETION_INDEX": "1"}, "example-job-1", "no subdomain.*headless Service"),
        (
            {"JOB_COMPLETION_INDEX": "3", "TFBUILD_K8S_SUBDOMAIN": "s"},
            "j-3",
            "JOB_COMPLETION_INDEX=3 but node_count is 3.*TFBUILD_NODES",
        ),
        (
            {"JOB_COMPLETION_INDEX": "1", "TFBUILD_K8S_SUBDOMAIN": "s"},
            "worker",
            "not <job>-1.*TFBUILD_K8S_JOB_NAME",
        ),
        ({"JOB_COMPLETION_INDEX": "one"}, "j-1", "JOB_COMPLETION_INDEX='one'"),
    ],
)
def test_broken_indexed_job(env, hostname, fragment):
    with pytest.raises(DiscoveryError, match=fragment):
        kubernetes.discover(make_ctx(env, node_count=3, hostname=hostname))


# JobSet "network-jobset", replicatedJob "workers" with replicas: 2, completions: 2;
# the labels are exposed through the downward API as the docs of this source say.
def jobset_pod(job_index, pod_index):
    env = {
        "JOB_COMPLETION_INDEX": str(pod_index),
        "JOBSET_NAME": "network-jobset",
        "REPLICATED_JOB_REPLICAS": "2",
    }
    return make_ctx(env, node_count=4, hostname=f"network-jobset-workers-{job_index}-{pod_index}")


def test_jobset_hosts_and_rank():
    m = kubernetes.discover(jobset_pod(1, 0))
    assert m.hosts == (
        "network-jobset-workers-0-0.network-jobset",
        "network-jobset-workers-0-1.network-jobset",
        "network-jobset-workers-1-0.network-jobset",
        "network-jobset-workers-1-1.network-jobset",
    )
    assert m.node_rank == 2


def test_jobset_with_custom_subdomain():
    ctx = jobset_pod(0, 1)
    ctx = make_ctx(
        {**ctx.env, "TFBUILD_K8S_SUBDOMAIN": "example"}, node_count=4, hostname=ctx.hostname
    )
    m = kubernetes.discover(ctx)
    assert m.hosts[1] == "network-jobset-workers-0-1.example" and m.node_rank == 1


@pytest.mark.parametrize(
    ("changes", "hostname", "fragment"),
    [
        ({}, "other-workers-0-0", "is not network-jobset-<replicatedJob>"),
        ({"REPLICATED_JOB_REPLICAS": ""}, "network-jobset-workers-0-0", "downward API"),
        ({"REPLICATED_JOB_REPLICAS": "3"}, "network-jobset-workers-0-0", "not a multiple"),
        ({"JOB_COMPLETION_INDEX": "1"}, "network-jobset-workers-0-0", "says pod 0"),
        ({}, "network-jobset-workers-2-0", "outside 2 job"),
    ],
)
def test_broken_jobset(changes, hostname, fragment):
    env = {
        "JOB_COMPLETION_INDEX": "0",
        "JOBSET_NAME": "network-jobset",
        "REPLICATED_JOB_REPLICAS": "2",
        **changes,
    }
    with pytest.raises(DiscoveryError, match=fragment):
        kubernetes.discover(make_ctx(env, node_count=4, hostname=hostname))


# Kubeflow MPIJob v2 hostfile (Open MPI) and the Intel MPI variant.
MPIJOB_HOSTFILE = """\
tf-mpi-worker-0.tf-mpi-worker.default.svc slots=2
tf-mpi-worker-1.tf-mpi-worker.default.svc slots=2
"""


def test_mpijob_worker_finds_itself():
    ctx = make_ctx({}, hostname="tf-mpi-worker-1", files={"/etc/mpi/hostfile": MPIJOB_HOSTFILE})
    m = kubernetes.discover(ctx)
    assert m.hosts == (
        "tf-mpi-worker-0.tf-mpi-worker.default.svc",
        "tf-mpi-worker-1.tf-mpi-worker.default.svc",
    )
    assert m.slots == (2, 2)
    assert m.node_rank == 1


def test_mpijob_launcher_is_node_zero():
    files = {
        "/etc/mpi/hostfile": "tf-mpi-worker-0.tf-mpi-worker.default.svc:4\n"
        "tf-mpi-worker-1.tf-mpi-worker.default.svc:4\n"
    }
    m = kubernetes.discover(
        make_ctx({}, hostname="tf-mpi-launcher", addresses=["10.1.1.1"], files=files)
    )
    assert m.node_rank == 0 and m.slots == (4, 4)
    assert ("role", "MPIJob launcher (this pod is not in the hostfile)") in m.evidence


def test_mpijob_bad_hostfile():
    ctx = make_ctx({}, files={"/etc/mpi/hostfile": "w0 slots=two\n"})
    with pytest.raises(DiscoveryError, match="/etc/mpi/hostfile: line 1"):
        kubernetes.discover(ctx)


def test_subdomain_from_hosts_file_ignores_other_lines():
    assert subdomain_from_hosts_file(ETC_HOSTS, "example-job-2") == "headless-svc"
    assert subdomain_from_hosts_file(ETC_HOSTS, "example-job-1") is None
    assert subdomain_from_hosts_file("172.17.0.2\tc0ffee\n", "c0ffee") is None


def _jobset(hostname, index, node_count, **env):
    return make_ctx({"JOB_COMPLETION_INDEX": str(index), "JOBSET_NAME": "js", **env},
                    node_count=node_count, hostname=hostname)


def test_a_one_pod_jobset_needs_no_replica_count():
    m = kubernetes.discover(_jobset("js-workers-0-0", 0, 1))
    assert m.hosts == ("js-workers-0-0.js",) and m.node_rank == 0
    with pytest.raises(DiscoveryError, match="REPLICATED_JOB_REPLICAS is not set"):
        kubernetes.discover(_jobset("js-workers-0-0", 0, 2))


def test_a_jobset_with_one_replica_and_a_dashed_replicated_job_name():
    m = kubernetes.discover(_jobset("js-my-workers-0-1", 1, 2, REPLICATED_JOB_REPLICAS="1"))
    assert m.hosts == ("js-my-workers-0-0.js", "js-my-workers-0-1.js") and m.node_rank == 1


@pytest.mark.parametrize(
    ("hostname", "index", "replicas", "fragment"),
    [
        ("xx-workers-0-0", 0, "2", "is not js-<replicatedJob>"),
        ("js-workers-x-0", 0, "2", "is not js-<replicatedJob>"),
        ("js-workers-0-2", 2, "2", "outside 2 job"),  # pod index == pods per job
        ("js-workers-0-0", 0, "0", "REPLICATED_JOB_REPLICAS"),
    ],
)
def test_jobset_pods_outside_the_declared_shape_are_refused(hostname, index, replicas,
                                                            fragment):
    ctx = _jobset(hostname, index, 4, REPLICATED_JOB_REPLICAS=replicas)
    with pytest.raises(DiscoveryError, match=fragment):
        kubernetes.discover(ctx)


def test_an_mpijob_line_without_slots_is_one_slot_and_a_doubly_listed_pod_is_refused():
    files = {"/etc/mpi/hostfile": "w-0.svc slots=2\nw-1.svc\n"}
    m = kubernetes.discover(make_ctx({}, hostname="w-1", files=files))
    assert m.slots == (2, 1) and m.node_rank == 1
    files = {"/etc/mpi/hostfile": "w-0.a slots=1\nw-0.b slots=1\n"}
    with pytest.raises(DiscoveryError, match="matches several lines"):
        kubernetes.discover(make_ctx({}, hostname="w-0", files=files))


def test_the_subdomain_from_etc_hosts_is_shown_as_evidence_and_comments_are_ignored():
    hosts = "10.1.2.3 job-0.svc.ns.svc.cluster.local job-0\n"
    ctx = make_ctx({"JOB_COMPLETION_INDEX": "0"}, node_count=2, hostname="job-0",
                   files={"/etc/hosts": hosts})
    m = kubernetes.discover(ctx)
    assert ("/etc/hosts", "job-0.svc...") in m.evidence
    assert subdomain_from_hosts_file("10.1.2.3 job-0 # 10.9.9.9 job-0.old.ns\n", "job-0") is None
    assert subdomain_from_hosts_file("10.1.2.3 job-0. job-0\n", "job-0") is None
