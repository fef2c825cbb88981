"""Node 0 of an mpi job: write the hostfile, wait until every other agent answers on
its launch channel, run mpirun, and tell every agent how the job ended."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ...contract import TIME_LIMIT_EXIT_CODE, TIME_LIMIT_REASON
from ...control.wire import ProtocolError
from ...errors import AgentError, ConfigError, DiscoveryError, DiscoveryTimeout
from ...jobspec import JobSpec
from ...recorder import NodeTask, TaskRecorder
from ...settings import AgentSettings
from ...topology import Plan
from .. import netif
from ..command import entry_command, merge_script_params
from ..output import OutputPump
from ..reaper import Reaper
from .channel import JobResult, LaunchRefused, ping, send_result
from .command import (
    HOSTS_VAR,
    MpiSettings,
    agent_command,
    describe_failure,
    exported_names,
    mpirun_argv,
    rsh_agent_value,
)
from .rank import line_buffered

PING_BOUND = 5.0
PROGRESS_EVERY = 10.0
RESULT_SEND_BOUND = 10.0
"""How long node 0 keeps trying to tell one agent the job's result."""
TAIL_LINES = 200
"""mpirun's last stderr lines kept to find which rank failed (the run record gets them too)."""


def run_launcher(
    plan: Plan,
    job: JobSpec,
    script_args: Sequence[str],
    env: Mapping[str, str],
    workdir: Path,
    python: str,
    log: Callable[[str], None],
    *,
    settings: MpiSettings,
    token: str | None,
    run_id: str,
    agent: AgentSettings,
) -> int:
    hosts = list(plan.hosts)
    peers = hosts[1:]
    run_env = {**os.environ, **env, **job.environment, "TFBUILD_RUN_ID": run_id,
               HOSTS_VAR: ",".join(hosts)}
    reaper = Reaper()
    reaper.install()
    scratch = Path(tempfile.mkdtemp(prefix="tfbuild-mpi-"))
    try:
        try:
            argv = _mpirun_command(plan, job, script_args, run_env, scratch, workdir, python,
                                   settings, log)
            if peers:
                wait_for_agents(peers, settings, token, log, reaper)
        except AgentError as e:
            # The other nodes wait for a launch that will not come: tell them now.
            tell_agents(peers, settings.launch_port, token, JobResult(1, str(e)), log)
            raise
        log(f"mpi: starting {plan.world_size} rank(s) on {len(hosts)} node(s) "
            f"({job.process_count_per_node} per node): {shlex.join(argv)}")
        recorder = TaskRecorder(run_id, "mpirun", True, workdir, log,
                                upload_to=agent.upload_to, store_env=env)
        record = NodeTask(recorder, "mpirun", "launcher", 0)
        limit = job.max_run_duration_seconds
        code, tail, timed_out = _run_mpirun(argv, run_env, workdir, reaper, record, agent.grace,
                                            log, limit)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    canceled = reaper.signal is not None or timed_out
    if timed_out and reaper.signal is None:
        code = TIME_LIMIT_EXIT_CODE
        message = f"{TIME_LIMIT_REASON}: the job ran for max_run_duration_seconds ({limit} s)"
    elif canceled:
        code = 128 + reaper.signal  # as for every backend: canceled, not failed
        message = (f"stopped by {signal.Signals(reaper.signal).name} on the launcher node "
                   f"{hosts[0]}")
    elif code == 0:
        message = f"all {plan.world_size} rank(s) completed"
    else:
        message = describe_failure(tail, code, hosts, job.process_count_per_node)
    outcome = "canceled" if canceled else "completed" if code == 0 else "failed"
    log(f"mpi: job {outcome}: {message}")
    tell_agents(peers, settings.launch_port, token, JobResult(code, message), log)
    extra = None
    if code == 0 and job.export_onnx:
        # Rank 0 runs on this node: its ./outputs is here. The other nodes were told
        # already (they must not wait for the export).
        from ...export.onnx_export import run_export

        result = run_export(job.export_onnx, python, workdir, run_env, log)
        extra = {"onnx": result.record}
        if not result.ok and result.fail_job:
            code, message = 1, f"ONNX export failed: {result.reason}"
            log(f"mpi: job failed: {message} (export_onnx.fail_job)")
    record.finish(code, canceled, "\n".join(tail), reason=message, extra=extra)
    return code


