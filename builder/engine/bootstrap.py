"""`tfbuild base`: make a Debian base image with no container registry at all.

debootstrap fetches Debian packages (from a mirror you may run yourself on an
air-gapped network), and the root filesystem is imported as an image. Later
builds name it in FROM; nothing is ever pulled.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import docker.errors

from .. import console
from ..errors import TfbuildError
from .setup import engine_client, ensure_host_tool

DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Python and CA certificates come with the base, so that most builds need no
# apt step for them.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")


def base_image_tag(suite: str) -> str:
    return f"tfbuild/debian:{suite}"


def base_image_exists(tag: str) -> bool:
    try:
        engine_client().images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def make_base_image(
    suite: str = "bookworm",
    tag: str | None = None,
    mirror: str = DEFAULT_MIRROR,
    force: bool = False,
) -> str:
    """debootstrap `suite` and import it as `tag`; reuse an existing image unless forced."""
    tag = tag or base_image_tag(suite)
    if not force and base_image_exists(tag):
        console.note(f"base image {tag} already exists (use --force to remake it)")
        return tag
    ensure_host_tool("debootstrap", "debootstrap")
    with tempfile.TemporaryDirectory(prefix="tfbuild-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        console.step(f"debootstrap {suite} from {mirror} (about a minute)")
        cmd = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            suite,
            str(rootfs),
            mirror,
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise TfbuildError(
                f"debootstrap {suite} failed (exit {result.returncode}). Check that {mirror} "
                f"is reachable (or pass --mirror) and that you are root. Last lines:\n"
                + "\n".join(result.stdout.splitlines()[-15:] + result.stderr.splitlines()[-5:])
            )
        _trim_rootfs(rootfs)
        console.step(f"importing the root filesystem as {tag}")
        _import_rootfs(rootfs, tag, suite, mirror)
    return tag


def _trim_rootfs(rootfs: Path) -> None:
    """Drop apt caches and lists: an image needs neither (builds run apt-get update)."""
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for p in (rootfs / sub).glob("*"):
            if p.is_file():
                p.unlink()


def _import_rootfs(rootfs: Path, tag: str, suite: str, mirror: str) -> None:
    repository, _, version = tag.rpartition(":")
    if not repository or "/" in version:
        repository, version = tag, "latest"
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "--sort=name", "-C", str(rootfs), "-c", "."],
        stdout=subprocess.PIPE,
    )
    client = engine_client()
    try:
        client.api.import_image_from_stream(
            tar.stdout,
            repository=repository,
            tag=version,
            changes=[
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "ENV LANG=C.UTF-8",
                'CMD ["/bin/bash"]',
                f"LABEL io.tfbuild.base.suite={suite}",
                f"LABEL io.tfbuild.base.mirror={mirror}",
            ],
        )
    finally:
        tar.stdout.close()
        if tar.wait() != 0:
            raise TfbuildError(f"tar of {rootfs} failed with exit {tar.returncode}")
