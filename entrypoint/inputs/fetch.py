"""Data inputs, the I/O part: list each input in its store, fetch what the node-local
cache does not hold yet (every file of every input in parallel, progress in the log),
verify sizes, and link each input at <workdir>/inputs/<name>.

The cache (TFBUILD_INPUT_CACHE, default /var/cache/tfbuild/inputs) holds one folder per
cache key (plan.cache_key: the URI and the store's listing with sizes and ETags or
mtimes) and a `<key>.json` written only once the folder is complete; a host that mounts
the same cache folder into its next container does not fetch the same data again.
Agents on one host sharing the cache take a lock per key, so one fetches and the others
wait for it (bounded by LOCK_WAIT).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AgentError, InputError
from ..sync.store import Store, open_store
from .plan import Entry, Input, cache_key, is_local, link_path, local_path_of, version_of

DEFAULT_CACHE = "/var/cache/tfbuild/inputs"
CACHE_VARIABLE = "TFBUILD_INPUT_CACHE"
WORKERS = 8
"""Files fetched at once, over all inputs."""
CHUNK = 8 * 2**20
ATTEMPTS = 3
"""Tries per file for errors other than 'not found' (a dropped connection)."""
LOCK_WAIT = 3600.0
"""Longest wait for another agent on this host fetching the same input into the cache."""
PROGRESS_EVERY = 2.0

Log = Callable[[str], None]


@dataclass
class _Pending:
    """One input being fetched: where from, its listing, where it goes."""

    item: Input
    store: Store
    is_file: bool
    entries: list[Entry]
    key: str
    lock: Any = None
    tmp: Path | None = None

    @property
    def total(self) -> int:
        return sum(e.size for e in self.entries)


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


def cache_root(env: Mapping[str, str], log: Log) -> Path:
    """The node's input cache; a private temporary folder when it cannot be written
    (an agent not running as root outside an image), said in the log."""
    wanted = Path(env.get(CACHE_VARIABLE, "").strip() or DEFAULT_CACHE)
    try:
        wanted.mkdir(parents=True, exist_ok=True)
        if os.access(wanted, os.W_OK | os.X_OK):
            return wanted
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"tfbuild-inputs-{os.getuid()}"
    fallback.mkdir(parents=True, exist_ok=True)
    log(f"inputs: cannot write the cache {wanted}; using {fallback} (set {CACHE_VARIABLE} "
        "to a writable folder to keep fetched inputs between runs)")
    return fallback


def _open(item: Input, env: Mapping[str, str]) -> Store:
    try:
        return open_store(item.uri, env)
    except AgentError as e:
        raise InputError(f"input {item.name} ({item.uri}): {e}") from None


def _listing(item: Input, store: Store) -> tuple[bool, list[Entry]]:
    """(is it one file, its files) as the store lists them; fails naming the URI."""
    fs, root = store.fs, store.root
    try:
        fs.invalidate_cache()
        info = fs.info(root)
        if info.get("type") != "directory":
            return True, [Entry("", int(info.get("size") or 0), version_of(info))]
        found = fs.find(root, detail=True)
    except FileNotFoundError:
        raise InputError(
            f"input {item.name}: {item.uri} does not exist (the store has no object or "
            "folder there); check the URI, or give another with --input "
            f"{item.name}=URI"
        ) from None
    except Exception as e:  # any backend error, reported with the URI
        raise InputError(f"input {item.name}: cannot list {item.uri}: {type(e).__name__}: "
                         f"{e}") from None
    entries = []
    for name, info in sorted(found.items()):
        name = name.rstrip("/")
        if info.get("type") == "directory" or not name.startswith(root + "/"):
            continue
        entries.append(Entry(name[len(root) + 1:], int(info.get("size") or 0),
                             version_of(info)))
    if not entries:
        raise InputError(f"input {item.name}: {item.uri} is a folder with no files in it; "
                         "check the URI")
    return False, entries


def _is_complete(folder: Path, entries: Sequence[Entry], is_file: bool, uri: str) -> bool:
    marker = folder.with_name(folder.name + ".json")
    if not marker.is_file():
        return False
    for e in entries:
        p = folder / (_base(uri) if is_file else e.rel)
        try:
            if p.stat().st_size != e.size:
                return False
        except OSError:
            return False
    return True


def _lock(path: Path, what: str, log: Log) -> Any:
    f = open(path, "w")  # noqa: SIM115 - held until the input is complete
    deadline = time.monotonic() + LOCK_WAIT
    said = False
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return f
        except BlockingIOError:
            if not said:
                log(f"inputs: another agent on this host is fetching {what} into the cache; "
                    "waiting for it")
                said = True
            if time.monotonic() > deadline:
                f.close()
                raise InputError(f"inputs: {what} was still being fetched by another agent "
                                 f"after {LOCK_WAIT:g}s (lock {path}); remove the lock file "
                                 "if that agent is gone") from None
            time.sleep(0.5)


def _unlock(f: Any) -> None:
    if f is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


class _Progress:
    def __init__(self, files: int, total: int, log: Log) -> None:
        self.files, self.total, self.log = files, total, log
        self.done_files = 0
        self.done_bytes = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._report, daemon=True,
                                        name="tfbuild-input-progress")

    def add(self, n: int) -> None:
        with self._lock:
            self.done_bytes += n

    def file_done(self) -> None:
        with self._lock:
            self.done_files += 1

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return (f"inputs: {self.done_files}/{self.files} files, {_mb(self.done_bytes)} of "
                f"{_mb(self.total)} ({_mb(self.done_bytes / elapsed)}/s)")

    def _report(self) -> None:
        while not self._stop.wait(PROGRESS_EVERY):
            self.log(self.line())

    def __enter__(self) -> _Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _fetch_file(p: _Pending, entry: Entry, progress: _Progress) -> None:
    assert p.tmp is not None
    remote = p.store.root if p.is_file else f"{p.store.root}/{entry.rel}"
    local = p.tmp / (_base(p.item.uri) if p.is_file else entry.rel)
    local.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, ATTEMPTS + 1):
        got = 0
        try:
            with p.store.fs.open(remote, "rb", block_size=CHUNK) as src, open(local, "wb") as dst:
                while chunk := src.read(CHUNK):
                    dst.write(chunk)
                    got += len(chunk)
                    progress.add(len(chunk))
            break
        except FileNotFoundError:
            raise InputError(f"input {p.item.name}: {remote} vanished from {p.item.uri} while "
                             "it was being fetched; run again once the data is complete") from None
        except Exception as e:  # retried, then reported with the URI
            progress.add(-got)
            if attempt == ATTEMPTS:
                raise InputError(f"input {p.item.name}: fetching {remote} from {p.item.uri} "
                                 f"failed {ATTEMPTS} times: {type(e).__name__}: {e}") from None
            time.sleep(attempt)
    size = local.stat().st_size
    if size != entry.size:
        raise InputError(f"input {p.item.name}: {remote} is {size} bytes here but the store "
                         f"lists {entry.size}; it changed while being fetched, or the "
                         "transfer was cut: run again")
    progress.file_done()


def _base(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1] or "data"


def _link(workdir: Path, item: Input, target: Path, is_file: bool) -> str:
    """Make <workdir>/inputs/<name> show `target`; return the path the script gets."""
    link = Path(link_path(str(workdir), item.name))
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        link.unlink()
    elif link.is_dir() and all(c.is_symlink() for c in link.iterdir()):
        shutil.rmtree(link)  # what an earlier run on this container linked
    elif link.exists():
        raise InputError(f"input {item.name}: {link} already exists in the image; rename the "
                         "input or that folder of the source")
    if is_file:
        link.mkdir()
        (link / target.name).symlink_to(target)
        return str(link / target.name)
    link.symlink_to(target, target_is_directory=True)
    return str(link)


def stage(items: Sequence[Input], workdir: Path, env: Mapping[str, str], log: Log) -> dict[
    str, str
]:
    """Make every input readable under <workdir>/inputs; return name -> the path the
    script gets. Raises InputError naming the input and its URI on any failure."""
    if not items:
        return {}
    paths: dict[str, str] = {}
    remote: list[Input] = []
    for item in items:
        if item.mode == "mount" and is_local(item.uri):
            target = Path(local_path_of(item.uri))
            if not target.exists():
                raise InputError(f"input {item.name}: {item.uri} does not exist on this node; "
                                 "mount the folder into the container (tfbuild run --input "
                                 "does that for file:// URIs) or fix the URI")
            paths[item.name] = _link(workdir, item, target, target.is_file())
            log(f"input {item.name}: {item.uri} mounted in place at {paths[item.name]}")
            continue
        if item.mode == "mount":
            log(f"input {item.name}: mount of {item.uri} is not streamed by tfbuild; "
                "downloading it first (see docs/inputs.md)")
        remote.append(item)
    if not remote:
        return paths
    cache = cache_root(env, log)
    with ThreadPoolExecutor(min(WORKERS, len(remote)), "tfbuild-input-list") as pool:
        opened = list(pool.map(lambda i: (i, _open(i, env)), remote))
        listed = list(pool.map(lambda o: (o[0], o[1], *_listing(*o)), opened))
    pending: list[_Pending] = []
    try:
        for item, store, is_file, entries in listed:
            key = cache_key(item.uri, is_file, entries)
            p = _Pending(item, store, is_file, entries, key)
            folder = cache / key
            if not _is_complete(folder, entries, is_file, item.uri):
                p.lock = _lock(cache / f"{key}.lock", item.uri, log)
            if _is_complete(folder, entries, is_file, item.uri):
                _unlock(p.lock)
                p.lock = None
                log(f"input {item.name}: {item.uri} is in the node cache ({len(entries)} "
                    f"file(s), {_mb(p.total)}); not fetched again")
                paths[item.name] = _link(workdir, item, _target(folder, p), is_file)
                continue
            for stale in cache.glob(f"{key}.partial-*"):  # an agent killed mid-fetch;
                shutil.rmtree(stale, ignore_errors=True)  # we hold the key's lock
            p.tmp = cache / f"{key}.partial-{os.getpid()}"
            p.tmp.mkdir()
            pending.append(p)
            log(f"input {item.name}: fetching {item.uri} ({len(entries)} file(s), "
                f"{_mb(p.total)})")
        if pending:
            _fetch_all(pending, log)
        for p in pending:
            assert p.tmp is not None
            folder = cache / p.key
            shutil.rmtree(folder, ignore_errors=True)  # an incomplete earlier attempt
            os.replace(p.tmp, folder)
            marker = {"uri": p.item.uri, "files": len(p.entries), "bytes": p.total,
                      "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            (cache / f"{p.key}.json").write_text(json.dumps(marker) + "\n")
            paths[p.item.name] = _link(workdir, p.item, _target(folder, p), p.is_file)
    finally:
        for p in pending:
            if p.tmp is not None:
                shutil.rmtree(p.tmp, ignore_errors=True)
            _unlock(p.lock)
    return paths


def _target(folder: Path, p: _Pending) -> Path:
    return folder / _base(p.item.uri) if p.is_file else folder


def _fetch_all(pending: Sequence[_Pending], log: Log) -> None:
    jobs = [(p, e) for p in pending for e in p.entries]
    started = time.monotonic()
    with _Progress(len(jobs), sum(p.total for p in pending), log) as progress, \
            ThreadPoolExecutor(WORKERS, "tfbuild-input") as pool:
        futures = [pool.submit(_fetch_file, p, e, progress) for p, e in jobs]
        try:
            for f in futures:
                f.result()
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    elapsed = time.monotonic() - started
    for p in pending:
        log(f"input {p.item.name}: {p.item.uri} fetched, {len(p.entries)} file(s), "
            f"{_mb(p.total)}, sizes verified")
    log(f"{progress.line()} in {elapsed:.1f}s")