def _mpirun_command(
    plan: Plan,
    job: JobSpec,
    script_args: Sequence[str],
    run_env: Mapping[str, str],
    scratch: Path,
    workdir: Path,
    python: str,
    settings: MpiSettings,
    log: Callable[[str], None],
) -> list[str]:
    """Write the hostfile into `scratch` and return mpirun's argv."""
    if shutil.which("mpirun", path=run_env.get("PATH")) is None:
        raise ConfigError(
            "mpirun is not installed in this image, so the mpi backend cannot start; build "
            "the image with distributed_backend: mpi (it adds Open MPI)"
        )
    peers = list(plan.hosts[1:])
    hostfile = scratch / "hostfile"
    hostfile.write_text(plan.hostfile or "")
    rank_command = line_buffered(entry_command(
        job.entry_script, python, merge_script_params(job.script_params, script_args)
    ), python)
    return mpirun_argv(
        world_size=plan.world_size,
        hostfile=str(hostfile),
        workdir=str(workdir),
        rsh_agent=rsh_agent_value(agent_command(), settings.launch_port) if peers else None,
        interface=settings.interface or _detect_interface(peers, log),
        exports=exported_names(run_env, job.environment, settings.extra_exports),
        command=[*agent_command(), "mpi-rank", "--", *rank_command],
        extra_args=settings.extra_args,
    )


def _run_mpirun(
    argv: list[str],
    run_env: Mapping[str, str],
    workdir: Path,
    reaper: Reaper,
    record: NodeTask,
    grace: float,
    log: Callable[[str], None],
    time_limit: float | None = None,
) -> tuple[int, list[str], bool]:
    """mpirun's exit code, its last stderr lines and whether the time limit stopped it;
    output goes to ./logs/mpirun.log too."""
    try:
        proc = subprocess.Popen(
            argv, cwd=workdir, env=dict(run_env), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,  # a signal to the agent reaches mpirun only through us
        )
    except OSError as e:
        raise ConfigError(f"cannot start mpirun: {e.strerror}") from None
    record.running()
    pump = OutputPump("mpirun", workdir / "logs" / "mpirun.log", prefix=False,
                      tail_lines=TAIL_LINES)
    pump.attach(proc.stdout, proc.stderr)  # type: ignore[arg-type]
    code, timed_out = _wait_mpirun(proc, reaper, grace, log, time_limit)
    pump.close()
    return code, list(pump.stderr_tail), timed_out


def _detect_interface(peers: Sequence[str], log: Callable[[str], None]) -> str | None:
    if not peers:
        return None
    found = netif.job_network(peers[0])
    if found is None:
        log(f"mpi: cannot tell which network reaches {peers[0]}; Open MPI chooses interfaces "
            "itself (set TFBUILD_MPI_IFACE to an interface name or CIDR to choose)")
        return None
    name, cidr = found
    log(f"mpi: Open MPI's TCP traffic restricted to {cidr} ({name} here), the job's network")
    return cidr


