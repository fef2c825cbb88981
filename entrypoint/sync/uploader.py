"""Upload one file: settle check, read it in place, skip known content, put, remember.

No private copy: the file is read where it is and the upload is committed only if the
file did not change meanwhile (same inode, size, mtime and ctime before and after; an
upload waits until the last write is a couple of clock ticks old, so a later write
must show a later mtime). A file changed during its upload is uploaded again, and the
store never shows a torn file. Logs only grow: while the run lasts each upload sends
what was appended since the last one as a numbered part; at the end (`final`) the whole
log goes up once and the parts are removed.

`Uploader.upload` never raises: it returns an Outcome the syncer turns into
"done", "look again later" or "retry after a back-off".
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from .manifest import Entry, Manifest, same_content, tail_digest, unchanged
from .openfiles import held_for_writing
from .scheduler import Item
from .store import SourceChanged, Store, part_key

SMALL = 8 * 2**20
"""Files up to this size are read into memory and sent in one request."""
FRESH_NS = 20_000_000
"""File timestamps advance in clock ticks (a few ms): a file last written less than this
long ago is read only once this has passed, so a write during the read changes its mtime."""

EMPTY_SETTLE = 1.0
"""Seconds an output that just became empty waits: a truncating open may not have handed
its writer a descriptor yet, so neither /proc nor inotify shows the writer."""

UPLOADED, SKIPPED, GONE, UNSETTLED, FAILED = "uploaded", "skipped", "gone", "unsettled", "failed"


@dataclass(frozen=True)
class Outcome:
    kind: str
    error: str = ""
    wait: float = 0.0
    """For UNSETTLED: seconds until the file may have settled."""
    size: int = 0


def describe_error(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".replace("\n", " ")
    return text if len(text) <= 300 else text[:297] + "..."


class Uploader:
    def __init__(
        self,
        store: Store,
        manifest: Manifest,
        workdir: Path,
        key_for: Callable[[str], str],
        *,
        settle: float,
        output_settle: float,
        snapshot_after: float,
        is_open: Callable[[str], bool] = lambda rel: False,
    ) -> None:
        self.store = store
        self.manifest = manifest
        self.workdir = Path(workdir)
        self.key_for = key_for
        self.settle = settle
        self.output_settle = output_settle
        self.snapshot_after = snapshot_after
        self.is_open = is_open

    def settle_for(self, rel: str) -> float:
        """Quiet seconds before a file without a close event counts as finished.

        Logs and event files stay open while training and only grow: a short pause is
        enough. An output still held open waits for its writer to close it (a slow
        writer must not get half a file uploaded); `output_settle` only covers scripts
        that keep an output open for good, or a missed close event.
        """
        if rel.startswith("outputs/") and self.is_open(rel):
            return self.output_settle
        return self.settle

    def max_wait_for(self, rel: str) -> float | None:
        """A log that never pauses is still uploaded every `snapshot_after` seconds."""
        return self.snapshot_after if rel.startswith("logs/") else None

    def may_snapshot(self, item: Item, now_mono: float) -> bool:
        """A log written without pause for a long time is uploaded as it stands (it only
        grows); outputs are only ever uploaded closed or settled."""
        return item.rel.startswith("logs/") and now_mono - item.first_seen >= self.snapshot_after

    def upload(self, item: Item, *, now_wall: float, now_mono: float,
               final: bool = False) -> Outcome:
        """`final`: the writers are gone; logs go up whole (their parts are removed)."""
        src = self.workdir / item.rel
        try:
            st = src.stat()
        except FileNotFoundError:
            return Outcome(GONE)
        except OSError as e:
            return Outcome(FAILED, f"cannot read {src}: {describe_error(e)}")
        entry = self.manifest.get(item.rel)
        is_log = item.rel.startswith("logs/")
        compact = final and entry is not None and entry.parts > 0
        if unchanged(entry, st.st_size, st.st_mtime_ns) and not compact:
            return Outcome(SKIPPED)
        if not item.closed and not self.may_snapshot(item, now_mono):
            quiet, needed = now_wall - st.st_mtime_ns / 1e9, self.settle_for(item.rel)
            if quiet < needed:
                return Outcome(UNSETTLED, wait=needed - max(quiet, 0.0))
        if not is_log:
            try:
                st = _settled_stat(src)
            except (FileNotFoundError, SourceChanged):
                return Outcome(UNSETTLED, wait=min(0.2, self.settle_for(item.rel)))
            quiet = now_wall - st.st_mtime_ns / 1e9
            if not final and st.st_size == 0 and quiet < EMPTY_SETTLE:
                # open(O_TRUNC) empties the file before the writer's descriptor exists: no
                # /proc entry, no inotify open yet (seen at 15 ms under load). A file that
                # just became empty may be the start of a rewrite: look again shortly.
                return Outcome(UNSETTLED, wait=EMPTY_SETTLE - max(quiet, 0.0))
            if not final and quiet < self.output_settle and (
                    self.is_open(item.rel) or held_for_writing(src)):
                # Opened again since it was closed (say, truncated for a rewrite): what is
                # there now may be the start of the next version; its close brings it back.
                # (Asked before we open it ourselves: inotify counts our own open too.)
                return Outcome(UNSETTLED, wait=min(self.settle, self.output_settle - quiet))
        try:
            fd = os.open(src, os.O_RDONLY)
        except FileNotFoundError:
            return Outcome(GONE)
        except OSError as e:
            return Outcome(FAILED, f"cannot read {src}: {describe_error(e)}")
        try:
            before = os.fstat(fd)
            if not is_log and not _same(before, st):
                raise SourceChanged(item.rel)
            # Logs only grow: what was there when we looked stays valid while more is
            # appended. Any other file must be exactly as it was when the upload ends.
            check = _grown_only if is_log else _identical
            def intact() -> bool:
                return check(src, fd, before)
            if is_log and not final:
                return self._log_part(item.rel, fd, before, entry, intact)
            return self._whole(item.rel, fd, before, entry, intact, compact)
        except SourceChanged:
            return Outcome(UNSETTLED, wait=min(0.2, self.settle_for(item.rel)))
        except Exception as e:  # any backend error: keep the file, retry later
            return Outcome(FAILED, describe_error(e))
        finally:
            os.close(fd)

    def _whole(self, rel: str, fd: int, st: os.stat_result, entry: Entry | None,
               intact: Callable[[], bool], compact: bool) -> Outcome:
        key, size = self.key_for(rel), st.st_size
        if size <= SMALL:
            data = _read(fd, size)
            if len(data) != size or not intact():
                raise SourceChanged(rel)
            sha = hashlib.sha256(data).hexdigest()
            if not compact and same_content(entry, size, sha):
                # Touched but identical: the store already has it.
                self.manifest.record(rel, replace(entry, mtime_ns=st.st_mtime_ns))  # type: ignore[arg-type]
                return Outcome(SKIPPED)
            self.store.put_bytes(data, key)
        else:
            # A local store copies in the kernel; hashing would read every byte in Python.
            sha = self.store.put_stream(fd, key, intact, size, digest=not self.store.local)
        if entry is not None and entry.parts:
            for part in self.store.parts_of(key):  # the whole file is in place: tidy up
                self.store.delete(part)
        self.manifest.record(rel, Entry(size, sha, st.st_mtime_ns, time.time()))
        return Outcome(UPLOADED, size=size)

    def _log_part(self, rel: str, fd: int, st: os.stat_result, entry: Entry | None,
                  intact: Callable[[], bool]) -> Outcome:
        key, size = self.key_for(rel), st.st_size
        appended = (entry is not None and entry.parts > 0 and size >= entry.size
                    and entry.tail == tail_digest(fd, entry.size))
        if appended:
            assert entry is not None
            start, parts = entry.size, entry.parts
            if size == start:
                self.manifest.record(rel, replace(entry, mtime_ns=st.st_mtime_ns))
                return Outcome(SKIPPED)
        else:
            # First upload, or the log was rewritten: a new series from byte 0 replaces
            # whatever the store had under this name.
            start, parts = 0, 0
            for old in self.store.parts_of(key):
                self.store.delete(old)
            if entry is not None and entry.parts == 0:
                self.store.delete(key)
        self.store.put_stream(fd, part_key(key, start), intact, size - start, start=start,
                              digest=False)
        self.manifest.record(rel, Entry(size, "", st.st_mtime_ns, time.time(), parts + 1,
                                        tail_digest(fd, size)))
        return Outcome(UPLOADED, size=size - start)


def _read(fd: int, size: int) -> bytes:
    chunks, done = [], 0
    while done < size:
        chunk = os.pread(fd, size - done, done)
        if not chunk:
            break
        chunks.append(chunk)
        done += len(chunk)
    return b"".join(chunks)


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_ino, a.st_dev, a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (
        b.st_ino, b.st_dev, b.st_size, b.st_mtime_ns, b.st_ctime_ns)


def _identical(path: Path, fd: int, before: os.stat_result) -> bool:
    """Neither written (fd) nor replaced by another file (path) since `before`."""
    try:
        now = os.stat(path)
    except OSError:
        return False
    return _same(os.fstat(fd), before) and now.st_ino == before.st_ino


def _grown_only(path: Path, fd: int, before: os.stat_result) -> bool:
    after = os.fstat(fd)
    return after.st_ino == before.st_ino and after.st_size >= before.st_size


def _settled_stat(path: Path, tries: int = 5) -> os.stat_result:
    """stat once the last write is FRESH_NS old and nothing changed while waiting."""
    st = os.stat(path)
    for _ in range(tries):
        wait = FRESH_NS - (time.time_ns() - st.st_mtime_ns)
        if wait <= 0:
            return st
        time.sleep(min(wait, FRESH_NS) / 1e9)
        again = os.stat(path)
        if _same(again, st):
            return st
        st = again
    raise SourceChanged("still being written")
