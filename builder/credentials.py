"""Extra CA certificates and private pip indexes for builds.

CA certificates are public and go into the image (the training job needs them
too). Index credentials are resolved on the host at build time (from `${VAR}`
references, then ~/.netrc) and reach only build stages, never the final image.
"""

from __future__ import annotations

import hashlib
import netrc
import os
import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from .errors import TfbuildError

PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
ENV_REF_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def ca_bundle_files(paths: Iterable[Path]) -> dict[str, bytes]:
    """Split PEM files/bundles into one certificate per file, named by content hash
    (update-ca-certificates wants one certificate per .crt file)."""
    out: dict[str, bytes] = {}
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise TfbuildError(f"CA certificate {path}: cannot read it ({e.strerror})") from None
        certs = PEM_RE.findall(data)
        if not certs:
            raise TfbuildError(
                f"CA certificate {path}: no PEM certificate in it "
                "(expected -----BEGIN CERTIFICATE----- blocks; convert DER with "
                "`openssl x509 -inform der -in FILE -out FILE.pem`)"
            )
        for cert in certs:
            out[hashlib.sha256(cert).hexdigest()[:16] + ".crt"] = cert + b"\n"
    return dict(sorted(out.items()))


def resolve_index_url(
    url: str, environ: dict[str, str] | None = None, netrc_path: str | None = None
) -> str:
    """Expand ${VAR} references, then add ~/.netrc credentials for the host when
    the URL carries none. Raises when a referenced variable is unset."""
    env = os.environ if environ is None else environ

    def expand(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in env:
            raise TfbuildError(
                f"pip index URL refers to ${{{name}}}, which is not set; export it before building"
            )
        return quote(env[name], safe="")

    url = ENV_REF_RE.sub(expand, url)
    parts = urlsplit(url)
    if parts.username or not parts.hostname:
        return url
    login = _netrc_login(parts.hostname, netrc_path)
    if not login:
        return url
    user, password = login
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.netloc}"
    return urlunsplit(parts._replace(netloc=netloc))


def _netrc_login(host: str, path: str | None) -> tuple[str, str] | None:
    try:
        auth = netrc.netrc(path).authenticators(host)
    except (FileNotFoundError, netrc.NetrcParseError):
        return None
    if not auth:
        return None
    return auth[0] or "", auth[2] or ""


def pip_conf_text(index_url: str | None, extra_index_urls: Iterable[str] = ()) -> str:
    """pip.conf for build stages, or "" when no index is configured."""
    extra = [resolve_index_url(u) for u in extra_index_urls]
    if not index_url and not extra:
        return ""
    lines = ["[global]"]
    if index_url:
        lines.append(f"index-url = {resolve_index_url(index_url)}")
    if extra:
        lines.append("extra-index-url = " + "\n    ".join(extra))
    return "\n".join(lines) + "\n"


def redact_url(url: str) -> str:
    """`https://user:pass@host/simple` -> `https://***@host/simple`; others unchanged."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))
