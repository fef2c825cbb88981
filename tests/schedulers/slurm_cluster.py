"""A real one-host Slurm cluster for tests: its own munged, slurmctld and slurmd, all in
one temporary folder and on 127.0.0.1, so nothing of the machine's own Slurm or munge
setup is read or changed.

The node is called `localhost` (slurmd -N localhost, NodeAddr=127.0.0.1): the job's
node list is then `localhost`, and every address the agent derives from it is loopback.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "scancel", "scontrol", "sinfo", "squeue")
NODE = "localhost"
# The daemons live in sbin, which a non-login shell's PATH may lack.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
TERMINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                   "PREEMPTED", "BOOT_FAIL", "DEADLINE"}


def missing_tools() -> list[str]:
    """The Slurm/munge programs this machine lacks (empty when a cluster can start)."""
    return [tool for tool in (*DAEMONS, *CLIENTS, "munge")
            if shutil.which(tool, path=SEARCH_PATH) is None]


def slurm_conf(root: Path, cpus: int, ctld_port: int, slurmd_port: int) -> str:
    """A one-node slurm.conf whose every path is under `root` (pure: unit-testable).

    What each line is for:
    - SlurmUser/SlurmdUser root: the test runs as root; no `slurm` account needed.
    - AuthInfo=socket=...: our own munged, not the machine's /run/munge.
    - proctrack/linuxproc + task/none: no cgroup setup needed (cgroup v1 or v2 alike).
    - OverSubscribe=YES: jobs may share the node's CPUs (tests submit with --overcommit).
    - KillWait=30: what `scancel` gives between SIGTERM and SIGKILL (Slurm's default;
      the agent's own grace and upload flush must fit into it).
    - MinJobAge=600: a finished job stays visible to `scontrol show job` for its exit code
      (there is no accounting database here, so no sacct).
    """
    host = socket.gethostname().split(".")[0]
    return "\n".join([
        "ClusterName=tfbsched",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={root}/munge/munge.socket",
        f"StateSaveLocation={root}/state",
        f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid",
        f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/slurmctld.log",
        f"SlurmdLogFile={root}/slurmd.log",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "SchedulerType=sched/backfill",
        "ReturnToService=2",
        "MpiDefault=none",
        "KillWait=30",
        "MinJobAge=600",
        f"NodeName={NODE} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN",
        f"PartitionName=test Nodes={NODE} Default=YES MaxTime=INFINITE State=UP "
        "OverSubscribe=YES",
        "",
    ])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_scontrol(line: str) -> dict[str, str]:
    """`scontrol show job -o` output (Key=Value pairs on one line) -> dict."""
    return dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", line))


@dataclass
class SlurmCluster:
    root: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """The environment for Slurm clients (and, through sbatch, for the jobs)."""
        return {**os.environ, "PATH": SEARCH_PATH, "SLURM_CONF": str(self.conf)}

    def start(self, timeout: float = 60.0) -> None:
        for sub in ("munge", "state", "spool", "jobs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # munged checks its folders: the key private, the socket folder traversable.
        (self.root / "munge").chmod(0o711)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        cpus = os.cpu_count() or 1
        self.conf.write_text(slurm_conf(self.root, cpus, free_port(), free_port()))
        m = self.root / "munge"
        self._spawn("munged", ["munged", "--force", "--foreground",
                               f"--key-file={key}", f"--socket={m}/munge.socket",
                               f"--pid-file={m}/munged.pid", f"--log-file={m}/munged.log",
                               f"--seed-file={m}/munged.seed"])
        self._wait_for(lambda: (m / "munge.socket").exists(), "munged's socket", 15)
        self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])
        self._spawn("slurmd", ["slurmd", "-D", "-N", NODE, "-f", str(self.conf)])
        self._wait_for(self._node_idle, f"node {NODE} to be idle in sinfo", timeout)

    def _spawn(self, name: str, argv: list[str]) -> None:
        out = open(self.root / f"{name}.out", "wb")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                            env=self.env, start_new_session=True)
        out.close()

    def _node_idle(self) -> bool:
        r = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=self.env,
                           capture_output=True, text=True, timeout=15)
        return r.returncode == 0 and r.stdout.strip() in ("idle", "mixed")

    def _wait_for(self, ready, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode} while waiting "
                                       f"for {what}:\n{self.daemon_logs()}")
            if ready():
                return
            time.sleep(0.3)
        raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}:\n"
                           f"{self.daemon_logs()}")

    def _jobs_left(self) -> bool:
        r = subprocess.run(["squeue", "-h", "-o", "%i"], env=self.env, capture_output=True,
                           text=True, timeout=15)
        return r.returncode == 0 and bool(r.stdout.strip())

    def daemon_logs(self, tail: int = 15) -> str:
        out = []
        for name in ("munged.out", "slurmctld.log", "slurmd.log"):
            path = self.root / name
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()[-tail:]
                out.append(f"--- {name}\n" + "\n".join(lines))
        return "\n".join(out)

    def stop(self) -> None:
        # Job steps (slurmstepd and their tasks) outlive slurmd by design: cancel whatever
        # a failed test left running and wait for it (Slurm SIGKILLs after KillWait).
        if all(p.poll() is None for p in self.procs.values()) and len(self.procs) == 3:
            subprocess.run(["scancel", "--user", "root"], env=self.env, capture_output=True,
                           timeout=30)
            deadline = time.monotonic() + 45
            while time.monotonic() < deadline and self._jobs_left():
                time.sleep(0.5)
        # munged last: the Slurm daemons need it to the end.
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    # -- jobs ------------------------------------------------------------------------------

    def sbatch(self, script: Path, workdir: Path, options: Sequence[str] = (),
               args: Sequence[str] = (), env: Mapping[str, str] | None = None) -> str:
        """`sbatch OPTIONS SCRIPT ARGS` from `workdir` with `env` added to the submitting
        environment (sbatch passes it on to the job); returns the job id. The job's
        output goes to workdir/slurm-<id>.out."""
        r = subprocess.run(
            ["sbatch", "--parsable", f"--chdir={workdir}", f"--output={workdir}/slurm-%j.out",
             *options, str(script), *args],
            env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=30,
        )
        if r.returncode != 0:
            raise RuntimeError(f"sbatch failed ({r.returncode}): {r.stderr}\n{self.daemon_logs()}")
        return r.stdout.strip().split(";")[0]

    def job(self, job_id: str) -> dict[str, str]:
        r = subprocess.run(["scontrol", "show", "job", "-o", job_id], env=self.env,
                           capture_output=True, text=True, timeout=15)
        if r.returncode != 0:
            raise RuntimeError(f"scontrol show job {job_id} failed: {r.stderr}")
        return parse_scontrol(r.stdout)

    def wait(self, job_id: str, timeout: float) -> dict[str, str]:
        """Poll until the job reaches a terminal state; its scontrol record."""
        deadline = time.monotonic() + timeout
        info = self.job(job_id)
        while info.get("JobState") not in TERMINAL_STATES:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"job {job_id} still {info.get('JobState')} after {timeout:g}s "
                    f"(reason {info.get('Reason')})\n{self.daemon_logs()}")
            time.sleep(0.5)
            info = self.job(job_id)
        return info

    def scancel(self, job_id: str) -> None:
        subprocess.run(["scancel", job_id], env=self.env, check=True, timeout=15)

    def output(self, workdir: Path, job_id: str) -> str:
        path = workdir / f"slurm-{job_id}.out"
        return path.read_text(errors="replace") if path.exists() else ""
