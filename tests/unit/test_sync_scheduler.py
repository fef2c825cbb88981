"""The upload queue with a hand-driven clock: due times, in-flight exclusion, back-off."""

from __future__ import annotations

import random
import threading

from tfbuild_agent.sync.scheduler import Scheduler, backoff


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make() -> tuple[Scheduler, Clock]:
    clock = Clock()
    return Scheduler(clock), clock


def test_closed_files_are_due_now_changing_ones_after_the_settle_time() -> None:
    s, clock = make()
    s.mark("logs/a", closed=False, settle=1.0)
    s.mark("outputs/b", closed=True)
    first = s.take(0)
    assert first is not None and first.rel == "outputs/b" and first.closed
    assert s.take(0) is None  # logs/a is not due yet
    clock.now += 1.0
    second = s.take(0)
    assert second is not None and second.rel == "logs/a" and not second.closed


def test_each_change_pushes_the_due_time_and_a_close_makes_it_due_now() -> None:
    s, clock = make()
    s.mark("logs/a", closed=False, settle=1.0)
    clock.now += 0.8
    s.mark("logs/a", closed=False, settle=1.0)
    clock.now += 0.8
    assert s.take(0) is None  # still changing
    s.mark("logs/a", closed=True)
    assert s.take(0) is not None


def test_a_path_in_flight_is_not_handed_out_twice_and_new_events_survive() -> None:
    s, _ = make()
    s.mark("outputs/a", closed=True)
    item = s.take(0)
    s.mark("outputs/a", closed=True)  # rewritten while uploading
    assert s.take(0) is None
    s.finish(item)
    again = s.take(0)
    assert again is not None and again.rel == "outputs/a" and again.attempts == 0


def test_failure_backs_off_even_when_events_keep_coming() -> None:
    s, clock = make()
    s.mark("outputs/a", closed=True)
    item = s.take(0)
    s.finish(item, retry_in=4.0, error="connection refused")
    s.mark("outputs/a", closed=True)
    assert s.take(0) is None
    clock.now += 4.0
    retry = s.take(0)
    assert retry is not None and retry.attempts == 1 and retry.last_error == "connection refused"
    assert s.outstanding() == {"outputs/a": retry}


def test_unsettled_is_looked_at_again_later() -> None:
    s, clock = make()
    s.mark("outputs/a", closed=False, settle=0.0)
    item = s.take(0)
    s.finish(item, recheck_in=2.0)
    assert s.take(0) is None
    clock.now += 2.0
    assert s.take(0) is not None


def test_close_all_makes_everything_closed_and_due_now() -> None:
    s, _ = make()
    s.mark("logs/a", closed=False, settle=30.0)
    assert s.take(0) is None
    s.mark("outputs/b", closed=True)
    b = s.take(0)
    s.finish(b, retry_in=60.0)
    s.close_all()
    got = {s.take(0).rel, s.take(0).rel}
    assert got == {"logs/a", "outputs/b"}
    s.mark("logs/c", closed=False, settle=30.0)  # after close_all, changes count as closed
    assert s.take(0).closed


def test_drop_and_holds() -> None:
    s, _ = make()
    s.mark("outputs/a", closed=True)
    s.mark(":record", closed=True)
    s.drop(lambda rel: rel != ":record")
    assert not s.holds("outputs/a") and s.holds(":record")


def test_wait_idle_and_take_wake_up_across_threads() -> None:
    s = Scheduler()
    s.mark("outputs/a", closed=True)
    assert not s.wait_idle(0.05)
    worker = threading.Thread(target=lambda: s.finish(s.take(1.0)))
    worker.start()
    assert s.wait_idle(2.0)
    worker.join(2)
    got = []
    waiter = threading.Thread(target=lambda: got.append(s.take(2.0)))
    waiter.start()
    s.mark("outputs/b", closed=True)  # wakes the waiting take
    waiter.join(2)
    assert got and got[0].rel == "outputs/b"
    s.stop()
    assert s.take(5.0) is None  # returns at once once stopped


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    rng = random.Random(1)
    assert 0.4 <= backoff(1, rng=rng) <= 0.6
    assert 1.6 <= backoff(3, rng=rng) <= 2.4
    assert backoff(30, rng=rng) <= 8.0 * 1.2


def test_a_file_that_never_pauses_is_due_after_max_wait() -> None:
    s, clock = make()
    for _ in range(10):
        s.mark("logs/busy", closed=False, settle=1.0, max_wait=3.0)
        clock.now += 0.5
    item = s.take(0)
    assert item is not None and item.rel == "logs/busy"
