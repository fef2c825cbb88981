"""Where a job's outputs and logs go, resolved on the host before anything starts.

Plain paths and relative file:// URIs become absolute file:// URIs of a host folder
that is bind-mounted into every container at the same path, so what the agents
upload is on the host after the containers are gone. Without --upload-to, runs go
to the default local run history (`default_runs_dir`); --no-upload opts out.
Object stores (s3://, az://, gs://) are passed through after a syntax check. Pure
except `prepare_host_dir`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tfbuild_agent.errors import AgentError
from tfbuild_agent.sync.store import store_spec

from ..errors import LaunchError


@dataclass(frozen=True)
class Destination:
    uri: str | None
    """What the agents upload to (TFBUILD_UPLOAD_TO); None with --no-upload."""
    host_dir: Path | None = None
    """The host folder of a file:// destination (bind-mounted at the same path)."""
    default: bool = False
    """True when it is the default local run history (no --upload-to given)."""

    def run_dir(self, run_id: str) -> Path | None:
        return self.host_dir / run_id if self.host_dir else None


def default_runs_dir(env: Mapping[str, str], home: Path) -> Path:
    """$XDG_DATA_HOME/tfbuild/runs, else ~/.local/share/tfbuild/runs."""
    data_home = env.get("XDG_DATA_HOME") or str(home / ".local" / "share")
    return Path(data_home) / "tfbuild" / "runs"


def resolve_destination(
    upload_to: str | None,
    no_upload: bool,
    *,
    cwd: Path,
    env: Mapping[str, str],
    home: Path,
) -> Destination:
    if no_upload and upload_to:
        raise LaunchError(
            f"--no-upload and --upload-to {upload_to} contradict each other; give one of them"
        )
    if no_upload:
        return Destination(None)
    if not upload_to:
        folder = default_runs_dir(env, home)
        return Destination(f"file://{folder}", folder, default=True)
    text = upload_to.strip()
    if "://" not in text:
        folder = _absolute(text, cwd)
        return Destination(f"file://{folder}", folder)
    scheme, rest = text.split("://", 1)
    if scheme.lower() == "file":
        if rest.startswith("localhost/"):
            rest = rest[len("localhost") :]
        folder = _absolute(rest, cwd)
        return Destination(f"file://{folder}", folder)
    try:
        store_spec(text, env)
    except AgentError as e:
        raise LaunchError(f"--upload-to {upload_to}: {e}") from None
    return Destination(text)


def _absolute(path: str, cwd: Path) -> Path:
    if not path:
        raise LaunchError("--upload-to names no folder; give a path such as ./runs or /srv/runs")
    return Path(os.path.normpath(cwd / Path(path).expanduser()))


def prepare_host_dir(dest: Destination) -> None:
    """Create the host folder (a file where it should be is an error)."""
    if dest.host_dir is None:
        return
    try:
        dest.host_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise LaunchError(
            f"--upload-to {dest.host_dir} is a file, not a folder; name a folder for the runs"
        ) from None
    except OSError as e:
        raise LaunchError(
            f"cannot create the runs folder {dest.host_dir} ({e.strerror}); choose a folder "
            "you can write to with --upload-to"
        ) from None
