"""The serving node's view of the job's members: a pure state machine, no sockets.

    joined    accepted, the job has not formed yet
    running   the job formed; the member's tasks run
    finished  it said goodbye: all its tasks ended and were reported
    departed  its connection ended after it finished, or after the job ended
    lost      its connection ended (or went silent) while it was running

The server's socket loop feeds it events (`join`, `form`, `report`, `goodbye`,
`connection_ended`) and does what the answers say; docs/rendezvous.md has the table.
The rules that keep a clean job end from looking like a failure:
- a connection that ends, however it ends (EOF, reset, a failed send), is a departure
  once the member said goodbye or once the job ended (finished or failed);
- the serving node may close only when no member is still joined or running.
"""

from __future__ import annotations

from dataclasses import dataclass, field

JOINED, RUNNING, FINISHED, DEPARTED, LOST = "joined", "running", "finished", "departed", "lost"
PHASES = (JOINED, RUNNING, FINISHED, DEPARTED, LOST)
JOB_ENDING_REPORTS = ("finished", "failed")

FORGET, DEPART, LOSE, IGNORE = "forget", "depart", "lose", "ignore"
"""What a connection end means: forget the member (before forming), a departure, a loss,
or nothing (it was not a current member)."""


@dataclass
class Ledger:
    phases: dict[str, str] = field(default_factory=dict)
    formed: bool = False
    job_end: str | None = None
    """`finished` or `failed` once a member reported the decisive end of the job."""

    def join(self, key: str) -> None:
        """A member joined (or rejoined with the same key: after forming it runs again)."""
        self.phases[key] = RUNNING if self.formed else JOINED

    def form(self) -> None:
        self.formed = True
        for key in self.phases:
            self.phases[key] = RUNNING

    def report(self, key: str, kind: str) -> bool:
        """A member reported how one of its tasks ended; True if this ends the job."""
        if kind in JOB_ENDING_REPORTS and self.job_end is None:
            self.job_end = kind
            return True
        return False

    def goodbye(self, key: str) -> None:
        if key in self.phases and self.phases[key] in (JOINED, RUNNING):
            self.phases[key] = FINISHED

    def connection_ended(self, key: str) -> str:
        """The member's connection ended: FORGET, DEPART, LOSE or IGNORE."""
        phase = self.phases.get(key)
        if phase is None or phase in (DEPARTED, LOST):
            return IGNORE
        if phase == JOINED:
            del self.phases[key]
            return FORGET
        if phase == FINISHED or self.job_end is not None:
            self.phases[key] = DEPARTED
            return DEPART
        self.phases[key] = LOST
        return LOSE

    def may_close(self) -> bool:
        """The serving node may stop serving: nobody is still joined or running."""
        return not any(p in (JOINED, RUNNING) for p in self.phases.values())

    def count(self, phase: str) -> int:
        return sum(1 for p in self.phases.values() if p == phase)
