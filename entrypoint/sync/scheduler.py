"""Which file to upload next: a thread-safe set of pending paths with due times.

Watch events mark paths; upload workers `take` the earliest due path that no other
worker holds and `finish` it (done, retry after a back-off, or look again later).
Events that arrive while a path is being uploaded are kept and merged afterwards,
so a file rewritten mid-upload is uploaded again. The clock is injectable for tests.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace


def backoff(attempts: int, *, base: float = 0.5, cap: float = 8.0, rng: random.Random | None = None
            ) -> float:
    """Seconds to wait after the `attempts`-th failure: doubling, capped, +-20% jitter."""
    raw = min(cap, base * 2 ** max(0, attempts - 1))
    return raw * (0.8 + 0.4 * (rng or random).random())


@dataclass(frozen=True)
class Item:
    rel: str
    ready_at: float
    """When to look at it: now for a closed file, after a quiet spell for a changing one."""
    not_before: float
    """Back-off after a failed upload."""
    first_seen: float
    closed: bool
    """A writer closed it (or renamed it into place): no need to wait for it to settle."""
    attempts: int = 0
    last_error: str = ""

    @property
    def due(self) -> float:
        return max(self.ready_at, self.not_before)


class Scheduler:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._pending: dict[str, Item] = {}
        self._inflight: dict[str, Item] = {}
        self._all_closed = False
        self._stopped = False

    def mark(self, rel: str, *, closed: bool, settle: float = 0.0,
             max_wait: float | None = None) -> None:
        """A file was closed (upload now) or changed (upload after `settle` quiet seconds;
        each change starts the wait again, but never past `max_wait` after the first)."""
        with self._cond:
            now = self._clock()
            closed = closed or self._all_closed
            ready = now if closed else now + settle
            old = self._pending.get(rel)
            first = old.first_seen if old is not None else now
            if max_wait is not None:
                ready = min(ready, first + max_wait)
            if old is None:
                self._pending[rel] = Item(rel, ready, now, now, closed)
            else:
                self._pending[rel] = replace(old, ready_at=ready, closed=closed)
            self._cond.notify_all()

    def take(self, timeout: float) -> Item | None:
        """The earliest due path nobody holds, waiting up to `timeout` seconds for one."""
        deadline = self._clock() + timeout
        with self._cond:
            while not self._stopped:
                now = self._clock()
                free = [i for r, i in self._pending.items() if r not in self._inflight]
                if free:
                    item = min(free, key=lambda i: i.due)
                    if item.due <= now:
                        del self._pending[item.rel]
                        self._inflight[item.rel] = item
                        return item
                    wait = min(item.due, deadline) - now
                else:
                    wait = deadline - now
                if wait <= 0:
                    return None
                self._cond.wait(wait)
            return None

    def finish(self, item: Item, *, retry_in: float | None = None, error: str = "",
               recheck_in: float | None = None) -> None:
        """Done with `item`: uploaded (no arguments), failed (`retry_in`), or not settled
        yet (`recheck_in`)."""
        with self._cond:
            now = self._clock()
            self._inflight.pop(item.rel, None)
            newer = self._pending.get(item.rel)
            if retry_in is not None:
                again = replace(item, not_before=now + retry_in, attempts=item.attempts + 1,
                                last_error=error)
            elif recheck_in is not None:
                again = replace(item, ready_at=now + recheck_in)
            else:
                again = None
            if again is not None and newer is not None:
                # Fresh events decide readiness; the failure history decides the back-off.
                again = replace(again, ready_at=newer.ready_at, closed=newer.closed)
            if again is not None:
                self._pending[item.rel] = again
            self._cond.notify_all()

    def close_all(self) -> None:
        """Final flush: the writers are gone, so everything pending counts as closed now."""
        with self._cond:
            self._all_closed = True
            now = self._clock()
            for rel, item in self._pending.items():
                self._pending[rel] = replace(item, closed=True, ready_at=now,
                                             not_before=min(item.not_before, now))
            self._cond.notify_all()

    def wait_idle(self, timeout: float, which: Callable[[str], bool] | None = None) -> bool:
        """True once no path (for which `which` holds) is pending or in flight; False after
        `timeout` seconds."""
        deadline = self._clock() + timeout
        with self._cond:
            while True:
                busy = [r for r in (*self._pending, *self._inflight) if which is None or which(r)]
                if not busy:
                    return True
                left = deadline - self._clock()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))

    def drop(self, which: Callable[[str], bool]) -> None:
        """Forget pending paths for which `which` holds (in-flight ones finish normally)."""
        with self._cond:
            for rel in [r for r in self._pending if which(r)]:
                del self._pending[rel]
            self._cond.notify_all()

    def outstanding(self) -> dict[str, Item]:
        """Every path not yet uploaded, pending or in flight."""
        with self._cond:
            return {**self._pending, **self._inflight}

    def holds(self, rel: str) -> bool:
        with self._cond:
            return rel in self._pending or rel in self._inflight

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
