"""`tfbuild runs ...`: the run history in a store (the estimator's Run / run.download_file)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from .. import console
from ..run.history import (
    RunView,
    download,
    format_duration,
    list_runs,
    load_run,
    mirror,
    open_runs,
    tail_logs,
    tensorboard_keys,
)
from ..run.launch import UPLOAD_LABEL
from .boundary import handle_errors

STATUSES = ("Queued", "Running", "Completed", "Failed", "Canceled", "Unknown")
_STYLE = {"Completed": "green", "Failed": "red", "Canceled": "yellow", "Running": "cyan"}


def _status(status: str) -> Text:
    return Text(status, style=_STYLE.get(status, ""))


def _when(stamp: str | None) -> str:
    return stamp.replace("T", " ").rsplit(".", 1)[0] + "Z" if stamp else "-"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@click.group()
def runs() -> None:
    """The runs in a store (list, show, download, logs, tensorboard), and the
    detached runs on this engine (wait, cancel).

    \b
    DEST is where the jobs uploaded to (--upload-to / TFBUILD_UPLOAD_TO): a folder
    (./runs, /mnt/runs, file:///mnt/runs; without --upload-to, `tfbuild run` used
    ~/.local/share/tfbuild/runs), s3://bucket/runs, az://container/runs, gs://bucket/runs.
    Credentials and endpoints come from the environment, as for the agent.
    """


@runs.command("list")
@click.argument("dest")
@click.option("--status", type=click.Choice(STATUSES, case_sensitive=False),
              help="Only runs with this status.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the newest N runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
@handle_errors
def list_cmd(dest: str, status: str | None, limit: int | None, as_json: bool) -> None:
    """List the runs under DEST, oldest first."""
    views = list_runs(open_runs(dest))
    if status:
        views = [v for v in views if v.status.lower() == status.lower()]
    if limit:
        views = views[-limit:]
    if as_json:
        click.echo(json.dumps([v.to_dict() for v in views], indent=2))
        return
    if not views:
        console.note(f"no runs in {dest}" + (f" with status {status}" if status else " yet"))
        return
    table = Table("run", "status", "tasks", "started (UTC)", "duration", box=None)
    for v in views:
        table.add_row(Text(v.run_id), _status(v.status), str(len(v.tasks)), _when(v.start_time),
                      format_duration(v.duration))
    console.out.print(table)


def _print_run(v: RunView) -> None:
    console.out.print(Text.assemble((v.run_id, "bold"), "  ", _status(v.status),
                                    f"  started {_when(v.start_time)}"
                                    f"  duration {format_duration(v.duration)}"))
    if v.reason:
        console.out.print(Text(f"reason: {v.reason}"))
    tasks = Table("task", "role", "rank", "status", "exit code", "duration", box=None)
    for t in v.tasks:
        tasks.add_row(Text(t.task), t.role or "-", "-" if t.rank is None else str(t.rank),
                      _status(t.status), "-" if t.exit_code is None else str(t.exit_code),
                      format_duration(t.duration))
    console.out.print(tasks)
    for t in v.tasks:  # below the table: a reason is a sentence, not a column to wrap
        if t.reason:
            console.out.print(Text(f"{t.task}: {t.reason}"))
    files = Table("file", "size", box=None)
    for key in sorted(v.files):
        files.add_row(Text(key), _size(v.files[key]))
    console.out.print(files if v.files else Text("no files uploaded", style="dim"))
    for t in v.tasks:
        for m in t.missing_uploads:
            console.warn(f"{t.task}: {m.get('path')} ({_size(int(m.get('bytes') or 0))}) never "
                         f"reached the store: {m.get('error')}")
        if t.status == "Failed" and t.stderr_tail:
            console.err.print(Text(f"last stderr of {t.task}:", style="dim"))
            console.err.print(t.stderr_tail.rstrip(), markup=False, highlight=False)


@runs.command()
@click.argument("dest")
@click.argument("run_id", metavar="RUN")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@handle_errors
def show(dest: str, run_id: str, as_json: bool) -> None:
    """Status, tasks with exit codes, durations and reasons, and files of RUN."""
    view = load_run(open_runs(dest), run_id)
    if as_json:
        click.echo(json.dumps(view.to_dict(), indent=2))
        return
    _print_run(view)


@runs.command("download")
@click.argument("dest")
@click.argument("run_id", metavar="RUN")
@click.argument("path", required=False, default="")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."), show_default=True, help="Folder to download into.")
@handle_errors
def download_cmd(dest: str, run_id: str, path: str, out_dir: Path) -> None:
    """Download PATH of RUN (a file, a folder such as outputs, or the whole run).

    \b
    tfbuild runs download s3://b/runs run-42 outputs/model.h5 -o .   # ./model.h5
    tfbuild runs download s3://b/runs run-42 outputs -o out           # out/outputs/...
    tfbuild runs download s3://b/runs run-42                          # ./run-42/...
    """
    written = download(open_runs(dest), run_id, path, out_dir)
    for p in written:
        console.result(str(p))
    console.step(f"{len(written)} file(s) from {run_id}")


@runs.command()
@click.argument("dest")
@click.argument("run_id", metavar="RUN")
@click.option("--follow", "-f", is_flag=True,
              help="Keep printing new lines until every task of the run has finished.")
@click.option("--interval", type=float, default=2.0, show_default=True,
              help="Seconds between polls of the store with --follow.")
@click.option("--timeout", type=float, default=24 * 3600.0, show_default=True,
              help="Stop following after this many seconds.")
@handle_errors
def logs(dest: str, run_id: str, follow: bool, interval: float, timeout: float) -> None:
    """Print RUN's text logs (all tasks) from the store; --follow tails a running job."""
    last = [""]

    def emit(key: str, text: str) -> None:
        if key != last[0]:
            click.echo(f"==> {key} <==", err=True)
            last[0] = key
        click.echo(text, nl=False)

    view = tail_logs(open_runs(dest), run_id, emit, follow=follow, interval=interval,
                     timeout=timeout)
    if follow:
        console.step(f"{run_id} ended: {view.status}")


