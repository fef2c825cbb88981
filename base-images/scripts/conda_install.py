"""Install conda packages into a prefix with py-rattler (no conda binary needed).

Runs inside the image's `conda` build stage as
    python install.py PREFIX REQUEST_JSON
where REQUEST_JSON holds {"packages": [...], "channels": [...], "platforms": [...]}
(written by tfbuild's builder/conda.py; local channels are already rewritten to
file:// URLs inside the build context). It solves for the request's platforms,
links the packages into PREFIX and prints what it installed.

Python: the image's Python is the one in /opt/tfbuild/venv, which runs TensorFlow
and the training script. A conda package that needs Python would pull a second,
conda-built interpreter into the prefix, so that is refused unless `python` itself
is among the requested packages; the error names the packages that need it.

Kept as base-images/scripts/conda_install.py; runs on the image's Python with only
py-rattler installed, so it imports nothing from tfbuild.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import sys
from pathlib import Path

import rattler
from rattler import (
    BuildString,
    Channel,
    Client,
    Config,
    Gateway,
    GenericVirtualPackage,
    MatchSpec,
    PackageName,
    Version,
)

CACHE = Path("/tmp/tfbuild-conda/cache")


class RequestError(Exception):
    """What went wrong with the request, phrased for the user."""


def virtual_packages() -> list[GenericVirtualPackage]:
    """What the solver may assume about the system (like conda's __glibc etc.)."""

    def vp(name: str, version: str, build: str = "0") -> GenericVirtualPackage:
        return GenericVirtualPackage(PackageName(name), Version(version), BuildString(build))

    found = [vp("__unix", "0")]
    kernel = re.match(r"\d+(?:\.\d+)*", platform.release())
    found.append(vp("__linux", kernel.group(0) if kernel else "0"))
    libc, libc_version = platform.libc_ver()
    if libc == "glibc" and libc_version:
        found.append(vp("__glibc", libc_version))
    found.append(vp("__archspec", "1", platform.machine()))
    return found


def client() -> Client:
    # The system store holds the CA certificates tfbuild added to the image
    # (TLS-intercepting proxies); rattler's default is its own bundled roots.
    return Client.from_config(Config.from_toml('tls-root-certs = "system"'))


def spec_name(spec: str) -> str:
    return MatchSpec(spec).name.normalized


def needs_python(records: list, requested: set[str]) -> list[str]:
    """The requested packages whose dependencies reach `python` (empty if none do)."""
    by_name = {r.name.normalized: r for r in records}
    if "python" not in by_name:
        return []
    culprits = []
    for root in sorted(requested):
        seen, todo = set(), [root]
        while todo:
            name = todo.pop()
            if name in seen or name not in by_name:
                continue
            seen.add(name)
            todo.extend(spec_name(d) for d in by_name[name].depends)
        if "python" in seen:
            culprits.append(root)
    return culprits


async def install(prefix: Path, request: dict) -> list:
    packages, channels = request["packages"], request["channels"]
    http = client()
    gateway = Gateway(cache_dir=CACHE / "repodata", client=http)
    try:
        records = await rattler.solve(
            sources=[Channel(c) for c in channels],
            specs=packages,
            gateway=gateway,
            platforms=request["platforms"],
            virtual_packages=virtual_packages(),
        )
    except Exception as e:  # rattler raises one exception type per cause
        raise RequestError(
            f"cannot solve conda packages {', '.join(packages)} from channels "
            f"{', '.join(channels)}:\n{e}\nCheck the package names and versions, and that "
            "the channels hold them for linux-64 or noarch."
        ) from None
    requested = {spec_name(p) for p in packages}
    culprits = [] if "python" in requested else needs_python(records, requested)
    if culprits:
        raise RequestError(
            f"conda package(s) {', '.join(culprits)} need Python, which would install a "
            "second, conda-built Python next to the image's (the one in /opt/tfbuild/venv "
            "that runs TensorFlow and your script). Install Python libraries with "
            "pip_packages instead, or add `python` to conda_packages to accept conda's own "
            "interpreter (at /opt/tfbuild/layers/conda/bin/python, not used for training)."
        )
    try:
        await rattler.install(
            records,
            target_prefix=prefix,
            cache_dir=CACHE / "pkgs",
            client=http,
            show_progress=False,
            execute_link_scripts=False,
        )
    except Exception as e:
        raise RequestError(f"cannot install the solved packages into {prefix}:\n{e}") from None
    return records


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: install.py PREFIX REQUEST_JSON", file=sys.stderr)
        return 2
    prefix, request = Path(argv[0]), json.loads(Path(argv[1]).read_text())
    try:
        records = asyncio.run(install(prefix, request))
    except RequestError as e:
        print(f"tfbuild conda: {e}", file=sys.stderr)
        return 1
    for r in sorted(records, key=lambda r: r.name.normalized):
        print(f"conda: {r.name.normalized} {r.version} {r.build} ({r.channel or r.url})")
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # py-rattler 0.28's runtime sometimes crashes while the interpreter shuts down
    # (SIGSEGV/SIGABRT after everything is installed, seen 3 times in 18 runs here):
    # leave without finalization once the work is done.
    os._exit(code)
