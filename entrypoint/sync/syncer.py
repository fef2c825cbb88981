"""Keep ./outputs and ./logs in the store while the script runs, and flush at the end.

    syncer = Syncer("s3://bucket/runs", run_id, "worker-0", owns_outputs=True, workdir=Path("/app"))
    syncer.start()                      # returns at once; watching starts in the background
    syncer.publish_record(record)       # at every status change (returns at once;
                                        # a final status is uploaded by close(), last)
    report = syncer.close()             # bounded final flush; report.missing = what stayed local

`start()` only makes ./outputs and ./logs and returns: importing fsspec, watchdog and
the store's backend, the first scan and the upload threads come up in a background
thread while the script already runs. The watch is in place before the first scan,
so a file the script wrote in that window is found by the scan or reported by an
event (inotify reports the close of a file opened before the watch began).

Files are uploaded (read in place, see uploader.py) once their writer closed them (inotify's
IN_CLOSE_WRITE) or renamed them into place, or once quiet for `settle` seconds (logs and
TensorBoard event files stay open and grow; files moved in whole). An output that a
writer still holds open waits for the close, or `output_settle` quiet seconds.
Failures are retried with back-off for as long as the run lasts; `close()` keeps
retrying until `flush_timeout` and then writes the list of files that never arrived into
the run record (locally, and in the store if it can still be reached).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..runrecord import (
    is_final,
    local_record_path,
    record_json,
    with_missing_uploads,
    write_record,
)
from .layout import (
    AGENT_DIR,
    JOB_RECORD_KEY,
    SYNCED_DIRS,
    check_name,
    remote_key,
    task_record_key,
)
from .manifest import Manifest, unchanged
from .openfiles import held_for_writing
from .scheduler import Item, Scheduler, backoff
from .store import check_backend, open_store, store_spec
from .uploader import FAILED, GONE, UNSETTLED, UPLOADED, Outcome, Uploader, describe_error
from .walk import walk_files

if TYPE_CHECKING:  # watchdog and fsspec are imported in the background (see start())
    from .store import Store
    from .watcher import FolderWatcher

RECORD = ":run-record:"
"""Run records travel through the same queue as `:run-record:<task>`; no file path
starts with ':'."""
_RECORD_SENT = "record"
_BOOT_WAIT = 30.0
"""Bound on waiting, at start, for a closed syncer of the same run and task whose
uploads were still in flight (so its late writes cannot land after ours)."""
_previous: dict[str, weakref.ref[Syncer]] = {}
_previous_lock = threading.Lock()


@dataclass(frozen=True)
class FlushReport:
    uploaded: int
    """Files uploaded over the syncer's whole life."""
    missing: tuple[dict[str, Any], ...]
    """{path, bytes, error} of every file that is not (known to be) in the store."""
    record_published: bool
    """The latest run record reached the store."""
    failed_attempts: int
    elapsed: float
    """Seconds close() took."""
    uploaded_bytes: int = 0

    @property
    def complete(self) -> bool:
        return not self.missing and self.record_published


