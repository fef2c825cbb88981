import pytest

from tfbuild_agent.hostlist import (
    expand_hostlist,
    expand_tasks_per_node,
    is_placeholder,
    join_host_port,
    parse_hostfile,
    placeholder_host,
    sort_addresses,
    split_host_port,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gpu[01-03,07],cpu5", ["gpu01", "gpu02", "gpu03", "gpu07", "cpu5"]),
        ("n[1-2]-ib,login", ["n1-ib", "n2-ib", "login"]),
        ("node[8-10]", ["node8", "node9", "node10"]),
        ("tux[098-101]", ["tux098", "tux099", "tux100", "tux101"]),
        ("single", ["single"]),
        ("a[5]", ["a5"]),
        ("rack[1-2]-n[01-02]", ["rack1-n01", "rack1-n02", "rack2-n01", "rack2-n02"]),
        (" c1 , c2 ", ["c1", "c2"]),
        ("10.0.0.1,10.0.0.2", ["10.0.0.1", "10.0.0.2"]),
    ],
)
def test_expand_hostlist(text, expected):
    assert expand_hostlist(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("gpu[01-03", "never closed"),
        ("gpu01]", "without"),
        ("gpu[3-1]", "backwards"),
        ("gpu[a-b]", "not a number"),
        ("gpu[a-2]", "not a number"),
        ("gpu[x]", "'x' in 'gpu\\[x\\]' is not a number"),
        ("gpu[1-]", "not a number"),
        ("a,,b", "empty entry"),
        ("x[[1-2]]", "nested"),
    ],
)
def test_expand_hostlist_rejects(text, fragment):
    with pytest.raises(ValueError, match=fragment):
        expand_hostlist(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2(x3),1", [2, 2, 2, 1]), ("4", [4]), ("1(x2),3(x1),2", [1, 1, 3, 2])],
)
def test_expand_tasks_per_node(text, expected):
    assert expand_tasks_per_node(text) == expected


def test_expand_tasks_per_node_rejects_garbage():
    with pytest.raises(ValueError, match="N\\(xM\\)"):
        expand_tasks_per_node("2(3)")


def test_parse_hostfile_open_mpi_mpich_and_comments():
    text = """
    # Open MPI style
    node01 slots=4 max_slots=8
    node02 slots=2   # trailing comment

    node03:3
    node04
    node01 slots=2
    """
    assert parse_hostfile(text) == [
        ("node01", 6),
        ("node02", 2),
        ("node03", 3),
        ("node04", None),
    ]


def test_parse_hostfile_bare_ipv6_is_not_a_slot_count():
    assert parse_hostfile("fd00::2\nfd00::3 slots=2\n") == [("fd00::2", None), ("fd00::3", 2)]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("n1 slots=four", "line 1"),
        ("n1\nn2 cpus=2", "line 2.*unknown option"),
        ("n1 slots=0", "0 slots"),
    ],
)
def test_parse_hostfile_rejects(text, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_hostfile(text)


def test_host_port_round_trip():
    assert split_host_port("w-0.svc:2222") == ("w-0.svc", 2222)
    assert split_host_port("[fd00::2]:2223") == ("fd00::2", 2223)
    assert split_host_port("10.0.0.1") == ("10.0.0.1", None)
    assert split_host_port("fd00::2") == ("fd00::2", None)
    assert join_host_port("fd00::2", 2222) == "[fd00::2]:2222"
    assert join_host_port("h", 1) == "h:1"
    with pytest.raises(ValueError):
        split_host_port("h:port")


def test_sort_addresses_is_numeric_and_unique():
    assert sort_addresses(["10.0.0.10", "10.0.0.9", "fd00::1", "10.0.0.9", "9.1.1.1"]) == [
        "9.1.1.1",
        "10.0.0.9",
        "10.0.0.10",
        "fd00::1",
    ]


def test_placeholders_are_recognisable():
    assert is_placeholder(placeholder_host(3))
    assert not is_placeholder("node-3.cluster")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A host listed again is the same node; slots add up, a bare line counts as one
        # slot once any line for that host states slots, and never on its own.
        ("a\na\n", [("a", None)]),
        ("a\na slots=2\n", [("a", 3)]),
        ("a slots=2\na\n", [("a", 3)]),
        ("a:2\nb\na:3\n", [("a", 5), ("b", None)]),
        ("a slots=1\na slots=1\na slots=1\n", [("a", 3)]),
        # slots= wins over the shorthand; max_slots never changes the slot count.
        ("a:4 slots=2", [("a", 2)]),
        ("a max_slots=8\nb max-slots=8 slots=3", [("a", None), ("b", 3)]),
    ],
)
def test_hostfile_slot_arithmetic(text, expected):
    assert parse_hostfile(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("# comment\n\nn1 bad=1", "line 3: unknown option 'bad=1'"),
        ("n1 slots", "line 1: 'slots' needs a whole number"),
        ("n1 max_slots=x", "needs a whole number"),
        ("n1:0", "line 1: n1 has 0 slots"),
    ],
)
def test_hostfile_errors_name_the_line_and_the_fix(text, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_hostfile(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a[1-2],b[3,5]", ["a1", "a2", "b3", "b5"]),
        ("n[9-10]", ["n9", "n10"]),
        ("n[07-07]", ["n07"]),
        ("n[1-3,2]", ["n1", "n2", "n3", "n2"]),  # duplicates kept, as Slurm prints them
    ],
)
def test_host_list_boundaries(text, expected):
    assert expand_hostlist(text) == expected


def test_tasks_per_node_allow_spaces_and_repeat_counts():
    assert expand_tasks_per_node(" 2(x2) , 1") == [2, 2, 1]
    assert expand_tasks_per_node("3(x1)") == [3]


@pytest.mark.parametrize(
    ("address", "expected"),
    [("[fe80::1]", ("fe80::1", None)), ("h:", ("h", None)), ("  h:80 ", ("h", 80))],
)
def test_split_host_port_edges(address, expected):
    assert split_host_port(address) == expected


def test_split_host_port_without_a_host_is_refused():
    with pytest.raises(ValueError, match="has no host"):
        split_host_port(":2222")
    with pytest.raises(ValueError, match="not a number"):
        split_host_port("[fd00::1]:x")
