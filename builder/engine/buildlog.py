"""The classic builder's stream, folded into a log for people: one line per step with
its duration or `cached`, pip's chatter reduced to what it installed, a live line for
the running step, and on failure the step, its last meaningful lines and a hint.

Pure: the caller feeds text and the current time and prints what comes back
(`engine/build.py` does the I/O). Golden-tested in tests/unit/test_buildlog.py."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# `VAR=value ` prefixes and absolute paths of the venvs' tools say nothing to a reader.
ENV_PREFIX_RE = re.compile(r"(?<![\w/-])[A-Z_][A-Z0-9_]*=\S+ +")
TOOL_PATH_RE = re.compile(r"/(?:opt|tmp)/[\w./-]*/bin/(?=\w)")
# Set-up commands and flags every tfbuild step repeats: the label keeps what differs.
BOILERPLATE_RE = re.compile(
    r"python3? -m venv \S+ && |python3? -c '[^']*' && |--no-cache-dir |--no-compile "
    r"|-c \S+/tfbuild-constraints\.txt "
)
COMMAND_FAILED_RE = re.compile(r"^The command '.*' returned a non-zero code: (\d+)$", re.S)
# Lines that carry no information for a reader (they stay in the raw log file).
NOISE = (
    re.compile(r"^\s*---> "),
    re.compile(r"^\s*Removing intermediate container"),
    re.compile(r"^rehash: warning"),
    re.compile(r"^\s*[━╸╺\s]+[\d.]+/[\d.]+ [kMG]?B"),  # pip's progress bars
    re.compile(r"^\s*\|[█ ]*\|"),
    re.compile(r"^debconf: "),
    re.compile(r"^\s*Using cached "),
    re.compile(r"^\s*Requirement already satisfied"),
)
PIP_ACTIVITY = re.compile(
    r"^\s*(Collecting \S+|Downloading \S+(?: \([^)]*\))?|Installing collected packages|"
    r"Building wheels? for \S+|Get:\d+ \S+ \S+ \S+|Unpacking \S+|Setting up \S+)"
)
PIP_INSTALLED = re.compile(r"^\s*Successfully installed (.+)$")
LABEL_WIDTH = 64
TAIL_LINES = 15

HINTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"CERTIFICATE_VERIFY_FAILED|certificate verify failed|SSLCertVerification"
                   r"|self[- ]signed certificate", re.I),
        "TLS to the package index failed certificate verification: this network intercepts "
        "TLS or the index uses a private CA. Build with --trust-host-ca (trust this machine's "
        "CA bundle) or --ca-cert FILE.pem.",
    ),
    (
        re.compile(r"No space left on device|ENOSPC|disk quota exceeded", re.I),
        "the Docker engine's disk is full: free space (`docker image prune`, `docker builder "
        "prune`) or move its data-root to a larger disk, then build again.",
    ),
    (
        re.compile(r"ResolutionImpossible|conflicting dependencies"),
        "a pip package asks for versions that conflict with the image's pins (TensorFlow and "
        "its dependencies, in /opt/tfbuild/venv/tfbuild-constraints.txt): user packages may "
        "not replace them; pick versions compatible with the TensorFlow release "
        "(--tf-version) instead.",
    ),
    (
        re.compile(r"No matching distribution found for (\S+)|Could not find a version that "
                   r"satisfies the requirement (\S+)"),
        "pip found no release of {0} for this image's Python and platform: check the name and "
        "version (`pip index versions {0}`), --python-version, and --pip-index-url.",
    ),
    (
        re.compile(r"Unable to locate package (\S+)"),
        "Debian has no package {0}: check the name with `apt-cache search` (the base is "
        "Debian {1}).",
    ),
)


def clean(line: str) -> str:
    return ANSI_RE.sub("", line).rstrip()


def meaningful(line: str) -> bool:
    text = clean(line)
    return bool(text.strip()) and not any(p.match(text) for p in NOISE)


def step_label(instruction: str, width: int = LABEL_WIDTH) -> str:
    """A Dockerfile instruction shortened for one line: whitespace collapsed; in RUN
    steps `VAR=x` prefixes, the venvs' bin paths and tfbuild's repeated set-up dropped;
    cut at `width` with an ellipsis."""
    text = " ".join(instruction.split())
    if text.startswith("RUN "):
        text = BOILERPLATE_RE.sub("", TOOL_PATH_RE.sub("", ENV_PREFIX_RE.sub("", text)))
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {seconds % 60:04.1f} s"


def failure_hint(lines: list[str], suite: str = "bookworm") -> str | None:
    """A hint for a known cause found in the failing step's output, else None."""
    text = "\n".join(clean(line) for line in lines)
    for pattern, hint in HINTS:
        m = pattern.search(text)
        if m:
            groups = [g for g in m.groups() if g] or [""]
            return hint.format(groups[0].rstrip(".,;"), suite)
    return None


