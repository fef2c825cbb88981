"""Build, tag and push through the Docker Engine API (the `docker` SDK), with
progress on stderr. The classic builder is what the SDK drives; the rendered
Dockerfiles need nothing else."""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.auth
import docker.errors
import docker.utils
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn
from rich.status import Status
from rich.text import Text

from .. import console
from ..errors import BuildError, RegistryError
from .buildlog import BuildLog, failure_text, push_line

PROGRESS_MODES = ("auto", "plain")


@dataclass
class BuildResult:
    image_id: str
    steps: int
    cached_steps: int
    seconds: float
    log_path: Path | None = None


def build_log_dir(env: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """$XDG_STATE_HOME/tfbuild/builds, else ~/.local/state/tfbuild/builds."""
    env = os.environ if env is None else env
    home = home or Path.home()
    return Path(env.get("XDG_STATE_HOME") or home / ".local" / "state") / "tfbuild" / "builds"


KEEP_LOGS = 50


def new_log_path(tag: str, folder: Path | None = None, keep: int = KEEP_LOGS) -> Path:
    """A new raw-log file for `tag`; the oldest beyond the last `keep` are removed."""
    folder = folder or build_log_dir()
    folder.mkdir(parents=True, exist_ok=True)
    old = sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime)
    for path in old[: max(0, len(old) - keep + 1)]:
        path.unlink(missing_ok=True)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", tag).strip("-") or "image"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return folder / f"{slug}-{stamp}.log"


class _LiveLine:
    """The running step for rich's Status: re-rendered on every refresh, so the
    elapsed time moves while a step prints nothing (compileall, layer commits)."""

    def __init__(self, log: BuildLog) -> None:
        self.log = log

    def __rich__(self) -> Text:
        return Text(self.log.live_line(time.monotonic())[: console.err.width - 4], style="dim")


def build_image(
    client: docker.DockerClient,
    context_tar: bytes,
    tag: str,
    *,
    quiet: bool = False,
    nocache: bool = False,
    buildargs: dict[str, str] | None = None,
    progress: str = "auto",
    log_path: Path | None = None,
    suite: str = "bookworm",
) -> BuildResult:
    """Build the context, printing one line per step (a live line for the running one
    on a terminal unless `progress` is "plain"); the raw stream goes to `log_path`.
    Raise BuildError naming the failing step, its last lines, a hint and the log."""
    started = time.monotonic()
    log = BuildLog()
    log_path = log_path or new_log_path(tag)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    live = not quiet and progress == "auto" and console.is_tty()
    status = Status(_LiveLine(log), console=console.err) if live else None
    image_id = ""

    def show(lines: list[str]) -> None:
        if not quiet:
            for line in lines:
                console.err.print(line, markup=False, highlight=False)

    with open(log_path, "w", encoding="utf-8") as raw:
        try:
            if status:
                status.start()
            stream = client.api.build(
                fileobj=io.BytesIO(context_tar),
                custom_context=True,
                tag=tag,
                rm=True,
                forcerm=True,
                decode=True,
                pull=False,
                nocache=nocache,
                buildargs=buildargs or {},
            )
            for chunk in stream:
                if "error" in chunk:
                    detail = chunk.get("errorDetail", {}).get("message", chunk["error"])
                    raw.write(detail + "\n")
                    failure = log.fail(detail, time.monotonic(), suite)
                    raise BuildError(
                        failure_text(failure, str(log_path)),
                        step=failure.step.instruction if failure.step else "",
                        log_tail="\n".join(failure.tail),
                    )
                if "aux" in chunk and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
                text = chunk.get("stream", "")
                if text:
                    raw.write(text)
                    show(log.feed(text, time.monotonic()))
            show(log.finish(time.monotonic()))
        except docker.errors.APIError as e:
            raise BuildError(
                f"the engine refused the build: {e.explanation or e}\nfull log: {log_path}"
            ) from None
        finally:
            if status:
                status.stop()
    if not image_id:
        image_id = client.images.get(tag).id
    return BuildResult(
        image_id, log.total_steps(), log.cached_steps(), time.monotonic() - started, log_path
    )


FINAL_PUSH_STATES = ("Pushed", "Layer already exists", "Mounted from")


def push_image(
    client: docker.DockerClient, tag: str, *, quiet: bool = False, progress: str = "auto"
) -> str:
    """Push `tag` with credentials from ~/.docker/config.json (and its helpers), showing
    each layer's bytes as `docker push` does (a bar per layer on a terminal, one line per
    finished layer otherwise). Returns the pushed digest."""
    repository, version = docker.utils.parse_repository_tag(tag)
    version = version or "latest"
    registry = docker.auth.resolve_repository_name(repository)[0]
    sizes: dict[str, tuple[int, int]] = {}
    done: set[str] = set()
    bars = (
        Progress(TextColumn("{task.description:<12}"), BarColumn(), DownloadColumn(),
                 TextColumn("{task.fields[state]}"), console=console.err, transient=False)
        if not quiet and progress == "auto" and console.is_tty() else None
    )
    tasks: dict[str, Any] = {}
    digest = ""
    try:
        # Re-read ~/.docker/config.json ($DOCKER_CONFIG): a `docker login` made while
        # a long build ran must count.
        client.api.reload_config()
        if bars:
            bars.start()
        for chunk in client.api.push(repository, version, stream=True, decode=True):
            if "error" in chunk:
                raise _registry_error(chunk["error"], registry)
            if "aux" in chunk and "Digest" in chunk["aux"]:
                digest = chunk["aux"]["Digest"]
            layer, state = chunk.get("id"), chunk.get("status", "")
            if not layer or not state or quiet or layer in done or " " in layer:
                continue
            detail = chunk.get("progressDetail") or {}
            current, total = detail.get("current", 0), detail.get("total", 0)
            if total:
                sizes[layer] = (current, total)
            current, total = sizes.get(layer, (current, total))
            final = state.startswith(FINAL_PUSH_STATES)
            if final:
                done.add(layer)
                current = total
            if bars:
                if layer not in tasks:
                    tasks[layer] = bars.add_task(layer, total=total or None, state=state)
                bars.update(tasks[layer], completed=current, total=total or None, state=state)
            elif final:
                console.note(push_line(layer, state, current, total))
    except docker.errors.APIError as e:
        raise _registry_error(str(e.explanation or e), registry) from None
    finally:
        if bars:
            bars.stop()
    return digest


def _registry_error(message: str, registry: str) -> RegistryError:
    low = message.lower()
    if any(s in low for s in ("unauthorized", "authentication required", "no basic auth")):
        return RegistryError(
            f"{registry} refused the credentials: {message.strip()}. "
            f"Run `docker login {registry}` (tfbuild reads ~/.docker/config.json and its "
            "credential helpers)."
        )
    if any(s in low for s in ("connection refused", "no such host", "i/o timeout", "dial tcp")):
        return RegistryError(
            f"registry {registry} is unreachable: {message.strip()}. "
            "Check the address and that the registry is running."
        )
    return RegistryError(f"push to {registry} failed: {message.strip()}")
