"""The serving node's member ledger (control.state), driven without sockets through the
interleavings a job end can take."""

from __future__ import annotations

from tfbuild_agent.control.state import (
    DEPART,
    DEPARTED,
    FINISHED,
    FORGET,
    IGNORE,
    JOINED,
    LOSE,
    LOST,
    RUNNING,
    Ledger,
)


def formed(*keys: str) -> Ledger:
    ledger = Ledger()
    for key in keys:
        ledger.join(key)
    ledger.form()
    return ledger


def test_all_finish_together_every_connection_end_is_a_departure_whatever_the_order() -> None:
    ledger = formed("a", "b", "c")
    # b and c said goodbye and closed; the server's send to them fails before it reads it
    # (the 32-node "Broken pipe"): their ends come first, then the goodbyes are read.
    assert ledger.report("a", "finished") is True
    assert ledger.connection_ended("b") == DEPART
    assert ledger.connection_ended("c") == DEPART
    ledger.goodbye("a")
    assert ledger.connection_ended("a") == DEPART
    assert ledger.may_close()


def test_completed_reports_then_goodbyes_before_the_job_ends_are_departures() -> None:
    ledger = formed("a", "b")
    assert ledger.report("b", "completed") is False
    ledger.goodbye("b")
    assert ledger.phases["b"] == FINISHED
    assert ledger.connection_ended("b") == DEPART
    assert not ledger.may_close()  # a still runs: the serving node keeps serving
    ledger.goodbye("a")
    assert ledger.may_close()


def test_finish_while_another_joins_late_the_late_one_runs_and_holds_the_server() -> None:
    ledger = formed("a", "b")
    ledger.goodbye("a")
    assert ledger.connection_ended("b") == LOSE  # b restarts: its old connection is lost
    ledger.join("b")  # and it rejoins the formed job with its identity
    assert ledger.phases["b"] == RUNNING
    assert ledger.connection_ended("a") == DEPART
    assert not ledger.may_close()
    ledger.goodbye("b")
    assert ledger.connection_ended("b") == DEPART
    assert ledger.may_close()


def test_server_own_task_finishes_first_it_serves_until_the_others_finish() -> None:
    ledger = formed("server", "m1", "m2")
    ledger.report("server", "completed")
    ledger.goodbye("server")
    assert not ledger.may_close()
    ledger.goodbye("m1")
    assert not ledger.may_close()
    assert ledger.connection_ended("m2") == LOSE  # m2 crashed mid-run: a real loss
    assert ledger.may_close()


def test_a_member_that_crashes_after_finishing_departed() -> None:
    ledger = formed("a", "b")
    ledger.report("b", "completed")
    ledger.goodbye("b")
    assert ledger.connection_ended("b") == DEPART  # reset instead of a clean close
    assert ledger.phases["b"] == DEPARTED
    assert ledger.connection_ended("b") == IGNORE  # a second end of the same member


def test_a_member_lost_mid_run_is_lost_and_counts_once() -> None:
    ledger = formed("a", "b", "c")
    assert ledger.connection_ended("c") == LOSE
    assert ledger.phases["c"] == LOST
    assert ledger.connection_ended("c") == IGNORE
    assert ledger.report("a", "failed") is True  # the others stop: the job failed
    assert ledger.connection_ended("b") == DEPART
    assert ledger.report("b", "finished") is False  # the job already ended once


def test_after_a_failure_every_end_is_a_departure_not_another_loss() -> None:
    ledger = formed("a", "b", "c")
    ledger.report("a", "failed")
    assert [ledger.connection_ended(k) for k in ("a", "b", "c")] == [DEPART] * 3


def test_before_forming_a_connection_end_forgets_the_member() -> None:
    ledger = Ledger()
    ledger.join("a")
    ledger.join("b")
    assert ledger.phases == {"a": JOINED, "b": JOINED}
    assert not ledger.may_close()
    assert ledger.connection_ended("a") == FORGET
    assert "a" not in ledger.phases
    ledger.join("a")
    ledger.form()
    assert set(ledger.phases.values()) == {RUNNING}


def test_counts_per_phase_and_a_goodbye_from_a_stranger_changes_nothing() -> None:
    ledger = formed("a", "b", "c")
    ledger.goodbye("a")
    ledger.goodbye("stranger")  # a connection that never joined: nothing to record
    assert (ledger.count(RUNNING), ledger.count(FINISHED), ledger.count(JOINED)) == (2, 1, 0)
    assert "stranger" not in ledger.phases
    assert ledger.connection_ended("b") == LOSE
    assert (ledger.count(RUNNING), ledger.count(LOST)) == (1, 1)
