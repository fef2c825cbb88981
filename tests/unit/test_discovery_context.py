import pytest

from tfbuild_agent.discovery.context import (
    DEFAULT_TIMEOUT,
    DiscoveryContext,
    parse_fib_trie,
    parse_if_inet6,
)
from tfbuild_agent.errors import ConfigError
from tfbuild_agent.jobspec import JobSpec

FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 172.18.0.0/16 2 0 2
        +-- 172.18.0.0/29 2 0 2
           |-- 172.18.0.0
              /16 link UNICAST
           |-- 172.18.0.3
              /32 host LOCAL
        |-- 172.18.255.255
           /32 link BROADCAST
"""
IF_INET6 = """\
00000000000000000000000000000001 01 80 10 80       lo
fd000000000000000000000000000002 04 40 00 82     eth0
"""


def test_parse_kernel_address_tables():
    assert parse_fib_trie(FIB_TRIE) == ["127.0.0.1", "172.18.0.3"]
    assert parse_if_inet6(IF_INET6) == ["::1", "fd00::2"]


def test_from_environ_reads_timeout_and_hostname():
    job = JobSpec(node_count=2)
    ctx = DiscoveryContext.from_environ(
        job, {"TFBUILD_DISCOVERY_TIMEOUT": "45.5", "HOSTNAME": "pod-1"}
    )
    assert (ctx.timeout, ctx.hostname, ctx.job) == (45.5, "pod-1", job)
    assert ctx.env["HOSTNAME"] == "pod-1"
    assert DiscoveryContext.from_environ(job, {}).timeout == DEFAULT_TIMEOUT
    assert DiscoveryContext.from_environ(job, {}).hostname  # the kernel's name


@pytest.mark.parametrize("value", ["soon", "-1", "inf", "nan"])
def test_bad_timeout_is_a_config_error(value):
    with pytest.raises(ConfigError, match=f"TFBUILD_DISCOVERY_TIMEOUT='{value}'"):
        DiscoveryContext.from_environ(JobSpec(), {"TFBUILD_DISCOVERY_TIMEOUT": value})
