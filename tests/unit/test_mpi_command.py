"""Pure parts of the mpi backend: settings, mpirun's argv, exported variables, the
rank wrapper's environment, and reading Open MPI 4.1's failure messages."""

from __future__ import annotations

import os

import pytest

from tfbuild_agent.errors import ConfigError
from tfbuild_agent.jobspec import JobSpec
from tfbuild_agent.launch.mpi.command import (
    describe_failure,
    exported_names,
    mpi_settings,
    mpirun_argv,
    rsh_agent_value,
)
from tfbuild_agent.launch.mpi.rank import rank_environment

JOB = JobSpec(distributed_backend="mpi", node_count=2, process_count_per_node=2)

# Verbatim from Open MPI 4.1.4 (Debian bookworm) after rank 3 exited with 1.
NON_ZERO = """\
[1,3]<stderr>:RuntimeError: rank 3 fails on purpose
--------------------------------------------------------------------------
Primary job  terminated normally, but 1 process returned
a non-zero exit code. Per user-direction, the job has been aborted.
--------------------------------------------------------------------------
--------------------------------------------------------------------------
mpirun detected that one or more processes exited with non-zero status, thus causing
the job to be terminated. The first process to do so was:

  Process name: [[2421,1],3]
  Exit code:    1
--------------------------------------------------------------------------"""
SIGNALLED = """\
--------------------------------------------------------------------------
mpirun noticed that process rank 1 with PID 0 on node tfjob-0 exited on signal 9 (Killed).
--------------------------------------------------------------------------"""

ABORTED = """\
--------------------------------------------------------------------------
MPI_ABORT was invoked on rank 1 in communicator MPI_COMM_WORLD
with errorcode 5.

NOTE: invoking MPI_ABORT causes Open MPI to kill all MPI processes.
You may or may not see output from other processes, depending on
exactly when Open MPI kills them.
--------------------------------------------------------------------------"""


def argv_value(argv: list[str], flag: str, name: str | None = None) -> str:
    for i, word in enumerate(argv):
        if word == flag and (name is None or argv[i + 1] == name):
            return argv[i + 2] if name else argv[i + 1]
    raise AssertionError(f"{flag} {name or ''} not in {argv}")


def test_mpirun_argv_has_the_flags_the_backend_relies_on() -> None:
    argv = mpirun_argv(world_size=4, hostfile="/tmp/h", workdir="/app",
                       rsh_agent="/a/tfbuild-agent mpi-rsh --port 29401",
                       interface="172.18.0.0/16", exports=["PATH", "TFBUILD_RUN_ID"],
                       command=["/a/tfbuild-agent", "mpi-rank", "--", "python", "-u", "t.py"],
                       extra_args=["--mca", "btl_tcp_links", "2"])
    assert argv[0] == "mpirun" and "--allow-run-as-root" in argv and "--tag-output" in argv
    assert argv_value(argv, "-np") == "4"
    assert argv_value(argv, "--hostfile") == "/tmp/h"
    assert argv_value(argv, "-bind-to") == "none"
    assert argv_value(argv, "-map-by") == "slot"
    assert argv_value(argv, "--mca", "orte_abort_on_non_zero_status") == "1"
    assert argv_value(argv, "--mca", "plm_rsh_agent") == "/a/tfbuild-agent mpi-rsh --port 29401"
    assert argv_value(argv, "--mca", "plm_rsh_no_tree_spawn") == "1"
    assert "--leave-session-attached" in argv
    assert argv_value(argv, "--mca", "btl_tcp_if_include") == "172.18.0.0/16"
    assert argv_value(argv, "--mca", "oob_tcp_if_include") == "172.18.0.0/16"
    assert [argv[i + 1] for i, w in enumerate(argv) if w == "-x"] == ["PATH", "TFBUILD_RUN_ID"]
    # user arguments come after ours and right before the command
    assert argv[-9:] == ["--mca", "btl_tcp_links", "2", "/a/tfbuild-agent", "mpi-rank", "--",
                         "python", "-u", "t.py"]


def test_single_node_needs_no_rsh_agent_nor_interface() -> None:
    argv = mpirun_argv(world_size=2, hostfile="/h", workdir="/app", rsh_agent=None,
                       interface=None, exports=[], command=["x"])
    assert "plm_rsh_agent" not in argv and "btl_tcp_if_include" not in argv