@runs.command()
@click.argument("dest")
@click.argument("run_id", metavar="RUN")
@click.option("--port", type=int, default=6006, show_default=True)
@click.option("--interval", type=float, default=10.0, show_default=True,
              help="Seconds between refreshes of the logs from the store.")
@click.option("--logdir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the downloaded logs here (default: a temporary folder).")
@handle_errors
def tensorboard(dest: str, run_id: str, port: int, interval: float, logdir: Path | None) -> None:
    """Show RUN's TensorBoard logs, refreshed from the store while TensorBoard runs."""
    store = open_runs(dest)
    load_run(store, run_id, with_files=False)
    exe = shutil.which("tensorboard")
    if exe is None:
        console.warn("tensorboard is not installed here (pip install tensorboard); "
                     "these commands do the same by hand:")
        folder = logdir or Path(f"tb-{run_id}")
        click.echo(f"tfbuild runs download {dest} {run_id} logs -o {folder} && "
                   f"tensorboard --logdir {folder / 'logs'} --port {port}")
        return
    work = logdir or Path(tempfile.mkdtemp(prefix=f"tfbuild-tb-{run_id}-"))
    run, have = store.child(run_id), {}

    def refresh() -> None:
        files = run.files()
        mirror(run, tensorboard_keys(files), files, work, have)

    refresh()
    console.step(f"TensorBoard on http://127.0.0.1:{port} (logs in {work}); Ctrl-C stops it")
    proc = subprocess.Popen([exe, "--logdir", str(work), "--port", str(port),
                             "--host", "127.0.0.1"])
    try:
        final = False
        while proc.poll() is None:
            time.sleep(interval)
            if not final:  # after the run ended, one last refresh and TensorBoard stays up
                final = load_run(store, run_id, with_files=False).all_final
                refresh()
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@runs.command()
@click.argument("run_id", metavar="RUN")
@handle_errors
def wait(run_id: str) -> None:
    """Wait for RUN (started with `tfbuild run --detach`) to end, print its logs'
    place, remove its containers, and exit with the job's exit code."""
    from ..run.local import DetachedJob
    from .run import finish

    job = DetachedJob(run_id)
    console.step(f"waiting for run {run_id} ({len(job.containers)} container(s))")
    try:
        code = job.wait()
    finally:
        job.cleanup()
    finish(job.labels.get(UPLOAD_LABEL), run_id, job.job, code)


@runs.command()
@click.argument("run_id", metavar="RUN")
@handle_errors
def cancel(run_id: str) -> None:
    """Stop RUN (started with `tfbuild run --detach`): SIGTERM to every container, the
    agents' grace period and final upload, SIGKILL after the stop timeout."""
    from ..run.local import DetachedJob
    from .run import finish

    job = DetachedJob(run_id)
    console.step(f"stopping run {run_id}: {len(job.containers)} container(s), at most "
                 f"{job.stop_timeout} s")
    try:
        code = job.cancel()
    finally:
        job.cleanup()
    # The job's code says how the tasks ended; the cancel itself succeeded.
    finish(job.labels.get(UPLOAD_LABEL), run_id, job.job, code, exit_with_code=False)
