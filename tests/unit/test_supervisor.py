"""The supervisor with real child processes: signals, exit codes, job semantics."""

import os
import signal
import sys
import threading
import time

from tfbuild_agent.control.channel import Event
from tfbuild_agent.launch.supervisor import Supervisor, exit_code_of
from tfbuild_agent.topology import Task

SLEEPER = "import time,sys; print('serving', flush=True); time.sleep(60)"


def make(tmp_path, scripts, decisive=None, servers=(), grace=5.0, control=None):
    tasks = [
        Task(role=name.split("-")[0], index=int(name.split("-")[1]), rank=i, local_rank=i)
        for i, name in enumerate(scripts)
    ]
    statuses = []
    sup = Supervisor(
        tasks,
        lambda t: [sys.executable, "-c", scripts[t.name]],
        dict(os.environ),
        tmp_path,
        tmp_path / "logs",
        decisive_task=decisive,
        servers_only=servers,
        grace=grace,
        control=control,
        on_status=lambda task, status, code, tail, _why: statuses.append((task.name, status, code)),
        log=lambda m: None,
    )
    return sup, statuses


def test_exit_code_convention():
    assert exit_code_of(0) == 0
    assert exit_code_of(3 << 8) == 3
    assert exit_code_of(signal.SIGTERM) == 143


def test_chief_success_stops_servers_and_job_completes(tmp_path):
    sup, statuses = make(
        tmp_path,
        {
            "chief-0": "import time; time.sleep(0.5); print('done')",
            "ps-0": SLEEPER,
            "worker-0": SLEEPER,
        },
        decisive="chief-0",
        servers=("ps-0", "worker-0"),
    )
    started = time.monotonic()
    outcome = sup.run()
    assert outcome.exit_code == 0 and outcome.status == "Completed"
    assert time.monotonic() - started < 10
    assert ("chief-0", "Completed", 0) in statuses
    # Servers stopped because the chief is done have done their part.
    assert ("ps-0", "Completed", 0) in statuses and ("worker-0", "Completed", 0) in statuses
    assert (tmp_path / "logs" / "chief-0.log").read_text().strip() == "done"


def test_a_failing_task_stops_the_others_and_names_itself(tmp_path):
    sup, statuses = make(
        tmp_path,
        {"worker-0": SLEEPER, "worker-1": "import sys; sys.stderr.write('boom\\n'); sys.exit(3)"},
        decisive="worker-0",
    )
    outcome = sup.run()
    assert outcome.exit_code == 3 and outcome.status == "Failed"
    assert "worker-1" in outcome.reason
    assert ("worker-1", "Failed", 3) in statuses


def test_sigterm_is_forwarded_and_agent_exits_143(tmp_path):
    marker = tmp_path / "marker"
    script = (
        "import signal, sys, time, pathlib\n"
        "def bye(*a):\n"
        f"    pathlib.Path({str(marker)!r}).write_text('got SIGTERM')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    sup, _ = make(tmp_path, {"worker-0": script}, decisive="worker-0")
    threading.Timer(1.0, lambda: sup._on_signal(signal.SIGTERM, None)).start()
    outcome = sup.run()
    assert marker.read_text() == "got SIGTERM"
    assert outcome.exit_code == 143 and outcome.status == "Canceled"


def test_children_ignoring_sigterm_are_killed_after_the_grace(tmp_path):
    script = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    sup, _ = make(tmp_path, {"worker-0": script}, decisive="worker-0", grace=1.0)
    threading.Timer(0.5, lambda: sup._on_signal(signal.SIGTERM, None)).start()
    started = time.monotonic()
    outcome = sup.run()
    assert outcome.exit_code == 143
    assert time.monotonic() - started < 10
    assert outcome.task_codes["worker-0"] == 137


def test_control_failure_event_stops_local_tasks(tmp_path):
    class FakeControl:  # stands in for the network channel (tested for real in test_control)
        def __init__(self):
            self.reports = []
            self.sent = False

        def report(self, task, status, code):
            self.reports.append((task, status, code))

        def next_event(self, timeout):
            time.sleep(timeout)
            if not self.sent and time.monotonic() - t0 > 0.5:
                self.sent = True
                return Event("failed", "task worker-3 on node 1 failed with exit code 1",
                             task="worker-3", exit_code=1)
            return None

    control = FakeControl()
    t0 = time.monotonic()
    sup, _ = make(tmp_path, {"worker-0": SLEEPER}, decisive="worker-0", control=control)
    outcome = sup.run()
    assert outcome.exit_code != 0
    assert "worker-3" in outcome.reason


def test_a_task_stopped_because_the_job_failed_elsewhere_is_failed_not_canceled(tmp_path):
    """Canceled is for a job a user or the scheduler stopped; here a node was lost."""
    import queue

    class Lost:
        def __init__(self):
            self.events = queue.Queue()
            self.events.put(Event(kind="lost", message="node b (rank 1) lost: it sent nothing",
                                  identity="b", rank=1))

        def report(self, task, status, exit_code):
            pass

        def next_event(self, timeout):
            try:
                return self.events.get(timeout=timeout)
            except queue.Empty:
                return None

    tasks = [Task(role="worker", index=0, rank=0, local_rank=0)]
    seen, lost = [], []
    sup = Supervisor(
        tasks, lambda t: [sys.executable, "-c", SLEEPER], dict(os.environ), tmp_path,
        tmp_path / "logs", decisive_task="worker-0", grace=5.0, control=Lost(),
        on_status=lambda task, status, code, tail, why: seen.append((status, why)),
        on_lost=lambda rank, why: lost.append((rank, why)), log=lambda m: None,
    )
    outcome = sup.run()
    assert outcome.status == "Failed" and outcome.exit_code == 1
    assert "node b (rank 1) lost" in outcome.reason
    status, why = seen[-1]
    assert status == "Failed" and "node b (rank 1) lost" in why
    assert lost == [(1, "node b (rank 1) lost: it sent nothing")]
