import pytest
from discovery_fakes import FakeClock, make_ctx

from tfbuild_agent.discovery import dns
from tfbuild_agent.discovery.context import local_addresses, resolve_addresses
from tfbuild_agent.errors import DiscoveryError, DiscoveryTimeout


class GrowingName:
    """A Docker alias whose containers come up one after another."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    def __call__(self, name: str) -> list[str]:
        self.asked.append(name)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_not_applicable_without_name():
    assert dns.discover(make_ctx({})) is None


def test_waits_until_all_peers_resolve_and_sorts_numerically():
    resolver = GrowingName(
        [],
        ["10.0.0.10"],
        ["10.0.0.10", "10.0.0.9"],
        ["10.0.0.9", "10.0.0.10", "10.0.0.100"],
    )
    clock, logs = FakeClock(), []
    ctx = make_ctx(
        {"TFBUILD_DNS_NAME": "trainers"},
        node_count=3,
        resolve=resolver,
        addresses=["127.0.0.1", "10.0.0.10"],
        clock=clock,
        logs=logs,
    )
    m = dns.discover(ctx)
    assert m.source == "dns"
    assert m.hosts == ("10.0.0.9", "10.0.0.10", "10.0.0.100")
    assert m.node_rank == 1
    assert resolver.asked == ["trainers"] * 4
    assert clock.sleeps == [0.5, 0.75, 1.125]  # backoff, no real waiting
    assert "0/3 peers resolved for trainers" in logs
    assert "2/3 peers resolved for trainers: 10.0.0.9, 10.0.0.10" in logs
    assert logs[-1].startswith("3/3 peers resolved for trainers")


def test_timeout_names_the_name_and_what_was_found():
    clock = FakeClock()
    ctx = make_ctx(
        {"TFBUILD_DNS_NAME": "trainers"},
        node_count=4,
        timeout=20,
        clock=clock,
        resolve=lambda name: ["10.0.0.3", "10.0.0.2", "10.0.0.4"],
    )
    with pytest.raises(DiscoveryTimeout) as info:
        dns.discover(ctx)
    message = str(info.value)
    assert "waited 20s for 4 peers behind DNS name 'trainers'" in message
    assert "found 3 (10.0.0.2, 10.0.0.3, 10.0.0.4)" in message
    assert "1 container(s) are missing" in message
    assert clock.now - 1000.0 == pytest.approx(20.0)  # bounded by the timeout exactly
    assert max(clock.sleeps) <= dns.MAX_DELAY


def test_too_many_addresses_explain_a_shared_alias():
    ctx = make_ctx(
        {"TFBUILD_DNS_NAME": "t"},
        node_count=2,
        timeout=1,
        resolve=lambda name: ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
    )
    with pytest.raises(DiscoveryTimeout, match="another job shares the alias"):
        dns.discover(ctx)


def test_progress_is_logged_periodically_while_nothing_changes():
    logs: list[str] = []
    ctx = make_ctx(
        {"TFBUILD_DNS_NAME": "t"},
        node_count=2,
        timeout=120,
        logs=logs,
        resolve=lambda name: ["10.0.0.1"],
    )
    with pytest.raises(DiscoveryTimeout):
        dns.discover(ctx)
    progress = [line for line in logs if line.startswith("1/2 peers resolved for t")]
    assert 4 <= len(progress) <= 6  # at the start, then about every 30 s


def test_resolver_errors_are_retried():
    calls = []

    def flaky(name):
        calls.append(name)
        if len(calls) == 1:
            raise OSError("Temporary failure in name resolution")
        return ["10.0.0.1"]

    logs: list[str] = []
    ctx = make_ctx({"TFBUILD_DNS_NAME": "t"}, resolve=flaky, addresses=["10.0.0.1"], logs=logs)
    assert dns.discover(ctx).hosts == ("10.0.0.1",)
    assert any("Temporary failure" in line for line in logs)


def test_this_container_must_carry_the_name():
    ctx = make_ctx(
        {"TFBUILD_DNS_NAME": "trainers"},
        node_count=2,
        addresses=["172.18.0.5"],
        resolve=lambda name: ["172.18.0.2", "172.18.0.3"],
    )
    with pytest.raises(DiscoveryError, match=r"172\.18\.0\.5.*not among.*--network-alias trainers"):
        dns.discover(ctx)


def test_zero_timeout_tries_once():
    resolver = GrowingName([], ["10.0.0.1"])
    ctx = make_ctx({"TFBUILD_DNS_NAME": "t"}, timeout=0, resolve=resolver)
    with pytest.raises(DiscoveryTimeout, match="waited 0s"):
        dns.discover(ctx)
    assert len(resolver.asked) == 1


def test_real_resolver_and_addresses_for_localhost():
    assert resolve_addresses("localhost") == ["127.0.0.1"]
    assert "127.0.0.1" in local_addresses()
    assert resolve_addresses("no-such-host.invalid") == []
    ctx = make_ctx({"TFBUILD_DNS_NAME": "localhost"}, node_count=1, resolve=resolve_addresses)
    ctx = type(ctx)(**{**vars(ctx), "own_addresses": local_addresses})
    m = dns.discover(ctx)
    assert m.hosts == ("127.0.0.1",) and m.node_rank == 0
