"""Shared fixtures. Docker tests use the real engine (`tfbuild engine` starts one
as root) and tfbuild's offline base image, made once and reused across runs."""

from __future__ import annotations

import os
import time

import pytest
from helpers import HOST_CA, REPO, build_project, moto_on_docker0


@pytest.fixture(scope="session")
def docker_client():
    from tfbuild.engine.setup import engine_client, ensure_engine

    ensure_engine()
    return engine_client()


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    """tfbuild/debian:bookworm, made offline with debootstrap when missing."""
    from tfbuild.engine.bootstrap import make_base_image

    return make_base_image("bookworm")


@pytest.fixture
def moto_endpoint():
    """moto's S3 server on docker0's address (a job's containers and this host reach it);
    its URL. Credentials: helpers.TEST_AWS, client: helpers.moto_client."""
    with moto_on_docker0() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def trust_host_ca() -> dict:
    """Spec overrides so builds trust this machine's CA bundle (TLS is intercepted here)."""
    return {"trust_host_ca": True} if HOST_CA.exists() else {}


REPORT_LINES = 40
"""Lines of each failure printed when it happens (the full report is in the summary)."""
_STARTED = time.monotonic()
_terminal = None
_engine_seen = False


def pytest_configure(config):
    global _terminal
    _terminal = config.pluginmanager.get_plugin("terminalreporter")


def pytest_runtest_logreport(report):
    # A failure is printed as it happens, not only in the final summary: a CI run cut off
    # later (a hung engine, its time limit) still shows why its first test failed.
    if report.failed and _terminal is not None:
        lines = str(report.longrepr).splitlines()[-REPORT_LINES:]
        _terminal.write_line(f"\n--- {report.nodeid} failed ({report.when}):", red=True)
        for line in lines:
            _terminal.write_line(f"    {line}")


def pytest_runtest_teardown(item, nextitem):
    # TFBUILD_TEST_BUDGET (seconds, set by .ci/run): past it, the run stops with a failure
    # and its summary instead of being killed mid-test with nothing said.
    budget = float(os.environ.get("TFBUILD_TEST_BUDGET") or 0)
    elapsed = time.monotonic() - _STARTED
    if budget and elapsed > budget and nextitem is not None:
        item.session.shouldfail = (f"the test run used its {budget:.0f} s budget "
                                   f"(TFBUILD_TEST_BUDGET) after {item.nodeid}")


ENGINE_BOUND = 90.0
"""Seconds a Docker test waits for the engine to answer a ping before the run stops."""


def pytest_runtest_setup(item):
    # An engine that stopped answering would make every later Docker test wait out its own
    # timeouts (10 min per API call): stop the run at once, saying so.
    if item.get_closest_marker("docker") is None or "docker_client" not in item.fixturenames:
        return
    from tfbuild.engine.setup import engine_answers

    global _engine_seen
    if not _engine_seen:  # not started yet: the docker_client fixture starts it
        _engine_seen = engine_answers()
        return
    deadline = time.monotonic() + ENGINE_BOUND
    while not engine_answers():
        if time.monotonic() > deadline:
            item.session.shouldfail = "the Docker engine stopped answering"
            pytest.fail(f"the Docker engine did not answer a ping for {ENGINE_BOUND:g} s "
                        "(see /var/log/tfbuild-dockerd.log); stopping the run")
        time.sleep(2.0)


def pytest_collection_modifyitems(config, items):
    # Docker and e2e tests live in their folders; mark them so `-m "not docker"` works.
    for item in items:
        path = str(item.fspath)
        if f"{os.sep}tests{os.sep}docker{os.sep}" in path:
            item.add_marker(pytest.mark.docker)
        if f"{os.sep}tests{os.sep}e2e{os.sep}" in path:
            item.add_marker(pytest.mark.docker)
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def example_image(base_image) -> str:
    """The Keras digits example (TF CPU + scikit-learn), shared by docker and e2e tests."""
    return build_project(REPO / "examples" / "keras-digits", "tfbuild-test/keras-digits:latest")
