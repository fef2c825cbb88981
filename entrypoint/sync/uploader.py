"""Upload one file: settle check, copy aside, skip known content, put, remember.

`Uploader.upload` never raises: it returns an Outcome the syncer turns into
"done", "look again later" or "retry after a back-off".
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .manifest import Entry, Manifest, copy_aside, same_content, unchanged
from .scheduler import Item
from .store import Store

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
        staging: Path,
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
        self.staging = Path(staging)
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

    def upload(self, item: Item, *, now_wall: float, now_mono: float) -> Outcome:
        src = self.workdir / item.rel
        try:
            st = src.stat()
        except FileNotFoundError:
            return Outcome(GONE)
        except OSError as e:
            return Outcome(FAILED, f"cannot read {src}: {describe_error(e)}")
        entry = self.manifest.get(item.rel)
        if unchanged(entry, st.st_size, st.st_mtime_ns):
            return Outcome(SKIPPED)
        snapshot_ok = self.may_snapshot(item, now_mono)
        if not item.closed and not snapshot_ok:
            quiet, needed = now_wall - st.st_mtime_ns / 1e9, self.settle_for(item.rel)
            if quiet < needed:
                return Outcome(UNSETTLED, wait=needed - max(quiet, 0.0))
        staged = self.staging / f"{uuid.uuid4().hex}"
        try:
            try:
                snap = copy_aside(src, staged)
            except FileNotFoundError:
                return Outcome(GONE)
            except OSError as e:
                return Outcome(FAILED, f"copying {src} aside to {self.staging} failed: "
                                       f"{describe_error(e)}")
            if snap.changed_while_copying and not snapshot_ok:
                return Outcome(UNSETTLED, wait=self.settle_for(item.rel))
            if entry is not None and same_content(entry, snap.size, snap.sha256):
                # Touched but identical: the store already has it.
                self.manifest.record(item.rel, Entry(snap.size, snap.sha256, snap.mtime_ns,
                                                     entry.uploaded_at))
                return Outcome(SKIPPED)
            try:
                self.store.put_file(staged, self.key_for(item.rel))
            except Exception as e:  # any backend error: keep the file, retry later
                return Outcome(FAILED, describe_error(e))
            self.manifest.record(item.rel,
                                 Entry(snap.size, snap.sha256, snap.mtime_ns, time.time()))
            return Outcome(UPLOADED, size=snap.size)
        finally:
            staged.unlink(missing_ok=True)
