"""The build log for people, from recorded classic-builder streams (pure functions):
tests/golden/buildlog/<case>_stream.txt -> <case>.expected.txt (UPDATE_GOLDEN=1 rewrites).

In a stream file `@T` sets the clock to T seconds and `!MESSAGE` is the engine's error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tfbuild.engine.build import build_log_dir, new_log_path
from tfbuild.engine.buildlog import (
    BuildLog,
    collapse_repeats,
    failure_hint,
    failure_text,
    folded_pip,
    format_seconds,
    meaningful,
    push_line,
    step_label,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "buildlog"
LOG_PATH = "/home/u/.local/state/tfbuild/builds/tfbuild-keras-digits-latest-20261201-050000.log"


def replay(stream: str) -> str:
    log, now, out = BuildLog(), 0.0, []
    for line in stream.splitlines():
        if line.startswith("@"):
            now = float(line[1:])
        elif line.startswith("!"):
            failure = log.fail(line[1:], now)
            out.append(f"error: {failure_text(failure, LOG_PATH)}")
            out += ["last lines of the failing step:", *failure.tail]
            return "\n".join(out) + "\n"
        else:
            out += log.feed(line + "\n", now)
            if log.current and line.startswith("Collecting"):
                out.append(f"(live) {log.live_line(now + 0.5)}")
    out += log.finish(now)
    out.append(f"steps {log.total_steps()}, cached {log.cached_steps()}")
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("case", ["classic", "tls_failure"])
def test_golden_build_log(case):
    got = replay((GOLDEN / f"{case}_stream.txt").read_text())
    expected = GOLDEN / f"{case}.expected.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        expected.write_text(got)
    assert got == expected.read_text()


def test_step_label_drops_env_prefixes_and_venv_paths():
    label = step_label("RUN PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CONFIG_FILE=/tmp/p/pip.conf "
                       "/opt/tfbuild/venv/bin/pip install   --no-cache-dir --no-compile -c "
                       "/opt/tfbuild/venv/tfbuild-constraints.txt x", width=200)
    assert label == "RUN pip install x"
    assert step_label("ENV A=1 B=2") == "ENV A=1 B=2"
    assert step_label("RUN " + "a" * 100, width=20) == "RUN " + "a" * 15 + "…"


def test_noise_is_not_meaningful():
    for line in (" ---> Running in 0d3c", "Removing intermediate container 0d3c",
                 "rehash: warning: skipping x.pem", "\x1b[91m━━━━ 1.2/273.8 MB 6 MB/s\x1b[0m",
                 "   ", "Requirement already satisfied: six"):
        assert not meaningful(line), line
    assert meaningful("ERROR: No matching distribution found for x")


@pytest.mark.parametrize(("lines", "expected"), [
    (["SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] ..."
      "self-signed certificate in certificate chain",
      "ERROR: No matching distribution found for tensorflow-cpu==2.21.0"], "--trust-host-ca"),
    (["ERROR: No matching distribution found for tfbuild-nope==1.0"],
     "pip index versions tfbuild-nope==1.0"),
    (["OSError: [Errno 28] No space left on device: '/opt/tfbuild/venv/x'"], "disk is full"),
    (["E: Unable to locate package libfoo"], "Debian has no package libfoo"),
    (["ERROR: Cannot install numpy==1.26.4 because these package versions have conflicting "
      "dependencies.", "ERROR: ResolutionImpossible: for help visit https://pip.pypa.io"],
     "may not replace them"),
    (["some other failure"], None),
])
def test_failure_hints(lines, expected):
    hint = failure_hint(lines)
    assert (hint is None) if expected is None else (expected in hint)


def test_repeated_lines_collapse():
    lines = [f"WARNING: Retrying (Retry(total={n})) after SSLError" for n in (2, 1, 0)]
    assert collapse_repeats(["a", *lines, "b"]) == [
        "a", "WARNING: Retrying (Retry(total=0)) after SSLError  (repeated 3 times)", "b"]


def test_pip_output_folds_to_what_it_installed():
    assert folded_pip("Successfully installed a-1 b-2") == "installed 2 packages: a-1 b-2"
    many = " ".join(f"p{i}-1" for i in range(9))
    assert folded_pip(f"Successfully installed {many}").endswith("p5-1 (+3 more)")
    assert folded_pip("Collecting x") is None


def test_durations_and_push_lines():
    assert format_seconds(4.25) == "4.2 s" and format_seconds(83.0) == "1 min 23.0 s"
    assert push_line("3f2a9c1b0d4e", "Pushing", 5_000_000, 12_300_000) == \
        "3f2a9c1b0d4e  Pushing  5.0 MB / 12.3 MB"
    assert push_line("3f2a9c1b0d4e", "Pushed", 12_300_000, 12_300_000) == \
        "3f2a9c1b0d4e  Pushed  12.3 MB"
    assert push_line("3f2a9c1b0d4e", "Layer already exists", 0, 0) == \
        "3f2a9c1b0d4e  Layer already exists"


def test_raw_logs_go_to_the_state_dir(tmp_path):
    assert build_log_dir({}, tmp_path) == tmp_path / ".local/state/tfbuild/builds"
    assert build_log_dir({"XDG_STATE_HOME": "/s"}, tmp_path) == Path("/s/tfbuild/builds")


def test_only_the_latest_raw_logs_are_kept(tmp_path):
    for i in range(5):
        (tmp_path / f"old-{i}.log").write_text("x")
        os.utime(tmp_path / f"old-{i}.log", (i, i))
    path = new_log_path("localhost:5000/team/train:1", tmp_path, keep=3)
    assert path.name.startswith("localhost-5000-team-train-1-")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old-3.log", "old-4.log"]
