import pytest
from discovery_fakes import make_ctx

from tfbuild_agent.discovery import explicit
from tfbuild_agent.discovery.membership import ProcessIdentity
from tfbuild_agent.errors import DiscoveryError


def test_not_applicable_without_variables():
    assert explicit.discover(make_ctx({"PATH": "/usr/bin"})) is None


def test_hosts_with_node_rank():
    m = explicit.discover(
        make_ctx(
            {"TFBUILD_HOSTS": "10.0.0.1, 10.0.0.2,10.0.0.3", "TFBUILD_NODE_RANK": "2"}, node_count=3
        )
    )
    assert m.source == "explicit"
    assert m.hosts == ("10.0.0.1", "10.0.0.2", "10.0.0.3")
    assert m.node_rank == 2
    assert m.slots is None and m.process is None
    assert ("TFBUILD_NODE_RANK", "2") in m.evidence


def test_hosts_find_this_node_by_hostname_short_name_or_ip():
    env = {"TFBUILD_HOSTS": "trainer-a.lab,trainer-b.lab"}
    assert explicit.discover(make_ctx(env, hostname="trainer-b.lab")).node_rank == 1
    assert explicit.discover(make_ctx(env, hostname="trainer-b")).node_rank == 1
    by_ip = {"TFBUILD_HOSTS": "192.168.1.10,192.168.1.11"}
    ctx = make_ctx(by_ip, hostname="c0ffee", addresses=["127.0.0.1", "192.168.1.11"])
    assert explicit.discover(ctx).node_rank == 1


def test_hosts_accept_slurm_style_ranges_and_bare_ipv6():
    m = explicit.discover(make_ctx({"TFBUILD_HOSTS": "trainer[0-2].lab", "TFBUILD_NODE_RANK": "0"}))
    assert m.hosts == ("trainer0.lab", "trainer1.lab", "trainer2.lab")
    m = explicit.discover(make_ctx({"TFBUILD_HOSTS": "fd00::2,fd00::3", "TFBUILD_NODE_RANK": "1"}))
    assert m.hosts == ("fd00::2", "fd00::3")


def test_this_node_not_listed_says_how_to_fix():
    ctx = make_ctx({"TFBUILD_HOSTS": "a,b"}, hostname="zzz", addresses=["10.9.9.9"])
    with pytest.raises(DiscoveryError, match=r"'zzz'.*not\s+among.*a, b.*TFBUILD_NODE_RANK"):
        explicit.discover(ctx)


def test_duplicate_hosts_need_an_explicit_rank():
    env = {"TFBUILD_HOSTS": "127.0.0.1,127.0.0.1"}
    with pytest.raises(DiscoveryError, match="several entries"):
        explicit.discover(make_ctx(env, hostname="x", addresses=["127.0.0.1"]))
    m = explicit.discover(make_ctx({**env, "TFBUILD_NODE_RANK": "1"}))
    assert (m.hosts, m.node_rank) == (("127.0.0.1", "127.0.0.1"), 1)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"TFBUILD_HOSTS": "a:2222,b:2222", "TFBUILD_NODE_RANK": "0"}, "has a port"),
        ({"TFBUILD_HOSTS": "a,b", "TFBUILD_NODE_RANK": "2"}, "only 2 node"),
        ({"TFBUILD_HOSTS": "a,b", "TFBUILD_NODE_RANK": "one"}, "TFBUILD_NODE_RANK='one'"),
        ({"TFBUILD_HOSTS": "a b", "TFBUILD_NODE_RANK": "0"}, "separate hosts with commas"),
        ({"TFBUILD_HOSTS": "a[1-", "TFBUILD_NODE_RANK": "0"}, "cannot be read"),
        ({"TFBUILD_HOSTS": "a", "TFBUILD_HOSTFILE": "/h"}, "set only one"),
    ],
)
def test_bad_explicit_settings(env, fragment):
    with pytest.raises(DiscoveryError, match=fragment):
        explicit.discover(make_ctx(env))


HOSTFILE = """\
# written by hand
node-a slots=4
node-b:2   # MPICH shorthand

node-c
"""


def test_hostfile_gives_hosts_and_slots():
    ctx = make_ctx(
        {"TFBUILD_HOSTFILE": "/etc/tfbuild/hosts"},
        hostname="node-b",
        files={"/etc/tfbuild/hosts": HOSTFILE},
    )
    m = explicit.discover(ctx)
    assert m.source == "hostfile"
    assert m.hosts == ("node-a", "node-b", "node-c")
    assert m.slots == (4, 2, 1)
    assert m.node_rank == 1


def test_hostfile_without_slots_has_no_slots():
    ctx = make_ctx({"TFBUILD_HOSTFILE": "/h", "TFBUILD_NODE_RANK": "0"}, files={"/h": "a\nb\n"})
    assert explicit.discover(ctx).slots is None


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ({}, "cannot be read.*mount"),
        ({"/h": "# nothing\n"}, "lists no hosts"),
        ({"/h": "a slots=x\n"}, "/h.*line 1"),
    ],
)
def test_bad_hostfile(files, fragment):
    with pytest.raises(DiscoveryError, match=fragment):
        explicit.discover(make_ctx({"TFBUILD_HOSTFILE": "/h"}, files=files))


def test_hostfile_under_mpirun_keeps_the_process_identity():
    env = {
        "TFBUILD_HOSTFILE": "/h",
        "OMPI_COMM_WORLD_RANK": "5",
        "OMPI_COMM_WORLD_SIZE": "8",
        "OMPI_COMM_WORLD_LOCAL_RANK": "1",
        "OMPI_COMM_WORLD_LOCAL_SIZE": "4",
    }
    m = explicit.discover(make_ctx(env, hostname="b", files={"/h": "a slots=4\nb slots=4\n"}))
    assert m.node_rank == 1
    assert m.process == ProcessIdentity(rank=5, world_size=8, local_rank=1, local_size=4)


def test_a_node_rank_past_the_list_names_the_valid_ranks():
    with pytest.raises(DiscoveryError, match=r"names only 3 node\(s\) \(ranks 0\.\.2\)"):
        explicit.discover(make_ctx({"TFBUILD_HOSTS": "a,b,c", "TFBUILD_NODE_RANK": "3"}))
