"""The conda layer's inputs in the build context: the installer script (run with
py-rattler in the image's `conda` stage, see base-images/partials/conda.j2) and
request.json naming packages, channels and platforms.

Local channels (absolute paths after spec validation) cannot be reached from a
build container, so their solve-relevant subdirectories are copied into the
context and the request names them by their path inside the stage.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from ..spec import BuildSpec
from .context import BuildContext

CONTEXT_DIR = "tfbuild/conda"
STAGE_DIR = "/tmp/tfbuild-conda"
# linux-64 images (the base is debootstrapped for amd64); noarch holds the rest.
PLATFORMS = ("linux-64", "noarch")
DEFAULT_CHANNELS = ("conda-forge",)
INSTALLER = "conda_install.py"


def installer_source() -> bytes:
    return (resources.files("tfbuild.base_images") / "scripts" / INSTALLER).read_bytes()


def is_local_channel(channel: str) -> bool:
    return channel.startswith("/")


def add_conda_request(ctx: BuildContext, spec: BuildSpec) -> None:
    """Put the installer, request.json and copies of local channels into `ctx`."""
    channels = []
    for n, channel in enumerate(spec.conda_channels or DEFAULT_CHANNELS):
        if is_local_channel(channel):
            _add_local_channel(ctx, Path(channel), f"{CONTEXT_DIR}/channels/{n}")
            channel = f"file://{STAGE_DIR}/channels/{n}"
        channels.append(channel)
    request = {
        "packages": list(spec.conda_packages),
        "channels": channels,
        "platforms": list(PLATFORMS),
    }
    ctx.add_bytes(f"{CONTEXT_DIR}/install.py", installer_source())
    text = json.dumps(request, indent=2, sort_keys=True) + "\n"
    ctx.add_bytes(f"{CONTEXT_DIR}/request.json", text.encode())


def _add_local_channel(ctx: BuildContext, root: Path, prefix: str) -> None:
    # Only the subdirectories the solver reads: a channel may hold other platforms.
    for subdir in PLATFORMS:
        if (root / subdir).is_dir():
            ctx.add_tree(root / subdir, f"{prefix}/{subdir}", [".*", "**/.*"])
