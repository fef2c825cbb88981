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

import contextlib
import hashlib
import importlib.util
import os
import re
import uuid
from collections.abc import Callable, Mapping
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
PART_MARK = ".tfbuild-part-"
"""A growing log is uploaded as `<name>.tfbuild-part-<16-digit byte offset>` pieces while
the run lasts (each sync sends only what was appended) and whole at the end; `files`,
`read` and `get_file` show the pieces as the one file they make up."""
_PART = re.compile(re.escape(PART_MARK) + r"(\d{16})$")
PART_SIZE = 64 * 2**20
"""Bytes per block of an Azure upload, and per read."""
S3_PART_SIZE = 32 * 2**20
S3_CONCURRENCY = 4
"""S3 multipart: part size and parts in flight (at most 128 MiB of a file in memory)."""


class SourceChanged(Exception):
    """The local file changed while it was being uploaded; nothing was committed."""


def part_key(key: str, offset: int) -> str:
    return f"{key}{PART_MARK}{offset:016d}"


def split_part(key: str) -> tuple[str, int] | None:
    """(logical key, byte offset) of a log part key, else None. Pure."""
    m = _PART.search(key)
    return (key[: m.start()], int(m.group(1))) if m else None


Pieces = dict[str, list[tuple[int, str, int]]]
"""logical key -> [(byte offset, part key, size)], in order."""


def fold_parts(listing: Mapping[str, int]) -> tuple[dict[str, int], Pieces]:
    """Fold log parts into their logical files. Pure.

    Returns (key -> size as the reader sees it, logical key -> [(offset, part key, size)]
    for files that exist only as parts). A whole file wins over parts of the same name
    (the agent writes the whole file at the end before it removes the parts); the parts
    count up to the first gap only (a series being restarted shows its beginning)."""
    out: dict[str, int] = {}
    series: Pieces = {}
    for key, size in listing.items():
        split = split_part(key)
        if split is None:
            out[key] = size
        else:
            series.setdefault(split[0], []).append((split[1], key, size))
    pieces: Pieces = {}
    for logical, parts in series.items():
        if logical in out:
            continue
        contiguous, end = [], 0
        for offset, key, size in sorted(parts):
            if offset != end:
                break
            contiguous.append((offset, key, size))
            end += size
        if contiguous:
            out[logical], pieces[logical] = end, contiguous
    return out, pieces


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


