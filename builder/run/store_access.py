"""The host's cloud credentials for a job's object store, forwarded at run time.

For --upload-to s3://, az:// or gs:// the variables the agent's store reads are
passed from the host's environment by name (never baked into an image, and shown
as `-e NAME` without the value by `--print`), and credential files are mounted
read-only where the SDKs look for them. Pure: the caller gives the environment
and the home folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CONTAINER_HOME = "/root"
"""tfbuild images run their agent as root."""

CREDENTIAL_ENV = {
    "s3": (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "TFBUILD_S3_ENDPOINT_URL",
    ),
    "az": (
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_STORAGE_ACCOUNT_NAME",
        "AZURE_STORAGE_ACCOUNT_KEY",
        "AZURE_STORAGE_SAS_TOKEN",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_TENANT_ID",
    ),
    "gs": ("GOOGLE_CLOUD_PROJECT",),
}
"""Variables forwarded when set on the host, by store."""

CREDENTIAL_FILE_ENV = {
    "s3": ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"),
    "gs": ("GOOGLE_APPLICATION_CREDENTIALS",),
}
"""Variables naming a credentials file: the file is mounted read-only at its own path."""

_PROTOCOLS = {"s3": "s3", "s3a": "s3", "az": "az", "abfs": "az", "abfss": "az", "gs": "gs",
              "gcs": "gs"}


@dataclass(frozen=True)
class Mount:
    host: str
    container: str
    read_only: bool = False

    def flag(self) -> str:
        return f"{self.host}:{self.container}" + (":ro" if self.read_only else "")


@dataclass(frozen=True)
class StoreAccess:
    env: dict[str, str]
    """Forwarded variables (name -> the host's value)."""
    mounts: tuple[Mount, ...] = ()


def store_kind(uri: str | None) -> str | None:
    if not uri or "://" not in uri:
        return None
    return _PROTOCOLS.get(uri.split("://", 1)[0].lower())


def store_access(uri: str | None, env: Mapping[str, str], home: Path) -> StoreAccess:
    kind = store_kind(uri)
    if kind is None:
        return StoreAccess({})
    forwarded = {name: env[name] for name in CREDENTIAL_ENV.get(kind, ()) if env.get(name)}
    mounts: list[Mount] = []
    for name in CREDENTIAL_FILE_ENV.get(kind, ()):
        path = env.get(name)
        if path and Path(path).is_file():
            forwarded[name] = path
            mounts.append(Mount(path, path, read_only=True))
    if kind == "s3" and (home / ".aws").is_dir() and not any(
        n in forwarded for n in CREDENTIAL_FILE_ENV["s3"]
    ):
        mounts.append(Mount(str(home / ".aws"), f"{CONTAINER_HOME}/.aws", read_only=True))
    return StoreAccess(forwarded, tuple(mounts))
