"""Shared plumbing of the benchmarks: result rows, statistics, the engine, helper images.

Every speed figure is compared with a peer measured in the same run on the same machine;
each measurement carries the 1-minute load average taken when it was made.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
VENV_BIN = REPO / ".venv" / "bin"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
BASE_IMAGE = "tfbuild/debian:bookworm"
CA_BASE = "tfbuild-bench/debian-ca:bookworm"
"""The offline base plus the host's CA certificates, laid out exactly as tfbuild does."""
AGENT_IMAGE = "tfbuild-bench/agent-tiny:latest"
TORCH_IMAGE = "tfbuild-bench/torchrun-tiny:latest"
KEPT_IMAGES = (CA_BASE, AGENT_IMAGE, TORCH_IMAGE)
"""Small helper images left in place so that the next run need not build them again."""
STEP_ID_RE = re.compile(r"^\s*---> ([0-9a-f]{12})\s*$")


def load() -> float:
    return round(os.getloadavg()[0], 2)


@dataclass
class Row:
    """One line of the results table: tfbuild's figure, the peer's, the target."""

    section: str
    metric: str
    value: float | None
    unit: str
    peer: str = ""
    peer_value: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""
    load: float = field(default_factory=load)

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.peer_value:
            return None
        return self.value / self.peer_value

    def as_dict(self) -> dict[str, Any]:
        ratio = self.ratio
        return asdict(self) | {"ratio": None if ratio is None else round(ratio, 3)}


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "B":
        for scale, name in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
            if abs(value) >= scale:
                return f"{value / scale:.2f} {name}"
        return f"{value:.0f} B"
    if unit == "s":
        if abs(value) < 1:
            return f"{value * 1000:.0f} ms"
        return f"{value:.2f} s" if abs(value) < 100 else f"{value:.0f} s"
    text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{text} {unit}".strip()


def table(rows: list[Row]) -> str:
    head = ("section", "measurement", "tfbuild", "peer", "peer value", "ratio", "target",
            "met", "load")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes: list[str] = []
    for r in rows:
        met = {True: "yes", False: "**no**", None: "-"}[r.met]
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        cells = (r.section, r.metric, fmt(r.value, r.unit), r.peer or "-",
                 fmt(r.peer_value, r.unit), ratio, r.target or "-", met, f"{r.load:.1f}")
        if r.note:
            notes.append(r.note)
            cells = (*cells[:1], f"{cells[1]} [{len(notes)}]", *cells[2:])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + [f"[{i}] {n}" for i, n in enumerate(notes, 1)])


# -- the engine ----------------------------------------------------------------------


def engine() -> docker.DockerClient:
    return docker.from_env(timeout=600)


def parse_docker_time(text: str) -> float:
    """Engine timestamps (RFC 3339 with nanoseconds, UTC) -> Unix seconds."""
    whole, _, frac = text.rstrip("Z").partition(".")
    stamp = datetime.fromisoformat(whole + "+00:00").timestamp()
    return stamp + float(f"0.{frac or '0'}")


def run_job(client: docker.DockerClient, launch: Any, timeout: float = 600.0
            ) -> tuple[list[tuple[str, str]], int]:
    """Run a JobLaunch through `tfbuild run`'s launcher (LocalJob) without streaming its
    logs; returns (StartedAt, timestamped log) of every container and the job's exit code."""
    from tfbuild.run.local import LocalJob

    records: list[tuple[str, str]] = []

    class TimedJob(LocalJob):
        def _stream(self, container: Any, i: int) -> None:
            pass  # read with timestamps once the container has ended

        def _wait(self, container: Any) -> int:
            code = super()._wait(container)
            container.reload()
            records.append((container.attrs["State"]["StartedAt"],
                            container.logs(timestamps=True).decode(errors="replace")))
            return code

    job = TimedJob(launch, client)
    guard = threading.Timer(timeout, job._stop_all)
    guard.start()
    try:
        with contextlib.redirect_stdout(sys.stderr):
            code = job.run()
    finally:
        guard.cancel()
    return records, code


def after_last_start(records: list[tuple[str, str]], marker: str) -> list[float]:
    """Seconds from the last container start to each `marker` in the logs, at the time
    of the line it is on (mpirun's tagged output can put two ranks' lines on one)."""
    last_start = max(parse_docker_time(started) for started, _ in records)
    return [parse_docker_time(line.split(" ", 1)[0]) - last_start for _, logs in records
            for line in logs.splitlines() for _ in range(line.count(marker))]


