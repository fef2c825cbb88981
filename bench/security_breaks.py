"""Do the channel security tests fail when the handshake is broken? Break it and see.

    nice -n 19 .venv/bin/python bench/security_breaks.py

Each BREAK below is a realistic security bug put into a copy of the tree (the worktree is
never touched); the security tests then run against that copy. A break that no test
notices, or a test in tests/unit/test_channel_security.py that no break makes fail,
is reported and the script exits 1. Not part of CI (a few minutes): run it after
changing the handshake, the MACs or these tests. The table it prints is also written to
docs/mutation/security-breaks.md, which docs/mutation-report.md includes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutation import REPO, _package_copy

OUT = REPO / "docs" / "mutation" / "security-breaks.md"

WIRE = "tfbuild_agent/control/wire.py"
HANDSHAKE = "tfbuild_agent/control/handshake.py"
SECURITY = "tests/unit/test_channel_security.py"
# The wrong-token tests that were there before issue 19, run against the same breaks.
EXISTING = [
    "tests/unit/test_rendezvous.py::test_a_wrong_token_is_refused_on_both_sides",
    "tests/unit/test_rendezvous.py::test_a_server_that_cannot_prove_the_token_is_not_trusted",
    "tests/unit/test_mpi_channel.py::test_wrong_token_is_refused_and_logged",
    "tests/unit/test_control_auth.py",
]

# name -> (file, exact text, replacement)
BREAKS: dict[str, tuple[str, str, str]] = {
    "the join MAC skips the join's fields": (
        WIRE, 'body = json.dumps(fields, sort_keys=True, separators=(",", ":"))', 'body = ""'),
    "the join MAC skips the server's nonce": (
        WIRE, 'msg = f"{PROTOCOL} join\\n{server_nonce}\\n{body}".encode()',
        'msg = f"{PROTOCOL} join\\n\\n{body}".encode()'),
    "the server never checks the join MAC": (
        HANDSHAKE, 'if not macs_equal(message.get("mac"), join_mac(token, server_nonce, fields)):',
        "if False:"),
    "the client skips the server's proof": (
        HANDSHAKE, 'return answer.get("type") == "accepted" and macs_equal(',
        'return answer.get("type") == "accepted" or macs_equal('),
    "the server's proof skips the nonces": (
        WIRE, 'msg = f"{PROTOCOL} accept\\n{server_nonce}\\n{client_nonce}".encode()',
        'msg = f"{PROTOCOL} accept".encode()'),
    "sealed messages carry no sequence check": (
        WIRE, "if seq != self._received + 1:", "if False:"),
    "the message MAC covers only the sequence number": (
        WIRE, 'text = json.dumps(body, sort_keys=True, separators=(",", ":"))',
        'text = str(body.get("seq"))'),
}


def _failures(work: Path, env: dict[str, str]) -> tuple[set[str], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider",
         "--timeout=60", SECURITY, *EXISTING],
        cwd=work, env=env, capture_output=True, text=True,
    )
    failed = set(re.findall(r"^FAILED (\S+)", proc.stdout, re.M))
    return failed, proc.stdout


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="tfbuild-breaks-") as tmp:
        work = Path(tmp)
        _package_copy(work)
        env = dict(os.environ, PYTHONPATH=str(work), PYTHONDONTWRITEBYTECODE="1")
        failed, out = _failures(work, env)
        if failed or " passed" not in out:
            print(f"the security tests fail on the unbroken tree:\n{out[-3000:]}")
            return 1
        tests = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "--collect-only", SECURITY],
            cwd=work, env=env, capture_output=True, text=True,
        ).stdout
        caught: dict[str, set[str]] = {t: set() for t in re.findall(r"^(\S+::\S+)$", tests, re.M)}
        ok = True
        table = ["| break | tests that fail |", "| --- | --- |"]
        print("\n".join(table))
        for name, (path, old, new) in BREAKS.items():
            target = work / path
            original = target.read_text()
            if original.count(old) != 1:
                print(f"| {name} | cannot apply: the text to break is not in {path} |")
                ok = False
                continue
            target.write_text(original.replace(old, new))
            try:
                failed, _ = _failures(work, env)
            finally:
                target.write_text(original)
            for t in failed:
                caught.setdefault(t, set()).add(name)
            shown = ", ".join(sorted(t.split("::", 1)[1] for t in failed)) or "**none**"
            table.append(f"| {name} | {len(failed)}: {shown} |")
            print(table[-1], flush=True)
            ok &= bool(failed)
        missed = [t for t, by in caught.items() if t.startswith(SECURITY) and not by]
        table.append("")
        table += [f"Not failed by any break: `{t}`" for t in missed] or [
            f"Each of the {sum(t.startswith(SECURITY) for t in caught)} tests in {SECURITY} "
            "fails under at least one break."]
        print("\n".join(table[-len(missed) or -1:]))
        OUT.write_text(f"Run on {time.strftime('%Y-%m-%d')} ({len(BREAKS)} breaks).\n\n"
                       + "\n".join(table) + "\n")
        return 0 if ok and not missed else 1


if __name__ == "__main__":
    sys.exit(main())