def test_rsh_agent_value_refuses_paths_open_mpi_would_split() -> None:
    assert rsh_agent_value(["/opt/a/tfbuild-agent"], 29401) == (
        "/opt/a/tfbuild-agent mpi-rsh --port 29401")
    with pytest.raises(ConfigError, match="contains a space"):
        rsh_agent_value(["/opt/my agent/tfbuild-agent"], 29401)


def test_exports_keep_secrets_and_per_node_values_out() -> None:
    env = {
        "PATH": "/bin", "LD_LIBRARY_PATH": "/lib", "PYTHONUNBUFFERED": "1",
        "TF_USE_LEGACY_KERAS": "1", "TFBUILD_RUN_ID": "r", "TFBUILD_NODES": "2",
        "TFBUILD_JOB_TOKEN": "secret", "TFBUILD_NODE_RANK": "0", "TFBUILD_NODE_ID": "n0",
        "TF_CONFIG": "{}", "HOROVOD_FUSION_THRESHOLD": "0", "MY_SETTING": "x",
        "OTHER": "y", "HOME": "/root",
    }
    names = exported_names(env, job_environment=["MY_SETTING", "UNSET_ONE"], extra=["OTHER"])
    assert names == ["HOROVOD_FUSION_THRESHOLD", "LD_LIBRARY_PATH", "MY_SETTING", "OTHER",
                     "PATH", "PYTHONUNBUFFERED", "TFBUILD_NODES", "TFBUILD_RUN_ID",
                     "TF_USE_LEGACY_KERAS"]


def test_settings_defaults_and_overrides() -> None:
    s = mpi_settings({}, JOB, 300.0)
    assert (s.launch_port, s.peer_timeout, s.launch_timeout) == (29401, 300.0, 360.0)
    assert s.interface is None and s.extra_args == () and s.extra_exports == ()
    s = mpi_settings({"TFBUILD_MPI_LAUNCH_PORT": "4000", "TFBUILD_MPI_LAUNCH_TIMEOUT": "20",
                      "TFBUILD_MPI_IFACE": "eth1", "TFBUILD_MPIRUN_ARGS": "--mca x 'a b'",
                      "TFBUILD_MPI_EXPORT": "A, B"}, JOB, 300.0)
    assert (s.launch_port, s.launch_timeout, s.interface) == (4000, 20.0, "eth1")
    assert s.extra_args == ("--mca", "x", "a b") and s.extra_exports == ("A", "B")