def docker_cli() -> str:
    """A docker client that can build with BuildKit on this engine.

    Clients from 23.0 on need the buildx plugin for DOCKER_BUILDKIT=1; older ones (for
    example Debian's docker.io in /usr/bin) talk to the engine's built-in BuildKit.
    BENCH_DOCKER overrides the choice.
    """
    candidates = [os.environ.get("BENCH_DOCKER", ""), "docker", "/usr/bin/docker"]
    for cli in filter(None, candidates):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            if subprocess.run([cli, "buildx", "version"], capture_output=True,
                              timeout=30).returncode == 0:
                return cli
            out = subprocess.run([cli, "version", "--format", "{{.Client.Version}}"],
                                 capture_output=True, text=True, timeout=30).stdout
            if out and int(out.split(".")[0]) < 23:
                return cli
    raise RuntimeError("no docker client with BuildKit here (install buildx or set BENCH_DOCKER)")


class ImageTracker:
    """Images this run created, so that only those are removed at the end."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.tags: list[str] = []
        self.ids: list[str] = []

    def note_build_log(self, log: str) -> None:
        """Record the step images of a classic build (`---> id` after a step that was not
        taken from the cache); cached ones may belong to someone else."""
        cached = False
        for line in log.splitlines():
            if line.lstrip().startswith("Step "):
                cached = False
            elif "Using cache" in line:
                cached = True
            elif (m := STEP_ID_RE.match(line)) and not cached:
                self.ids.append(m.group(1))

    def remove(self, keep: Iterable[str] = ()) -> None:
        """Remove the tags (except `keep`), then the step images nobody tagged since."""
        kept = set(keep)
        for tag in reversed(self.tags):
            if tag not in kept:
                with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
                    self.client.images.remove(tag, noprune=False)
        for image_id in reversed(self.ids):
            with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
                if not self.client.images.get(image_id).tags:  # still used: a kept image
                    self.client.images.remove(image_id, noprune=False)
        self.tags = [t for t in self.tags if t in kept]
        self.ids = []


def context_tar(files: Mapping[str, bytes | Path]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, item in sorted(files.items()):
            data = item if isinstance(item, bytes) else item.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sdk_build(client: docker.DockerClient, files: Mapping[str, bytes | Path], tag: str,
              tracker: ImageTracker | None = None) -> float:
    """Build a helper image with the classic builder; returns the seconds it took."""
    started = time.monotonic()
    log: list[str] = []
    stream = client.api.build(fileobj=io.BytesIO(context_tar(files)), custom_context=True,
                              tag=tag, rm=True, forcerm=True, decode=True, pull=False)
    for chunk in stream:
        if "error" in chunk:
            tail = "\n".join(log[-30:])
            raise RuntimeError(f"building {tag} failed: {chunk['error'].strip()}\n{tail}")
        log.extend(chunk.get("stream", "").splitlines())
    if tracker is not None:
        tracker.tags.append(tag)
        tracker.note_build_log("\n".join(log))
    return time.monotonic() - started


def ca_files() -> dict[str, bytes]:
    """The host's CA bundle split the way tfbuild splits it (one certificate per file)."""
    from tfbuild.credentials import ca_bundle_files

    return {f"ca/{k}": v for k, v in ca_bundle_files([HOST_CA]).items()} if HOST_CA.exists() \
        else {}


CA_DOCKERFILE = f"""\
FROM {BASE_IMAGE}
COPY ca/ /usr/local/share/ca-certificates/tfbuild/
RUN update-ca-certificates >/dev/null
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \\
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \\
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
"""


def ensure_ca_base(client: docker.DockerClient) -> str:
    """The base the hand-written and helper images start from (kept between runs)."""
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.get(CA_BASE)
        return CA_BASE
    files: dict[str, bytes | Path] = {"Dockerfile": CA_DOCKERFILE.encode(), **ca_files()}
    if len(files) == 1:
        files["ca/.keep"] = b""
    sdk_build(client, files, CA_BASE)
    return CA_BASE


def versions(client: docker.DockerClient) -> dict[str, str]:
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for dist in ("tfbuild", "docker", "fsspec", "s3fs", "moto", "watchdog", "torch"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[dist] = md.version(dist)
    out["docker engine"] = client.version().get("Version", "?")
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(REPO)]
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "builder", "entrypoint",
                                "base-images"], capture_output=True, text=True).stdout.strip()
        out["git"] = head + (" + uncommitted changes" if dirty else "")
    return out
