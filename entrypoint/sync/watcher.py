"""Watch ./outputs and ./logs with watchdog and report files that are ready or changing.

On Linux (inotify) a writer closing a file gives FileClosedEvent (IN_CLOSE_WRITE): the
file is complete and is reported as closed. Elsewhere, and for files kept open (a
TensorBoard event file, a log), changes are reported and the syncer waits until the
file has been quiet for a moment. A file renamed into place, or inside a folder moved
in, counts as closed. Open and close events are counted so `is_open` can tell a file
someone still holds open (wait for the close) from one moved in whole (no open seen).
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from .layout import SYNCED_DIRS, local_rel
from .walk import walk_dir, walk_files

__all__ = ["FolderWatcher", "walk_files"]

# watchdog's own complaints are not the job's business (they would land in the job's
# output next to the script's lines): a folder created while its parent is being added
# registers the same callback twice (watchdog reuses the watch and warns), and stopping
# the observer while its emitter blocks in a read logs an error. Both are harmless.
warnings.filterwarnings("ignore", message=r"Callback with id .* already exists",
                        category=RuntimeWarning)


class _QuietStop(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in record.getMessage()


logging.getLogger("watchdog.observers.inotify").addFilter(_QuietStop())

OnFile = Callable[[str, bool], None]
"""Called with (workdir-relative path, closed)."""

_EVENTS = [FileClosedEvent, FileClosedNoWriteEvent, FileOpenedEvent, FileCreatedEvent,
           FileModifiedEvent, FileMovedEvent, DirCreatedEvent, DirMovedEvent]


class _Handler(FileSystemEventHandler):
    def __init__(self, workdir: Path, on_file: OnFile) -> None:
        self.workdir = workdir
        self.on_file = on_file
        self._lock = threading.Lock()
        self._handles: dict[str, int] = {}
        """Opens minus closes seen per path (never below zero: a lost event must not
        make a file look open for ever)."""

    def is_open(self, rel: str) -> bool:
        with self._lock:
            return self._handles.get(rel, 0) > 0

    def _count(self, rel: str, delta: int) -> None:
        with self._lock:
            n = max(0, self._handles.get(rel, 0) + delta)
            if n:
                self._handles[rel] = n
            else:
                self._handles.pop(rel, None)

    def _rel(self, path: str | bytes) -> str | None:
        return local_rel(os.fsdecode(path), self.workdir)

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, DirMovedEvent | DirCreatedEvent):
            # Files inside a directory moved in (or created before inotify added a watch
            # on the new directory) produce no events of their own: walk it.
            where = event.dest_path if isinstance(event, DirMovedEvent) else event.src_path
            for rel, _ in walk_dir(self.workdir, Path(os.fsdecode(where))):
                self.on_file(rel, isinstance(event, DirMovedEvent))
            return
        moved = isinstance(event, FileMovedEvent)
        rel = self._rel(event.dest_path if moved else event.src_path)
        if rel is None:
            return
        if isinstance(event, FileOpenedEvent):
            self._count(rel, +1)
        elif isinstance(event, FileClosedNoWriteEvent):
            self._count(rel, -1)
        elif isinstance(event, FileClosedEvent):
            self._count(rel, -1)
            self.on_file(rel, True)
        elif moved:
            self.on_file(rel, True)
        elif isinstance(event, FileCreatedEvent | FileModifiedEvent):
            # watchdog walks a folder moved in and reports its files as synthetic creations.
            self.on_file(rel, event.is_synthetic)


class FolderWatcher:
    """A watchdog observer on <workdir>/outputs and <workdir>/logs (created if missing)."""

    def __init__(self, workdir: Path, on_file: OnFile) -> None:
        self.workdir = Path(workdir)
        self._handler = _Handler(self.workdir, on_file)
        self._observer: Observer | None = None

    def start(self) -> None:
        observer = Observer()
        for top in SYNCED_DIRS:
            folder = self.workdir / top
            folder.mkdir(parents=True, exist_ok=True)
            observer.schedule(self._handler, str(folder), recursive=True, event_filter=_EVENTS)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def is_open(self, rel: str) -> bool:
        """Someone opened `rel` and has not closed it yet (as far as events tell)."""
        return self._handler.is_open(rel)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop watching; waits at most `timeout` seconds for the observer thread."""
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout)
