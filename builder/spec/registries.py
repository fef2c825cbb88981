"""Where things come from and go to: image references (`tag`,
`custom_docker_base_image`), package indexes (`pip_index_url`,
`pip_extra_index_urls`) and the CA certificates that make them trusted."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from ..credentials import redact_url
from .fields import Fields

# Docker's reference grammar (distribution/reference), without IPv6 hosts.
_REF_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REF_DOMAIN = (
    r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?"
)
_REF_NAME = rf"(?:{_REF_DOMAIN}/)?{_REF_COMPONENT}(?:/{_REF_COMPONENT})*"
_REF_TAG = r"[\w][\w.-]{0,127}"
_REF_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_TAG = re.compile(rf"^{_REF_NAME}(?::{_REF_TAG})?$")
"""An image name to build or push: [registry[:port]/]name[:tag]."""
IMAGE_REF = re.compile(rf"^{_REF_NAME}(?::{_REF_TAG})?(?:@{_REF_DIGEST})?$")
"""An image to start from or run: a tag, optionally pinned by digest."""

IMAGE_REF_FIX = "write it as [registry[:port]/]name[:tag], e.g. localhost:5000/team/train:1"


def image_ref_problem(ref: str, pattern: re.Pattern[str] = IMAGE_REF) -> str | None:
    """Why `ref` is not an image reference, or None when it is one. Pure."""
    if pattern.match(ref):
        return None
    lower = bool(pattern.match(ref.lower()))
    return f"{ref!r} is not a valid image reference" + (
        " (repository names are lower case)" if lower else ""
    )


def image_ref(f: Fields, key: str, pattern: re.Pattern[str]) -> str | None:
    ref = f.text(key)
    if ref is None:
        return None
    problem = image_ref_problem(ref, pattern)
    if problem:
        raise f.fail(key, ref, problem, IMAGE_REF_FIX)
    return ref


def url(f: Fields, key: str, value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    ok = (parts.scheme in ("http", "https") and bool(parts.hostname)) or parts.scheme == "file"
    if not ok:
        shown = redact_url(value)
        raise f.fail(
            key,
            shown,
            f"{shown!r} is not an http(s) or file URL",
            "give a full URL, e.g. https://pypi.example.com/simple",
        )
    return value


def ca_certs(f: Fields, base: Path) -> tuple[Path, ...]:
    out = []
    for item in f.texts("ca_certs"):
        path = (base / Path(item).expanduser()).resolve()
        if not path.is_file():
            raise f.fail(
                "ca_certs",
                item,
                f"{str(path)!r} is not a file",
                "give PEM certificate files (paths in tfbuild.yaml are relative to the "
                "source directory)",
            )
        out.append(path)
    return tuple(out)
