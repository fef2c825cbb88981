"""Building DiscoveryContexts for tests: a fixed environment, files, addresses and a
fake clock, so no test touches the real network or waits."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from tfbuild_agent.discovery.context import DiscoveryContext
from tfbuild_agent.jobspec import JobSpec


class FakeClock:
    """monotonic() that only moves when sleep() is called."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        assert len(self.sleeps) < 10_000, "endless wait: the code under test never gives up"
        self.now += seconds


def make_ctx(
    env: Mapping[str, str] | None = None,
    *,
    node_count: int = 1,
    hostname: str = "host0",
    files: Mapping[str, str] | None = None,
    addresses: list[str] | None = None,
    resolve: Callable[[str], list[str]] | None = None,
    timeout: float = 300.0,
    clock: FakeClock | None = None,
    logs: list[str] | None = None,
    **job_fields: object,
) -> DiscoveryContext:
    files = dict(files or {})
    clock = clock or FakeClock()
    log_sink = logs if logs is not None else []

    def no_dns(name: str) -> list[str]:
        raise AssertionError(f"unexpected DNS lookup of {name}")

    return DiscoveryContext(
        env=dict(env or {}),
        job=JobSpec(node_count=node_count, **job_fields),  # type: ignore[arg-type]
        hostname=hostname,
        timeout=timeout,
        resolve=resolve or no_dns,
        own_addresses=lambda: list(addresses or ["127.0.0.1"]),
        read_file=files.get,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        log=log_sink.append,
    )