def collapse_repeats(lines: list[str]) -> list[str]:
    """Consecutive lines that differ only in numbers (pip's `Retrying (total=4)...`,
    `total=3`, ...) shown once, the last of them, with how often it came."""
    out: list[str] = []
    shape = re.compile(r"\d+")
    count = 0
    for i, line in enumerate(lines):
        count += 1
        last = i + 1 == len(lines) or shape.sub("#", lines[i + 1]) != shape.sub("#", line)
        if last:
            out.append(line if count == 1 else f"{line}  (repeated {count} times)")
            count = 0
    return out


def folded_pip(line: str) -> str | None:
    """`Successfully installed a-1 b-2 ...` -> `installed 2 packages: a-1 b-2`."""
    m = PIP_INSTALLED.match(clean(line))
    if not m:
        return None
    names = m.group(1).split()
    shown = " ".join(names[:6]) + (f" (+{len(names) - 6} more)" if len(names) > 6 else "")
    return f"installed {len(names)} package{'s' * (len(names) != 1)}: {shown}"


@dataclass
class Step:
    index: int
    total: int
    instruction: str
    started: float
    ended: float | None = None
    cached: bool = False
    output: list[str] = field(default_factory=list)
    activity: str = ""

    @property
    def is_from(self) -> bool:
        return self.instruction.startswith("FROM ")

    def seconds(self, now: float) -> float:
        return (self.ended if self.ended is not None else now) - self.started

    def head(self) -> str:
        width = len(str(self.total))
        return f"[{self.index:>{width}}/{self.total}] {step_label(self.instruction)}"

    def done_line(self) -> str:
        if self.is_from:
            return self.head()
        status = "cached" if self.cached else format_seconds(self.seconds(self.started))
        return f"{self.head():<{LABEL_WIDTH + 8}} {status:>12}"

    def live_line(self, now: float) -> str:
        activity = f" · {self.activity}" if self.activity else ""
        return f"{self.head()}  {format_seconds(self.seconds(now))}{activity}"

    def tail(self, n: int = TAIL_LINES) -> list[str]:
        return collapse_repeats([clean(line) for line in self.output if meaningful(line)])[-n:]


@dataclass
class Failure:
    step: Step | None
    message: str
    tail: list[str]
    hint: str | None


class BuildLog:
    """Feed the builder's `stream` text as it comes; get back the lines to print."""

    def __init__(self, plain_details: bool = True) -> None:
        self.steps: list[Step] = []
        self.plain_details = plain_details

    @property
    def current(self) -> Step | None:
        return self.steps[-1] if self.steps and self.steps[-1].ended is None else None

    def feed(self, text: str, now: float) -> list[str]:
        out: list[str] = []
        for line in text.splitlines():
            m = STEP_RE.match(clean(line))
            if m:
                out += self._close(now)
                self.steps.append(Step(int(m.group(1)), int(m.group(2)), m.group(3), now))
                continue
            step = self.current
            if step is None:
                continue
            if "Using cache" in line:
                step.cached = True
                continue
            step.output.append(line)
            activity = PIP_ACTIVITY.match(clean(line))
            if activity:
                step.activity = activity.group(1)
            folded = folded_pip(line)
            if folded:
                step.activity = folded
        return out

    def _close(self, now: float) -> list[str]:
        step = self.current
        if step is None:
            return []
        step.ended = now
        lines = [step.done_line()]
        if self.plain_details:
            lines += [f"{'':>{len(str(step.total)) * 2 + 3}} {f}" for f in
                      filter(None, map(folded_pip, step.output))]
        return lines

    def finish(self, now: float) -> list[str]:
        return self._close(now)

    def live_line(self, now: float) -> str:
        step = self.current
        return step.live_line(now) if step else "starting the build"

    def fail(self, message: str, now: float, suite: str = "bookworm") -> Failure:
        step = self.current or (self.steps[-1] if self.steps else None)
        if step is not None and step.ended is None:
            step.ended = now
        output = (step.output if step else []) + [message]
        return Failure(step, message.strip(), step.tail() if step else [],
                       failure_hint(output, suite))

    def cached_steps(self) -> int:
        return sum(s.cached for s in self.steps)

    def total_steps(self) -> int:
        return self.steps[-1].total if self.steps else 0


def failure_text(failure: Failure, log_path: str) -> str:
    """The error message: which step, after how long, why (a hint), where the full log is."""
    step = failure.step
    where = (f"step {step.index}/{step.total} ({step_label(step.instruction)}) failed after "
             f"{format_seconds(step.seconds(step.started))}" if step else "the build failed")
    reason = clean(failure.message.splitlines()[-1]) if failure.message else ""
    exited = COMMAND_FAILED_RE.match(clean(failure.message))
    if exited:
        reason = f"its command exited with code {exited.group(1)}"
    lines = [f"{where}: {reason}" if reason else where]
    if failure.hint:
        lines.append(f"hint: {failure.hint}")
    lines.append(f"full log: {log_path}")
    return "\n".join(lines)


def push_line(layer: str, state: str, current: int, total: int) -> str:
    """One layer of a push, as plain text: `3f2a9c1b0d4e  Pushed  12.3 MB`."""
    size = human_bytes(total or current)
    if state == "Pushing" and total:
        return f"{layer:<12}  Pushing  {human_bytes(current)} / {size}"
    return f"{layer:<12}  {state}" + (f"  {size}" if (total or current) else "")


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