@pytest.mark.parametrize("env, match", [
    ({"TFBUILD_MPI_LAUNCH_PORT": "70000"}, "not a port"),
    ({"TFBUILD_MPI_LAUNCH_PORT": "29400"}, "collides with the job's control port"),
    ({"TFBUILD_MPI_LAUNCH_TIMEOUT": "soon"}, "not a number of seconds"),
    ({"TFBUILD_MPIRUN_ARGS": "--x 'open"}, "does not parse"),
])
def test_bad_settings_say_what_and_how_to_fix(env: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        mpi_settings(env, JOB, 300.0)


def test_failure_names_the_rank_and_its_node() -> None:
    text = describe_failure(NON_ZERO.splitlines(), 1, ["tfjob-0", "tfjob-1"], 2)
    assert text == "rank 3 (on tfjob-1) exited with code 1; mpirun aborted the job (exit code 1)"


def test_failure_by_signal_names_the_rank() -> None:
    text = describe_failure(SIGNALLED.splitlines(), 137, ["tfjob-0", "tfjob-1"], 2)
    assert text.startswith("rank 1 (on tfjob-0) was killed by signal 9 (Killed)")


def test_mpi_abort_names_the_rank() -> None:
    text = describe_failure(ABORTED.splitlines(), 5, ["tfjob-0", "tfjob-1"], 1)
    assert text == ("rank 1 (on tfjob-1) called MPI_Abort on MPI_COMM_WORLD with error code 5; "
                    "Open MPI stopped every rank (exit code 5)")


def test_failure_without_a_verdict_points_to_the_log() -> None:
    assert "logs/mpirun.log" in describe_failure(["something else"], 2, ["a"], 1)


OMPI_RANK3 = {"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4",
              "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}


def test_rank_environment_from_open_mpi_identity() -> None:
    env = {**OMPI_RANK3, "TFBUILD_BACKEND": "mpi", "TFBUILD_NODES": "2",
           "TFBUILD_PROCS_PER_NODE": "2", "TFBUILD_MPI_HOSTS": "tfjob-0,tfjob-1",
           "TFBUILD_JOB_TOKEN": "secret", "KEEP": "me"}
    out = rank_environment(env)
    assert {k: out[k] for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                                "NODE_RANK", "MASTER_ADDR", "TFBUILD_TASK")} == {
        "RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2",
        "NODE_RANK": "1", "MASTER_ADDR": "tfjob-0", "TFBUILD_TASK": "rank-3"}
    assert "TFBUILD_JOB_TOKEN" not in out and out["KEEP"] == "me"


def test_rank_environment_refuses_outside_mpirun_and_mismatched_hosts() -> None:
    with pytest.raises(ConfigError, match="only under mpirun"):
        rank_environment({"TFBUILD_MPI_HOSTS": "a"})
    with pytest.raises(ConfigError, match="lists 1 node"):
        rank_environment({**OMPI_RANK3, "TFBUILD_PROCS_PER_NODE": "2",
                          "TFBUILD_MPI_HOSTS": "a"})


def test_rank_boot_writes_whole_lines_and_runs_the_script_as_python_would(tmp_path) -> None:
    import subprocess
    import sys

    from tfbuild_agent.launch.mpi.rank import RANK_BOOT, line_buffered

    script = tmp_path / "sub" / "train.py"
    script.parent.mkdir()
    script.write_text(
        "import sys, time\n"
        "print('half', end='', flush=False); time.sleep(0.5); print(' line')\n"
        "print(__name__, sys.argv, sys.path[0], sep='|')\n"
        "sys.exit(3)\n")
    command = line_buffered([sys.executable, "-u", str(script), "--lr", "1"], sys.executable)
    assert command[:3] == [sys.executable, "-u", str(RANK_BOOT)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, env={"PYTHONUNBUFFERED": "1"})
    first = os.read(proc.stdout.fileno(), 4096)  # what mpirun's IOF would read first
    rest = proc.stdout.read()
    assert proc.wait(10) == 3
    assert first.startswith(b"half line\n")  # one write, not "half" then " line\n"
    lines = (first + rest).decode().splitlines()
    assert lines[-1] == f"__main__|{[str(script), '--lr', '1']}|{script.parent}"


def test_line_buffered_leaves_other_commands_alone() -> None:
    from tfbuild_agent.launch.mpi.rank import line_buffered

    assert line_buffered(["/bin/bash", "run.sh"], "/py") == ["/bin/bash", "run.sh"]


@pytest.mark.parametrize("ending, code", [("raise RuntimeError('boom')", 1), ("sys.exit(4)", 4)])
def test_a_failing_rank_leaves_without_waiting_in_exit_handlers(tmp_path, ending, code) -> None:
    """MPI_Finalize at exit waits for the other ranks; a failed rank must not get there."""
    import subprocess
    import sys
    import time

    from tfbuild_agent.launch.mpi.rank import RANK_BOOT

    script = tmp_path / "train.py"
    script.write_text(
        "import atexit, sys, time\n"
        "atexit.register(time.sleep, 60)  # stands in for MPI_Finalize waiting for peers\n"
        f"{ending}\n")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-u", str(RANK_BOOT), str(script)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == code
    assert time.monotonic() - started < 10
    if code == 1:
        assert proc.stderr.startswith("Traceback (most recent call last):\n  File \"")
        assert "rank_boot" not in proc.stderr and "runpy" not in proc.stderr, proc.stderr
        assert proc.stderr.rstrip().endswith("RuntimeError: boom")


def test_a_rank_that_completes_still_runs_its_exit_handlers(tmp_path) -> None:
    import subprocess
    import sys

    from tfbuild_agent.launch.mpi.rank import RANK_BOOT

    script = tmp_path / "train.py"
    script.write_text("import atexit\natexit.register(print, 'finalized')\n")
    proc = subprocess.run([sys.executable, "-u", str(RANK_BOOT), str(script)],
                          capture_output=True, text=True, timeout=30)
    assert (proc.returncode, proc.stdout) == (0, "finalized\n")


@pytest.mark.parametrize(
    ("rank", "where"),
    [(0, " (on n0)"), (1, " (on n0)"), (2, " (on n1)"), (5, " (on n2)"), (6, "")],
)
def test_the_failed_ranks_node_follows_mpiruns_by_slot_mapping(rank: int, where: str) -> None:
    """2 ranks per node: ranks 0-1 on node 0, 2-3 on node 1, ...; a rank past the last
    node names no node rather than a wrong one."""
    text = ABORTED.replace("on rank 1 in", f"on rank {rank} in")
    hosts = ["n0", "n1", "n2"]
    assert describe_failure(text.splitlines(), 5, hosts, 2).startswith(
        f"rank {rank}{where} called MPI_Abort")


@pytest.mark.parametrize(("port", "ok"), [("1", True), ("65535", True), ("0", False),
                                          ("65536", False)])
def test_the_launch_port_must_be_a_real_port(port: str, ok: bool) -> None:
    env = {"TFBUILD_MPI_LAUNCH_PORT": port}
    if ok:
        assert mpi_settings(env, JOB, 300.0).launch_port == int(port)
    else:
        with pytest.raises(ConfigError, match="is not a port; set it to 1-65535"):
            mpi_settings(env, JOB, 300.0)


@pytest.mark.parametrize(("value", "ok"), [("0.5", True), ("0", False), ("-1", False),
                                           ("soon", False)])
def test_the_launch_timeout_must_be_above_zero(value: str, ok: bool) -> None:
    env = {"TFBUILD_MPI_LAUNCH_TIMEOUT": value}
    if ok:
        assert mpi_settings(env, JOB, 300.0).launch_timeout == float(value)
    else:
        with pytest.raises(ConfigError, match="is not a number of seconds above 0"):
            mpi_settings(env, JOB, 300.0)


def test_rsh_agent_value_names_the_first_part_with_a_space() -> None:
    with pytest.raises(ConfigError, match="'/opt/my py/python'"):
        rsh_agent_value(["/opt/my py/python", "/x y/agent"], 29401)


def test_a_signal_without_a_name_and_a_lost_daemon_are_described() -> None:
    line = "mpirun noticed that process rank 2 with PID 7 on node n1 exited on signal 9."
    assert describe_failure([line], 137, ["n0", "n1"], 2) == (
        "rank 2 (on n1) was killed by signal 9; mpirun aborted the job (exit code 137)")
    lost = ["ORTE has lost communication with a remote daemon.", "  HNP daemon : [[1,0],0]"]
    assert describe_failure(lost, 1, ["n0"], 1) == (
        "mpirun lost a node's daemon (ORTE has lost communication with a remote daemon); "
        "the job was aborted (exit code 1); see that node's log")


def _executable(path, text="#!/bin/sh\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_agent_command_prefers_the_running_launcher_then_path_then_this_python(
    tmp_path, monkeypatch
) -> None:
    """How mpirun starts the agent on other nodes: the same launcher script this agent
    runs from, else tfbuild-agent on PATH, else `python -m tfbuild_agent`."""
    import sys

    from tfbuild_agent.launch.mpi.command import agent_command

    launcher = _executable(tmp_path / "image" / "tfbuild-agent")
    on_path = _executable(tmp_path / "bin" / "tfbuild-agent")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setattr(sys, "argv", [str(launcher), "run"])
    assert agent_command() == [str(launcher)]
    launcher.chmod(0o644)  # not executable: not a launcher to hand to other nodes
    assert agent_command() == [str(on_path)]
    monkeypatch.setattr(sys, "argv", [str(_executable(tmp_path / "other" / "python3")), "x"])
    assert agent_command() == [str(on_path)]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert agent_command() == [sys.executable, "-m", "tfbuild_agent"]
    monkeypatch.setattr(sys, "argv", [])
    assert agent_command() == [sys.executable, "-m", "tfbuild_agent"]