class Syncer:
    def __init__(
        self,
        dest_uri: str,
        run_id: str,
        task: str,
        owns_outputs: bool,
        workdir: Path,
        *,
        flush_timeout: float = 60.0,
        log: Callable[[str], Any] = print,
        env: Mapping[str, str] | None = None,
        settle: float = 1.0,
        output_settle: float = 30.0,
        log_snapshot_after: float = 10.0,
        workers: int = 4,
        rescan_every: float = 30.0,
        state_dir: Path | None = None,
    ) -> None:
        self.run_id = check_name("run id", run_id)
        self.task = check_name("task name", task)
        self.owns_outputs = owns_outputs
        self.workdir = Path(workdir).resolve()
        self.flush_timeout = flush_timeout
        self.rescan_every = rescan_every
        self._log = log
        self._dest_uri = dest_uri
        self._env = env
        spec = store_spec(dest_uri, os.environ if env is None else env)  # ConfigError now
        check_backend(spec)
        self._uri = spec.uri
        self.store: Store | None = None
        """Opened by the background start (importing fsspec and the backend takes time)."""
        state = Path(state_dir) if state_dir else self.workdir / "logs" / AGENT_DIR
        # One manifest per (store, run, task): a different destination starts afresh.
        self._tag = hashlib.sha256(f"{dest_uri}\0{run_id}\0{task}".encode()).hexdigest()[:12]
        self.manifest = Manifest(state / f"manifest-{self._tag}.jsonl")
        self._settings = dict(settle=settle, output_settle=output_settle,
                              snapshot_after=log_snapshot_after)
        self._watcher: FolderWatcher | None = None
        self._uploader: Uploader | None = None
        self._booted = threading.Event()
        self._boot_thread: threading.Thread | None = None
        self._boot_error = ""
        self.sched = Scheduler()
        self._n_workers = max(1, workers)
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._close_lock = threading.Lock()
        # Per task (one agent may run several processes of a node, each with a record):
        self._records: dict[str, dict[str, Any]] = {}
        self._versions: dict[str, int] = {}
        self._outgoing: dict[str, tuple[dict[str, Any], int]] = {}
        """The record (and its version) the store should get next; final ones wait."""
        self._published: dict[str, int] = {}
        self._uploaded = 0
        self._uploaded_bytes = 0
        self._failed_attempts = 0
        self._failing: set[str] = set()
        self._deadline: float | None = None
        self._records_only = False
        self._started = False
        self._report: FlushReport | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Watch ./outputs and ./logs and upload in the background. Returns at once
        (the folders exist when it returns); idempotent."""
        with self._lock:
            if self._started or self._report is not None:
                return
            self._started = True
        for top in SYNCED_DIRS:
            (self.workdir / top).mkdir(parents=True, exist_ok=True)
        self._boot_thread = threading.Thread(target=self._boot, args=(True,),
                                             name="tfbuild-sync-start", daemon=True)
        self._boot_thread.start()

    def _boot(self, watch: bool) -> None:
        try:
            self._wait_for_predecessor()
            from .watcher import FolderWatcher  # imports watchdog

            self.store = open_store(self._dest_uri, self._env).child(self.run_id)
            self._watcher = FolderWatcher(self.workdir, self._on_file)
            self._uploader = Uploader(
                self.store, self.manifest, self.workdir,
                lambda rel: remote_key(rel, self.task, self.owns_outputs),
                is_open=self._watcher.is_open, **self._settings,
            )
            if watch:
                self._watcher.start()
            self._scan(first=True)  # files written before we watched (or a restart)
            self._ensure_workers()
            if watch:
                threading.Thread(target=self._rescan_loop, name="tfbuild-sync-rescan",
                                 daemon=True).start()
        except Exception as e:  # the run goes on; close() reports the files as missing
            self._boot_error = describe_error(e)
            self._log(f"tfbuild-agent: cannot start uploading to {self._uri} "
                      f"({self._boot_error}); files stay in {self.workdir}")
        finally:
            self._booted.set()

    def _wait_for_predecessor(self) -> None:
        """A syncer of the same run and task closed earlier in this process (an agent
        restarted in place) may still have an upload in flight that close() gave up
        waiting for; let it end first, or its stale run record could land after ours."""
        with _previous_lock:
            ref = _previous.get(self._tag)
            _previous[self._tag] = weakref.ref(self)
        old = ref() if ref is not None else None
        if old is None or old is self:
            return
        deadline = time.monotonic() + _BOOT_WAIT
        for t in old._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in old._threads):
            self._log(f"tfbuild-agent: an earlier upload to {self._uri} was still running "
                      f"after {_BOOT_WAIT:g}s; starting anyway")

    def publish_record(self, record: dict[str, Any]) -> None:
        """Keep `record` locally and upload it as soon as possible (does not wait).

        The record goes to tasks/<record's task>/run.json; the record of the syncer's own
        task also to the job-level run.json when this task owns outputs. A final status
        (Completed, Failed, Canceled) goes to the store only from close(), after the last
        files: whoever reads a final run.json in the store can rely on every file being
        there, or listed under missing_uploads.
        """
        task = check_name("task name", str(record.get("task", "")))
        held_back = is_final(record) and self._deadline is None
        with self._lock:
            self._records[task] = dict(record)
            version = self._versions[task] = self._versions.get(task, 0) + 1
            if not held_back:
                self._outgoing[task] = (self._records[task], version)
        where = local_record_path(self.workdir, task)
        write_record(record, where)
        if self._report is not None:
            self._log(f"tfbuild-agent: run record ({record.get('status')}) kept at {where}; "
                      "uploads already ended")
        elif not held_back:
            self.sched.mark(RECORD + task, closed=True)

    def close(self) -> FlushReport:
        """Final flush, bounded by flush_timeout. Safe while watching; idempotent."""
        with self._close_lock:
            if self._report is not None:
                return self._report
            t0 = time.monotonic()
            deadline = t0 + self.flush_timeout
            self._deadline = deadline
            if not self._started:
                self._started = True
                self._boot(watch=False)
            elif not self._booted.wait(max(0.0, deadline - time.monotonic())):
                self._log(f"tfbuild-agent: uploads to {self._uri} did not start within "
                          f"{self.flush_timeout:g}s")
            if self._watcher is not None:
                self._watcher.stop(timeout=min(2.0, self.flush_timeout / 4))
            if self._uploader is not None:
                self._scan()
                for rel in self.manifest.paths():  # logs in parts go up whole, once
                    entry = self.manifest.get(rel)
                    if entry is not None and entry.parts and (self.workdir / rel).exists():
                        self.sched.mark(rel, closed=True)
            self.sched.close_all()
            self._ensure_workers()
            with self._lock:
                records = list(self._records.values())
            reserve = min(5.0, 0.2 * self.flush_timeout) if records else 0.0
            self.sched.wait_idle(max(0.0, deadline - reserve - time.monotonic()),
                                 which=lambda rel: not rel.startswith(RECORD))
            missing = self._missing()
            if records:
                # Files still failing now stop competing with the records for the time left.
                self._records_only = True
                self.sched.drop(lambda rel: not rel.startswith(RECORD))
                for record in records:
                    self.publish_record(with_missing_uploads(record, missing))
                self.sched.wait_idle(max(0.0, deadline - time.monotonic()),
                                     which=lambda rel: rel.startswith(RECORD))
            self._stop.set()
            self.sched.stop()
            for t in self._threads:
                t.join(max(0.0, deadline - time.monotonic()))
            with self._lock:
                published = all(self._published.get(t) == v for t, v in self._versions.items())
                report = FlushReport(
                    uploaded=self._uploaded,
                    missing=tuple(missing),
                    record_published=published,
                    failed_attempts=self._failed_attempts,
                    elapsed=time.monotonic() - t0,
                    uploaded_bytes=self._uploaded_bytes,
                )
            self._report = report
            if missing or not published:
                where = local_record_path(self.workdir, self.task)
                self._log(
                    f"tfbuild-agent: {len(missing)} file(s) did not reach {self._uri} "
                    f"within {self.flush_timeout:g}s; they stay in {self.workdir} and are "
                    f"listed under missing_uploads in {where}"
                    + ("" if published else " (the run record did not reach the store either)")
                )
            return report

    # -- internals ---------------------------------------------------------------

    def _on_file(self, rel: str, closed: bool) -> None:
        self.sched.mark(rel, closed=closed, settle=self._uploader.settle_for(rel),
                        max_wait=self._uploader.max_wait_for(rel))

    def _scan(self, first: bool = False) -> None:
        """Queue every file whose size or mtime differs from what the store has.

        `first`: the scan right after the watch began. An output the script wrote in
        the moments before (its close came before the watch) and that no process holds
        open for writing is complete: upload it now instead of after a quiet spell."""
        now = time.time()
        for rel, st in walk_files(self.workdir):
            if not self.sched.holds(rel) and not unchanged(
                self.manifest.get(rel), st.st_size, st.st_mtime_ns
            ):
                closed = (first and rel.startswith("outputs/")
                          and now - st.st_mtime_ns / 1e9 < self._settings["settle"]
                          and held_for_writing(self.workdir / rel) is False)
                self.sched.mark(rel, closed=closed, settle=0.0)

    def _rescan_loop(self) -> None:
        # A safety net for missed events (for example an inotify queue overflow).
        while not self._stop.wait(self.rescan_every):
            if self._deadline is None:
                self._scan()

    def _ensure_workers(self) -> None:
        if self._uploader is None:
            return  # the store could not be opened: nothing can be uploaded
        with self._lock:
            while len(self._threads) < self._n_workers:
                t = threading.Thread(target=self._work, name="tfbuild-upload", daemon=True)
                self._threads.append(t)
                t.start()

    def _work(self) -> None:
        while not self._stop.is_set():
            item = self.sched.take(timeout=0.5)
            if item is None:
                continue
            try:
                outcome = self._do(item)
            except Exception as e:  # never let one bad file end the upload thread
                outcome = Outcome(FAILED, describe_error(e))
            self._settle_outcome(item, outcome)

    def _do(self, item: Item) -> Outcome:
        if item.rel.startswith(RECORD):
            return self._upload_record(item.rel[len(RECORD):])
        if self._records_only:
            return Outcome(GONE)  # already listed as missing: give the time to the records
        assert self._uploader is not None
        return self._uploader.upload(item, now_wall=time.time(), now_mono=time.monotonic(),
                                     final=self._deadline is not None)

    def _upload_record(self, task: str) -> Outcome:
        with self._lock:
            outgoing = self._outgoing.get(task)
        if outgoing is None:
            return Outcome(_RECORD_SENT)
        record, version = outgoing
        data = record_json(record)
        if self._stop.is_set() or self.store is None:
            return Outcome(FAILED, "uploads ended")  # close() gave up: never write late
        try:
            self.store.put_bytes(data, task_record_key(task))
            if self.owns_outputs and task == self.task:
                self.store.put_bytes(data, JOB_RECORD_KEY)
        except Exception as e:
            return Outcome(FAILED, describe_error(e))
        with self._lock:
            self._published[task] = max(self._published.get(task, 0), version)
        return Outcome(_RECORD_SENT)

    def _settle_outcome(self, item: Item, outcome: Outcome) -> None:
        if outcome.kind == FAILED:
            delay = backoff(item.attempts + 1)
            if self._deadline is not None:
                delay = min(delay, max(0.0, self._deadline - time.monotonic()))
            with self._lock:
                self._failed_attempts += 1
                first = not self._failing
                self._failing.add(item.rel)
            if first:  # one line per outage, not one per retry
                self._log(f"tfbuild-agent: uploading {item.rel} to {self._uri} failed "
                          f"({outcome.error}); files stay local and are retried with back-off")
            self.sched.finish(item, retry_in=delay, error=outcome.error)
            return
        if outcome.kind == UNSETTLED:
            self.sched.finish(item, recheck_in=outcome.wait)
            return
        with self._lock:
            if outcome.kind == UPLOADED and not item.rel.startswith(RECORD):
                self._uploaded += 1
                self._uploaded_bytes += outcome.size
            recovered = (outcome.kind in (UPLOADED, _RECORD_SENT)
                         and self._failing == {item.rel})
            self._failing.discard(item.rel)
        if recovered:
            self._log(f"tfbuild-agent: uploads to {self._uri} work again")
        self.sched.finish(item)

    def _missing(self) -> list[dict[str, Any]]:
        """Files not (yet) in the store: still queued, or differing from the manifest."""
        outstanding = self.sched.outstanding()
        out: dict[str, dict[str, Any]] = {}
        for rel, st in walk_files(self.workdir):
            item = outstanding.get(rel)
            # A log whose parts are all in the store is there (readers join the parts),
            # even when putting it up whole did not finish in time.
            if unchanged(self.manifest.get(rel), st.st_size, st.st_mtime_ns):
                continue
            error = item.last_error if item and item.last_error else self._boot_error or (
                f"not uploaded within the {self.flush_timeout:g}s flush bound"
            )
            out[rel] = {"path": rel, "bytes": st.st_size, "error": error}
        return [out[k] for k in sorted(out)]