def wait_for_agents(
    peers: Sequence[str],
    settings: MpiSettings,
    token: str | None,
    log: Callable[[str], None],
    reaper: Reaper,
) -> None:
    """Return once every peer's agent answers a ping with our token (bounded)."""
    port, timeout = settings.launch_port, settings.peer_timeout
    start = time.monotonic()
    deadline, next_log = start + timeout, start + PROGRESS_EVERY
    pending = {host: "no attempt yet" for host in peers}
    log(f"mpi: waiting up to {timeout:g} s for the agents on {', '.join(peers)} "
        f"(launch channel, port {port})")
    while pending:
        for host in list(pending):
            try:
                state = ping(host, port, token, min(PING_BOUND, max(deadline - time.monotonic(),
                                                                    0.5)))
            except LaunchRefused:
                raise
            except (OSError, ProtocolError) as e:
                pending[host] = str(e) or type(e).__name__
                continue
            if state != "waiting":
                raise DiscoveryError(
                    f"the agent on {host}:{port} already ran a launch ({state}), so it belongs "
                    "to an earlier job; restart that node's container with this job"
                )
            del pending[host]
        if not pending:
            break
        if reaper.signal is not None:
            raise AgentError(f"stopped by {signal.Signals(reaper.signal).name} while waiting "
                             f"for {', '.join(pending)}")
        now = time.monotonic()
        if now >= deadline:
            missing = ", ".join(f"{h}:{port} ({why})" for h, why in pending.items())
            raise DiscoveryTimeout(
                f"no answer on the MPI launch channel from {missing} within {timeout:g} s; "
                "start those nodes' containers with the same image and TFBUILD_JOB_TOKEN, check "
                f"that port {port} is reachable from this node, or allow more time "
                "(TFBUILD_DISCOVERY_TIMEOUT)"
            )
        if now >= next_log:
            log(f"mpi: still waiting for {', '.join(pending)} after {now - start:.0f} s")
            next_log = now + PROGRESS_EVERY
        time.sleep(0.5)
    log(f"mpi: every agent answered after {time.monotonic() - start:.1f} s")


def _wait_mpirun(
    proc: subprocess.Popen[bytes], reaper: Reaper, grace: float, log: Callable[[str], None],
    time_limit: float | None = None,
) -> tuple[int, bool]:
    """mpirun's exit code, and whether max_run_duration_seconds stopped it. A signal to
    the agent, or the time limit, sends SIGTERM to mpirun (which stops the ranks
    everywhere); after `grace` seconds its whole process group is killed."""
    kill_at: float | None = None
    limit_at = time.monotonic() + time_limit if time_limit else None
    timed_out = False
    while True:
        for pid, code in reaper.reap():
            if pid == proc.pid:
                proc.returncode = code
                return code, timed_out
        if limit_at is not None and kill_at is None and time.monotonic() >= limit_at:
            timed_out = True
            log(f"mpi: {TIME_LIMIT_REASON}: max_run_duration_seconds ({time_limit:g} s) "
                f"reached: stopping mpirun (grace {grace:g} s)")
            _signal(proc.pid, signal.SIGTERM, group=False)
            kill_at = time.monotonic() + grace
        if reaper.signal is not None and kill_at is None:
            name = signal.Signals(reaper.signal).name
            log(f"mpi: received {name}: forwarding it to mpirun (grace {grace:g} s)")
            _signal(proc.pid, reaper.signal, group=False)
            kill_at = time.monotonic() + grace
        if kill_at is not None and time.monotonic() >= kill_at:
            log("mpi: mpirun still running after the grace period: killing it")
            _signal(proc.pid, signal.SIGKILL, group=True)
            kill_at = float("inf")
        time.sleep(0.1)


def _signal(pid: int, sig: int, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def tell_agents(
    peers: Sequence[str],
    port: int,
    token: str | None,
    result: JobResult,
    log: Callable[[str], None],
) -> None:
    """Send every peer the job's result, in parallel, each bounded by RESULT_SEND_BOUND."""

    def tell(host: str) -> None:
        deadline = time.monotonic() + RESULT_SEND_BOUND
        while True:
            try:
                send_result(host, port, token, result, PING_BOUND)
                return
            except (OSError, ProtocolError, AgentError) as e:
                if isinstance(e, LaunchRefused) or time.monotonic() >= deadline:
                    log(f"mpi: could not tell {host}:{port} how the job ended ({e}); it exits "
                        "on its own once its daemon is gone")
                    return
            time.sleep(0.5)

    threads = [threading.Thread(target=tell, args=(h,), daemon=True) for h in peers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(RESULT_SEND_BOUND + PING_BOUND)
