"""Stream a child's stdout/stderr to the container log and to ./logs/<task>.log."""

from __future__ import annotations

import sys
import threading
from collections import deque
from pathlib import Path
from typing import IO


class OutputPump:
    """Copies a child's two pipes line by line; keeps the last stderr lines."""

    def __init__(self, task: str, log_path: Path, prefix: bool, tail_lines: int = 30) -> None:
        self.task = task
        self.prefix = f"[{task}] " if prefix else ""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab", buffering=0)
        self._lock = threading.Lock()
        self.stderr_tail: deque[str] = deque(maxlen=tail_lines)
        self._threads: list[threading.Thread] = []

    def attach(self, stdout: IO[bytes], stderr: IO[bytes]) -> None:
        for pipe, sink, keep in ((stdout, sys.stdout, False), (stderr, sys.stderr, True)):
            t = threading.Thread(target=self._pump, args=(pipe, sink, keep), daemon=True)
            t.start()
            self._threads.append(t)

    def _pump(self, pipe: IO[bytes], sink: IO[str], keep_tail: bool) -> None:
        prefix = self.prefix.encode()
        for raw in iter(pipe.readline, b""):
            with self._lock:
                self._log.write(raw)
                sink.buffer.write(prefix + raw)
                sink.buffer.flush()
            if keep_tail:
                self.stderr_tail.append(raw.decode(errors="replace").rstrip("\n"))
        pipe.close()

    def close(self, timeout: float = 5.0) -> None:
        for t in self._threads:
            t.join(timeout)
        self._log.close()