def check_backend(spec: StoreSpec) -> None:
    """Raise ConfigError when the backend package for `spec` is not installed (does not
    import it)."""
    module, extra = BACKENDS[spec.protocol]
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
        # A call still running after its upload was given up (for example in the
        # backend's own retry loop) must not land much later: one attempt per call,
        # the uploader retries with back-off itself.
        if hasattr(fs, "retries"):
            fs.retries = 1

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
        """Upload a file nobody writes any more (no change detection)."""
        with open(local, "rb") as f:
            self.put_stream(f.fileno(), key, lambda: True)

    def put_stream(self, fd: int, key: str, unchanged_since: Callable[[], bool],
                   size: int | None = None, *, start: int = 0, digest: bool = True) -> str:
        """Upload `size` bytes (default: to its end) of the open file `fd` from offset
        `start` to `key`
        and return its sha256 ("" when `digest` is off for a local store).

        Nothing is visible under `key` until the whole file is there: a local store
        copies in the kernel (copy_file_range, a reflink where the filesystem has them)
        into a partial name and renames it; S3 completes its multipart upload and Azure
        commits its block list only at the end. Right before that commit
        `unchanged_since()` is asked; when the source changed meanwhile the upload is
        thrown away and SourceChanged raised, so a torn file never reaches the store."""
        dst = self.path(key)
        if size is None:
            size = os.fstat(fd).st_size - start
        if self.local:
            return self._put_local(fd, dst, start, size, unchanged_since, digest)
        if self.spec.protocol == "s3" and size > S3_PART_SIZE:
            return self._put_s3_multipart(fd, dst, start, size, unchanged_since)
        sha = hashlib.sha256()
        f = self.fs.open(dst, "wb", block_size=PART_SIZE, **self.spec.put_kwargs)
        committed = False
        try:
            done = 0
            while done < size:
                chunk = os.pread(fd, min(PART_SIZE, size - done), start + done)
                if not chunk:
                    break
                sha.update(chunk)
                f.write(chunk)
                done += len(chunk)
            if done != size or not unchanged_since():
                raise SourceChanged(dst)
            f.close()
            committed = True
        finally:
            if not committed:
                _discard(f)
        return sha.hexdigest()

    def _put_s3_multipart(self, fd: int, dst: str, start: int, size: int,
                          unchanged_since: Callable[[], bool]) -> str:
        """S3 multipart upload, S3_CONCURRENCY parts in flight (as fsspec's put_file
        does), each part read and hashed here in order; completed only if the source
        is unchanged, aborted otherwise."""
        import asyncio

        fs = self.fs
        bucket, key, _ = fs.split_path(dst)

        def call(method: str, **kw: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(
                fs._call_s3(method, Bucket=bucket, Key=key, **kw), fs.loop)

        upload_id = call("create_multipart_upload").result()["UploadId"]
        sha = hashlib.sha256()
        inflight: list[tuple[int, Any]] = []
        done_parts: list[dict[str, Any]] = []
        try:
            for number, offset in enumerate(range(0, size, S3_PART_SIZE), start=1):
                want = min(S3_PART_SIZE, size - offset)
                data = os.pread(fd, want, start + offset)
                if len(data) != want:
                    raise SourceChanged(dst)
                sha.update(data)
                inflight.append((number, call("upload_part", PartNumber=number,
                                              UploadId=upload_id, Body=data)))
                while len(inflight) >= S3_CONCURRENCY:
                    n, fut = inflight.pop(0)
                    done_parts.append({"PartNumber": n, "ETag": fut.result()["ETag"]})
            for n, fut in inflight:
                done_parts.append({"PartNumber": n, "ETag": fut.result()["ETag"]})
            inflight = []
            if not unchanged_since():
                raise SourceChanged(dst)
            call("complete_multipart_upload", UploadId=upload_id,
                 MultipartUpload={"Parts": done_parts}).result()
        except BaseException:
            for _, fut in inflight:
                fut.cancel()
            with contextlib.suppress(Exception):
                call("abort_multipart_upload", UploadId=upload_id).result(30)
            raise
        return sha.hexdigest()

    def _put_local(self, fd: int, dst: str, start: int, size: int,
                   unchanged_since: Callable[[], bool], digest: bool) -> str:
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{dst}{PARTIAL_MARK}{uuid.uuid4().hex[:8]}"
        sha = hashlib.sha256() if digest else None
        try:
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                done = 0
                while done < size:
                    if sha is not None:  # hashing reads the bytes anyway: write them too
                        chunk = os.pread(fd, min(PART_SIZE, size - done), start + done)
                        sha.update(chunk)
                        n = os.write(out, chunk) if chunk else 0
                    else:
                        n = _kernel_copy(fd, out, start + done, size - done)
                    if n == 0:
                        break
                    done += n
            finally:
                os.close(out)
            if done != size or not unchanged_since():
                raise SourceChanged(dst)
            os.replace(tmp, dst)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return sha.hexdigest() if sha is not None else ""

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

    def _listing(self, prefix: str = "") -> dict[str, int]:
        """key -> size of every stored object under `prefix`, log parts included."""
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

    def files(self, prefix: str = "") -> dict[str, int]:
        """key -> size of every file under `prefix` (fresh listing); a log uploaded in
        parts is listed once, under its own name, with the size the parts add up to."""
        return fold_parts(self._listing(prefix))[0]

    def _pieces(self, key: str) -> list[tuple[int, str, int]]:
        parent = key.rsplit("/", 1)[0] if "/" in key else ""
        pieces = fold_parts({k: v for k, v in self._listing(parent).items()
                             if k == key or k.startswith(key + PART_MARK)})[1]
        if key not in pieces:
            raise FileNotFoundError(self.path(key))
        return pieces[key]

    def read(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        try:
            return self.fs.cat_file(self.path(key), start=start, end=end)
        except FileNotFoundError:
            pieces = self._pieces(key)
        total = sum(size for _, _, size in pieces)
        lo = 0 if start is None else max(0, start)
        hi = total if end is None else min(end, total)
        out = []
        for offset, part, size in pieces:
            if offset + size <= lo or offset >= hi:
                continue
            out.append(self.fs.cat_file(self.path(part), start=max(0, lo - offset),
                                        end=min(size, hi - offset)))
        return b"".join(out)

    def get_file(self, key: str, local: Path) -> None:
        try:
            self.fs.get_file(self.path(key), str(local))
            return
        except FileNotFoundError:
            pieces = self._pieces(key)
        with open(local, "wb") as f:
            for _, part, _ in pieces:
                f.write(self.fs.cat_file(self.path(part)))

    def delete(self, key: str) -> None:
        """Remove `key` if it is there."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(key))

    def parts_of(self, key: str) -> list[str]:
        """Keys of the stored log parts of `key` (any series, gaps included)."""
        parent = key.rsplit("/", 1)[0] if "/" in key else ""
        return sorted(k for k in self._listing(parent) if split_part(k) and
                      split_part(k)[0] == key)  # type: ignore[index]

    def listdir(self, prefix: str = "") -> list[str]:
        """Names of the immediate children (files and folders) under `prefix`."""
        self.refresh()
        try:
            entries = self.fs.ls(self.path(prefix), detail=False)
        except FileNotFoundError:
            return []
        return sorted({e.rstrip("/").rsplit("/", 1)[-1] for e in entries})


def _kernel_copy(src: int, dst: int, offset: int, count: int) -> int:
    """Copy in the kernel (no bytes through Python): copy_file_range shares extents on
    filesystems with reflinks and copies in the page cache elsewhere; sendfile where
    copy_file_range is refused (for example across some filesystems)."""
    count = min(count, 1 << 30)
    try:
        return os.copy_file_range(src, dst, count, offset)
    except OSError:
        return os.sendfile(dst, src, offset, count)


def _discard(f: Any) -> None:
    """Throw away an upload in progress: abort S3's multipart upload; Azure's staged
    blocks are never committed (and expire). Closing is blocked so nothing commits."""
    with contextlib.suppress(Exception):
        f.discard()
    f.closed = True


def open_store(uri: str, env: Mapping[str, str] | None = None) -> Store:
    """The Store for `uri`; raises ConfigError when the URI or the backend is unusable."""
    import fsspec

    spec = store_spec(uri, os.environ if env is None else env)
    check_backend(spec)
    try:
        fs, root = fsspec.core.url_to_fs(spec.url, **spec.options)
    except (ImportError, ValueError, KeyError) as e:
        raise ConfigError(f"cannot open the store {uri}: {e}") from None
    return Store(spec, fs, root)
