"""A store URI -> an fsspec filesystem and a root path, with the few operations we need.

`store_spec(uri, env)` is pure: it reads endpoints and credentials from the given
environment mapping. `open_store` then builds the filesystem (I/O happens on use).

    file:///mnt/share/runs  or /mnt/share/runs   a mounted share
    s3://bucket/prefix      TFBUILD_S3_ENDPOINT_URL / AWS_ENDPOINT_URL for S3-compatible servers
    az://container/prefix   AZURE_STORAGE_CONNECTION_STRING, or account name + key / SAS
    abfs://container@ACCOUNT.dfs.core.windows.net/prefix
    gs://bucket/prefix      Google default credentials (GOOGLE_APPLICATION_CREDENTIALS)
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

# protocol -> (python module of the fsspec backend, tfbuild extra that installs it)
BACKENDS: dict[str, tuple[str, str]] = {
    "file": ("fsspec", ""),
    "s3": ("s3fs", "s3"),
    "s3a": ("s3fs", "s3"),
    "az": ("adlfs", "azure"),
    "abfs": ("adlfs", "azure"),
    "abfss": ("adlfs", "azure"),
    "gs": ("gcsfs", "gcs"),
    "gcs": ("gcsfs", "gcs"),
}
PARTIAL_MARK = ".tfbuild-partial-"
"""Local stores receive `<name>.tfbuild-partial-<id>` first and rename it: never half a file."""


@dataclass(frozen=True)
class StoreSpec:
    uri: str
    protocol: str
    url: str
    """What fsspec opens (a bare local path becomes file://)."""
    options: dict[str, Any] = field(default_factory=dict)
    put_kwargs: dict[str, Any] = field(default_factory=dict)
    """Per-upload arguments: backend retries are kept short, the uploader retries with backoff."""


def _first(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        if env.get(name):
            return env[name]
    return None


def _s3_options(env: Mapping[str, str]) -> dict[str, Any]:
    client: dict[str, Any] = {}
    endpoint = _first(env, "TFBUILD_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
    region = _first(env, "AWS_REGION", "AWS_DEFAULT_REGION")
    if endpoint:
        client["endpoint_url"] = endpoint
        # S3-compatible servers ignore the region but botocore wants one to sign.
        client["region_name"] = region or "us-east-1"
    elif region:
        client["region_name"] = region
    options: dict[str, Any] = {
        "client_kwargs": client,
        # One quick retry at the botocore level (the uploader backs off on its own); a long
        # read timeout because completing a big multipart upload can take a while.
        "config_kwargs": {"retries": {"max_attempts": 2, "mode": "standard"},
                          "read_timeout": 120},
    }
    for option, var in (
        ("key", "AWS_ACCESS_KEY_ID"),
        ("secret", "AWS_SECRET_ACCESS_KEY"),
        ("token", "AWS_SESSION_TOKEN"),
        ("profile", "AWS_PROFILE"),
    ):
        if env.get(var):
            options[option] = env[var]
    return options


def _azure_options(url: str, env: Mapping[str, str]) -> dict[str, Any]:
    host = url.split("://", 1)[1].split("/", 1)[0]
    account_in_uri = "@" in host
    options: dict[str, Any] = {"connection_timeout": 10}
    if env.get("AZURE_STORAGE_CONNECTION_STRING") and not account_in_uri:
        options["connection_string"] = env["AZURE_STORAGE_CONNECTION_STRING"]
        return options
    if not account_in_uri:
        if not env.get("AZURE_STORAGE_ACCOUNT_NAME"):
            raise ConfigError(
                f"the store {url} names no Azure storage account; set "
                "AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME with "
                "AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN, or use "
                "abfs://CONTAINER@ACCOUNT.dfs.core.windows.net/PREFIX"
            )
        options["account_name"] = env["AZURE_STORAGE_ACCOUNT_NAME"]
    if env.get("AZURE_STORAGE_ACCOUNT_KEY"):
        options["account_key"] = env["AZURE_STORAGE_ACCOUNT_KEY"]
    elif env.get("AZURE_STORAGE_SAS_TOKEN"):
        options["sas_token"] = env["AZURE_STORAGE_SAS_TOKEN"]
    # Otherwise adlfs falls back to DefaultAzureCredential (managed identity, az login).
    return options


def store_spec(uri: str, env: Mapping[str, str]) -> StoreSpec:
    """Parse a store URI and pick backend options from `env`. Pure."""
    text = (uri or "").strip()
    if not text:
        raise ConfigError(
            "no upload destination given; pass --upload-to URI or set TFBUILD_UPLOAD_TO "
            "(file:///path, s3://bucket/prefix, az://container/prefix, gs://bucket/prefix)"
        )
    if "://" not in text:
        if not text.startswith("/"):
            raise ConfigError(
                f"upload destination {text!r} is neither a URI nor an absolute path; "
                f"use file://{os.path.abspath(text)} or s3://, az://, abfs://, gs://"
            )
        text = f"file://{text}"
    protocol = text.split("://", 1)[0].lower()
    if protocol not in BACKENDS:
        raise ConfigError(
            f"upload destination {uri!r} uses {protocol}://, which tfbuild does not upload to; "
            "use file://, s3://, az://, abfs:// or gs://"
        )
    if protocol == "file":
        path = text.split("://", 1)[1]
        if not path.startswith("/"):
            raise ConfigError(f"{uri!r}: a file:// destination needs an absolute path (file:///…)")
        return StoreSpec(uri=uri, protocol="file", url=text)
    bucket = text.split("://", 1)[1].split("/", 1)[0]
    if not bucket:
        raise ConfigError(f"{uri!r} names no bucket or container; use {protocol}://NAME/PREFIX")
    if protocol in ("s3", "s3a"):
        return StoreSpec(uri, "s3", text, _s3_options(env))
    if protocol in ("az", "abfs", "abfss"):
        # No SDK-level retries (its first back-off is 15 s): the uploader retries instead.
        return StoreSpec(uri, "az", text, _azure_options(text, env), {"retry_total": 0})
    options = {"project": env["GOOGLE_CLOUD_PROJECT"]} if env.get("GOOGLE_CLOUD_PROJECT") else {}
    return StoreSpec(uri, "gs", text, options)


def _check_backend(spec: StoreSpec, protocol: str) -> None:
    module, extra = BACKENDS[protocol]
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"uploading to {spec.uri} needs the Python package {module}, which is not "
            f"installed here; build the image with `--upload-extra {extra}` or run "
            f"`pip install 'tfbuild[{extra}]'`"
        )


class Store:
    """An fsspec filesystem rooted at the destination; keys are '/'-separated paths under it."""

    def __init__(self, spec: StoreSpec, fs: Any, root: str) -> None:
        self.spec = spec
        self.fs = fs
        self.root = root.rstrip("/")

    @property
    def uri(self) -> str:
        return self.spec.uri

    @property
    def local(self) -> bool:
        return self.spec.protocol == "file"

    def path(self, key: str = "") -> str:
        key = key.strip("/")
        return f"{self.root}/{key}" if key else self.root

    def child(self, key: str) -> Store:
        """The same store rooted one level deeper (for example at a run)."""
        return Store(self.spec, self.fs, self.path(key))

    def put_file(self, local: Path, key: str) -> None:
        dst = self.path(key)
        if self.local:
            Path(dst).parent.mkdir(parents=True, exist_ok=True)
            tmp = f"{dst}{PARTIAL_MARK}{uuid.uuid4().hex[:8]}"
            try:
                shutil.copyfile(local, tmp)
                os.replace(tmp, dst)
            finally:
                Path(tmp).unlink(missing_ok=True)
            return
        self.fs.put_file(str(local), dst, **self.spec.put_kwargs)

    def put_bytes(self, data: bytes, key: str) -> None:
        dst = self.path(key)
        if self.local:
            Path(dst).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(f"{dst}{PARTIAL_MARK}{uuid.uuid4().hex[:8]}")
            try:
                tmp.write_bytes(data)
                os.replace(tmp, dst)
            finally:
                tmp.unlink(missing_ok=True)
            return
        self.fs.pipe_file(dst, data, **self.spec.put_kwargs)

    def refresh(self) -> None:
        """Forget cached listings: the agent writes while we read."""
        self.fs.invalidate_cache()

    def files(self, prefix: str = "") -> dict[str, int]:
        """key -> size of every file under `prefix` (fresh listing)."""
        self.refresh()
        base = self.path(prefix)
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return {}
        out: dict[str, int] = {}
        for name, info in found.items():
            if info.get("type") == "directory" or PARTIAL_MARK in name:
                continue
            name = name.rstrip("/")
            if name.startswith(self.root + "/"):
                out[name[len(self.root) + 1:]] = int(info.get("size") or 0)
        return out

    def read(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        return self.fs.cat_file(self.path(key), start=start, end=end)

    def get_file(self, key: str, local: Path) -> None:
        self.fs.get_file(self.path(key), str(local))

    def listdir(self, prefix: str = "") -> list[str]:
        """Names of the immediate children (files and folders) under `prefix`."""
        self.refresh()
        try:
            entries = self.fs.ls(self.path(prefix), detail=False)
        except FileNotFoundError:
            return []
        return sorted({e.rstrip("/").rsplit("/", 1)[-1] for e in entries})


def open_store(uri: str, env: Mapping[str, str] | None = None) -> Store:
    """The Store for `uri`; raises ConfigError when the URI or the backend is unusable."""
    import fsspec

    spec = store_spec(uri, os.environ if env is None else env)
    _check_backend(spec, spec.protocol)
    try:
        fs, root = fsspec.core.url_to_fs(spec.url, **spec.options)
    except (ImportError, ValueError, KeyError) as e:
        raise ConfigError(f"cannot open the store {uri}: {e}") from None
    return Store(spec, fs, root)
