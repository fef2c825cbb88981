"""Mutation testing of the pure core with cosmic-ray: which small faults do the unit tests catch?

    pip install -e '.[mutation]'
    nice -n 19 .venv/bin/python bench/mutation.py                     # every core module
    nice -n 19 .venv/bin/python bench/mutation.py control/wire hostlist  # some modules
    .venv/bin/python bench/mutation.py --report                         # re-render the report

Not part of CI: each mutant is one pytest run (about an hour for the whole core on 2 cores).
Each module is mutated with only its own unit tests (MODULES below), in a copy of the tree
made when the run starts (so editing the worktree meanwhile changes nothing), and its
results are stored in docs/mutation/results.json under `--label` ("after" by default;
"before" is `--label before --at afb63ef`, the tree before issue 19's tests).
docs/mutation-report.md is rendered from that file: kill rate per module before and
after, every survivor with its diff, and the survivors that are equivalent mutants
(EQUIVALENT below) with the reason.

The operators are the faults a person makes: a flipped or off-by-one comparison, `+`/`-`
swapped, a negated or dropped condition, True/False swapped, `and`/`or` swapped, a
changed constant, a loop that never runs, `break`/`continue` swapped, an exception type
changed. cosmic-ray's other operators (every binary operator into every other, variable
replacement) mostly make mutants that crash at once or duplicate these, at 10x the time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "docs" / "mutation" / "results.json"
REPORT = REPO / "docs" / "mutation-report.md"

U = "tests/unit/"
# Module (path under builder/ or entrypoint/, without .py) -> the unit tests that cover it.
# Order: the modules issue 19 found survivors in come first.
MODULES: dict[str, list[str]] = {
    "entrypoint/control/wire": [U + "test_wire_handshake.py", U + "test_control_auth.py"],
    "entrypoint/control/handshake": [U + "test_wire_handshake.py", U + "test_control_auth.py"],
    "entrypoint/discovery/chain": [U + "test_discovery_chain.py"],
    "entrypoint/sync/uploader": [U + "test_sync_uploader.py", U + "test_sync_syncer.py"],
    "entrypoint/sync/manifest": [U + "test_sync_manifest.py", U + "test_sync_uploader.py"],
    "builder/image/render": [U + "test_render.py"],
    "entrypoint/hostlist": [U + "test_discovery_hostlist.py", U + "test_discovery_mpi.py"],
    "entrypoint/launch/command": [U + "test_command.py"],
    "entrypoint/topology": [U + "test_topology.py"],
    "entrypoint/sync/layout": [U + "test_sync_layout.py"],
    "entrypoint/control/state": [U + "test_control_state.py"],
    "entrypoint/launch/mpi/command": [U + "test_mpi_command.py"],
    "entrypoint/discovery/explicit": [U + "test_discovery_explicit.py"],
    "entrypoint/discovery/tf_config": [U + "test_discovery_tf_config.py"],
    "entrypoint/discovery/mpi": [U + "test_discovery_mpi.py"],
    "entrypoint/discovery/slurm": [U + "test_discovery_slurm.py"],
    "entrypoint/discovery/kubernetes": [U + "test_discovery_kubernetes.py"],
    "entrypoint/discovery/dns": [U + "test_discovery_dns.py"],
    "builder/spec/entry": [U + "test_spec_validation.py", U + "test_spec.py"],
    "builder/spec/runtime": [U + "test_spec_validation.py", U + "test_spec.py"],
    "builder/spec/distribution": [U + "test_spec_validation.py", U + "test_spec.py"],
    "builder/spec/packages": [U + "test_spec_packages.py", U + "test_spec_validation.py"],
    "builder/spec/registries": [U + "test_spec_validation.py", U + "test_spec.py"],
    "builder/spec/fields": [U + "test_spec_validation.py", U + "test_spec.py"],
}

OPERATORS = (
    r"core/ReplaceComparisonOperator_(Eq_NotEq|NotEq_Eq|Lt_LtE|LtE_Lt|Gt_GtE|GtE_Gt"
    r"|Is_IsNot|IsNot_Is)$",
    r"core/ReplaceBinaryOperator_(Add_Sub|Sub_Add|Mul_Add|FloorDiv_Mul|Mod_FloorDiv)$",
    r"core/ReplaceUnaryOperator_(Delete_Not|USub_UAdd)$",
    r"core/(AddNot|ReplaceTrueWithFalse|ReplaceFalseWithTrue|ReplaceAndWithOr"
    r"|ReplaceOrWithAnd|ReplaceBreakWithContinue|ReplaceContinueWithBreak|NumberReplacer"
    r"|ZeroIterationForLoop|ExceptionReplacer)$",
)

# Survivors no test should catch, per module: (regex the mutated line must match, why[,
# line number when the same text is mutated elsewhere with another effect]).
# "Equivalent" in the strict sense (same behaviour), or a change nobody can observe
# (a buffer size, 1 ms in a poll); each reason says which.
EQUIVALENT: dict[str, list[tuple]] = {
    "entrypoint/control/wire": [
        (r"self\._answer_pending = True$",
         "equivalent: __init__'s value is never read; secure() sets it before any check",
         168),
        (r"data = self\.sock\.recv\( 6553[57]\)$",
         "equivalent: the read size only changes how many reads a long line takes"),
        (r"poller\.poll\(max\(timeout, 0\.0\) \* (1001|999)\)",
         "not observable: 1 ms more or less in a poll"),
        (r"\{line\[: (59|61)\]!r\}",
         "cosmetic: how many bytes of a bad line the error quotes"),
    ],
    "entrypoint/sync/uploader": [
        (r"^SMALL = ",
         "not observable: the size where whole-file reads switch to streaming; both upload "
         "the same bytes"),
        (r"^FRESH_NS = (20000001|19999999)$", "not observable: 1 ns"),
        (r"@dataclass\(frozen=False\)",
         "equivalent: no caller assigns to an Outcome; frozen only guards misuse"),
        (r"^wait: float = -?1\.0$",
         "equivalent: the default is only seen on outcomes other than UNSETTLED, whose wait "
         "nobody reads (the syncer reads it for UNSETTLED, which always sets it)"),
        (r"time\.sleep\(min\(wait, FRESH_NS\) / (1000000001|999999999)\.0\)",
         "not observable: one part per billion of a 20 ms sleep"),
        (r"entry\.parts (> -1|>= 0) and size >= entry\.size",
         "equivalent: a log stored whole has tail '' and tail_digest never returns ''"),
        (r"^digest=True\)$",
         "equivalent: the digest of a log part is computed and dropped (parts keep '')"),
        (r"^while done <= size:$",
         "equivalent: one more pread at the end returns b'' and the loop stops"),
        (r"os\.pread\(fd, size \+ done, done\)",
         "equivalent: pread stops at the end of the file; a file that grew fails intact()"),
        (r"tries: int = [46]\)",
         "not observable: how many 20 ms checks a file still being written gets"),
        (r"wait = FRESH_NS (\+ \(|- \(time\.time_ns\(\) \+)",
         "not observable: the settle check sleeps a tick more on a file that did not change"),
        (r"^if wait (<= -?1|< 0):$", "not observable: 1 ns"),
        (r"^if size < SMALL:$",
         "not observable: a file of exactly SMALL bytes is streamed instead of read whole"),
        (r"^if not _same\(again, st\):$",
         "not observable: a file that changed during the settle check still fails the stat "
         "comparison right after it is opened"),
        (r"^final: bool = True\) -> Outcome:$",
         "equivalent: the only caller (Syncer) always passes `final`"),
        (r"^size: int = -?1$",
         "equivalent: size is read only for UPLOADED outcomes, which always set it"),
    ],
    "entrypoint/launch/command": [
        (r"module = entry\[ 2:\]\.strip\(\)",
         "equivalent: the entry starts with '-m ', so the extra space is stripped anyway"),
        (r'token\.split\("=", 2\)\[0\]', "equivalent: only the part before the first '=' is used"),
        (r"_is_flag\(groups\[-1\]\[ -1\]\)",
         "equivalent: only a group's first token can be a flag (flags start new groups), so "
         "when the first token is a `--k=v` flag it is also the last"),
    ],
    "entrypoint/hostlist": [
        (r'raw\.split\("#", 2\)\[0\]', "equivalent: only the part before the first '#' is used"),
    ],
    "entrypoint/sync/manifest": [
        (r"@dataclass\(frozen=False\)",
         "equivalent: no caller assigns to an Entry; frozen only guards misuse"),
        (r"sort_keys=False\) \+ ", "equivalent: lines are read back by key, not by position"),
        (r"^uploaded_at: float = -?1\.0$",
         "not observable: the upload time is for diagnostics; every reader passes it"),
    ],
    "builder/image/render": [
        (r"@dataclass\(frozen=False\)",
         "equivalent: no caller assigns to the layers; frozen only guards misuse"),
        (r"^lstrip_blocks=False,$",
         "equivalent for the templates as they are: no template indents a block tag "
         "(the goldens would show it)"),
    ],
    "entrypoint/topology": [
        (r"@dataclass\(frozen=False\)",
         "equivalent: nothing assigns to a Task, Plan or placed task; frozen only guards misuse"),
        (r"^local_(rank|world): int = -?\d$",
         "equivalent: _with_ports sets local_rank and local_world on every placed task"),
        (r"range\(counts\.get\(role, -1\)\)",
         "equivalent: range() of 0 or of -1 is empty alike"),
        (r'nodes\["evaluator"\]\[ -1\]', "equivalent: there is one evaluator, so [0] is [-1]"),
        (r"if found <= job\.node_count",
         "equivalent: reached only when found != node_count, where < and <= agree"),
    ],
    "entrypoint/launch/mpi/command": [
        (r"@dataclass\(frozen=False\)",
         "equivalent: nothing assigns to MpiSettings; frozen only guards misuse"),
        (r"^launch_timeout = - ?[02]\.0$",
         "equivalent: a timeout that is not a number only has to be refused; any value "
         "of 0 or less is"),
        (r"if -1 <= node < len\(hosts\)",
         "equivalent: the rank is read by a regex of digits, so its node is never negative"),
        (r"lost\.group\( 0\)",
         "equivalent: the whole pattern is one group, so group 0 is group 1"),
    ],
    "builder/spec/entry": [
        (r"limit: int = (2001|1999)\)|^seen = -?1$|^if seen >= limit:$",
         "not observable: the typo search looks at 2000 files give or take one"),
        (r'normal == "\.\." and normal\.startswith',
         "equivalent: resolving the path against the source directory refuses ../ too"),
    ],
    "entrypoint/discovery/kubernetes": [
        (r"found\[ -1\] if found else 0",
         "equivalent: reached only with one match, so [0] is [-1]"),
        (r'line\.split\("#", 2\)\[0\]|split\("\.", 2\)\[0\]',
         "equivalent: only the part before the first separator is used"),
        (r"for name in fields\[ 0:\]:",
         "equivalent: the first field of an /etc/hosts line is an address, never `hostname.`"),
    ],
    "entrypoint/discovery/mpi": [
        (r"return found\[ -1\]$", "equivalent: reached only with one match, so [0] is [-1]"),
    ],
    "entrypoint/discovery/slurm": [
        (r"return found\[ -1\]$", "equivalent: reached only with one match, so [0] is [-1]"),
    ],
    "entrypoint/discovery/explicit": [
        (r"return found\[ -1\]$", "equivalent: reached only with one match, so [0] is [-1]"),
    ],
    "entrypoint/discovery/dns": [
        (r"^MAX_DELAY = [46]\.0$|^PROGRESS_EVERY = (29|31)\.0",
         "not observable: a tuning constant moved by one second (the tests check the back-off "
         "and the progress lines, not these values)"),
        (r"if len\(found\) >= expected:",
         "equivalent: the timeout message is never built with all peers found"),
        (r"now - last_log > PROGRESS_EVERY",
         "not observable: the clock lands exactly on the 30 s mark with probability 0"),
        (r"node_rank=mine\[ -1\]", "equivalent: reached only with one match"),
        (r"last_count, last_log = - 2,",
         "equivalent: any count no resolution can give makes the first line print"),
    ],
    "builder/spec/distribution": [
        (r'^"node_count": [02],$',
         "equivalent: node_count applies to every backend, so its default is never compared"),
        (r"return names\[ -1\] if len\(names\) == 1",
         "equivalent: with one name, [0] is [-1]"),
    ],
    "builder/spec/fields": [
        (r"get_close_matches\(word, list\(choices\), n= 2|close\[ -1\]",
         "equivalent: only the best match is shown"),
    ],
    "entrypoint/control/handshake": [
        (r"@dataclass\(frozen=False\)",
         "equivalent: no caller assigns to a Hello or Checked; frozen only guards misuse"),
    ],
}


# What the survivors that are left in a module have in common, shown above them.
LEFT: dict[str, str] = {
    "entrypoint/sync/uploader": (
        "The survivors are in the checks that a file did not change while it was being "
        "read (`_identical`, `_grown_only`, the short-read loop, the intact() check after a "
        "whole read), in os.open failing with an error other than 'not found', and in "
        "hashing big files for remote stores (`digest=not self.store.local`). Each needs a "
        "writer racing the upload byte for byte, an unreadable file as root, or a remote "
        "store: the unit tier has none of these. A deterministic hook (as used for the race "
        "between the settle check and the open) does not reach inside the read."
    ),
}


def _package_copy(dest: Path, commit: str | None = None) -> None:
    """The tree as it is now (or at `commit`), importable as tfbuild / tfbuild_agent
    from `dest`."""
    src = REPO
    if commit:
        src = dest / ".tree"
        src.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "builder",
                                  "base-images", "entrypoint", "tests", "docs",
                                  "pyproject.toml"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".venv", "outputs")
    shutil.copytree(src / "builder", dest / "tfbuild", ignore=skip)
    shutil.copytree(src / "base-images", dest / "tfbuild" / "base_images", ignore=skip)
    shutil.copytree(src / "entrypoint", dest / "tfbuild_agent", ignore=skip)
    shutil.copytree(src / "tests", dest / "tests", ignore=skip)
    # Some tests read these from the checkout (compat.yaml, the docs' recipes).
    shutil.copytree(src / "base-images", dest / "base-images", ignore=skip)
    shutil.copytree(src / "docs", dest / "docs", ignore=skip)
    shutil.copy(src / "pyproject.toml", dest / "pyproject.toml")


def _source(module: str) -> str:
    return module + ".py"


def _copy_path(module: str) -> str:
    top, rest = module.split("/", 1)
    return ("tfbuild/" if top == "builder" else "tfbuild_agent/") + rest + ".py"


def _pytest(tests: list[str]) -> str:
    return (f"{sys.executable} -m pytest -x -q -p no:cacheprovider "
            f"--timeout=60 {' '.join(tests)}")


def run_module(module: str, work: Path, env: dict[str, str]) -> dict:
    tests = [t for t in MODULES[module] if (work / t).exists()]  # some are newer than --at
    name = module.replace("/", "_")
    started = time.monotonic()
    base = subprocess.run(_pytest(tests).split(), cwd=work, env=env, capture_output=True,
                          text=True)
    took = time.monotonic() - started
    if base.returncode != 0:
        return {"error": f"its tests fail unmutated:\n{base.stdout[-2000:]}", "tests": tests}
    config = work / f"{name}.toml"
    session = work / f"{name}.sqlite"
    excluded = f"(?!{'|'.join(OPERATORS)})"
    config.write_text(
        "[cosmic-ray]\n"
        f"module-path = {json.dumps(_copy_path(module))}\n"
        f"timeout = {max(30.0, 6 * took):.0f}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(_pytest(tests))}\n"
        "[cosmic-ray.distributor]\nname = \"local\"\n"
        "[cosmic-ray.filters.operators-filter]\n"
        f"exclude-operators = [{json.dumps(excluded)}]\n"
    )
    bindir = Path(sys.executable).parent
    for cmd in ([bindir / "cosmic-ray", "init", config, session],
                [bindir / "cr-filter-operators", session, config],
                [bindir / "cosmic-ray", "exec", config, session]):
        subprocess.run([str(c) for c in cmd], cwd=work, env=env, check=True,
                       stdout=subprocess.DEVNULL)
    dump = subprocess.run([str(bindir / "cosmic-ray"), "dump", str(session)], cwd=work,
                          env=env, check=True, capture_output=True, text=True).stdout
    killed, survivors = 0, []
    source = (work / _copy_path(module)).read_text().splitlines()
    for line in dump.splitlines():
        item, result = json.loads(line)
        if not result or result.get("worker_outcome") != "normal":
            continue  # skipped by the operator filter, or the mutation could not be made
        if result["test_outcome"] == "killed":
            killed += 1
            continue
        mutation = item["mutations"][0]
        row = mutation["start_pos"][0]
        survivors.append({
            "operator": mutation["operator_name"],
            "line": row,
            "source": source[row - 1].strip() if row <= len(source) else "",
            "diff": (result.get("diff") or "").replace(_copy_path(module), module + ".py"),
        })
    return {"tests": tests, "mutants": killed + len(survivors), "killed": killed,
            "survivors": survivors, "seconds": round(time.monotonic() - started),
            "date": time.strftime("%Y-%m-%d")}


def load() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def _rate(r: dict | None, equivalent: int = 0) -> str:
    if not r or "mutants" not in r:
        return "not run" if not r else "error"
    if r.get("same_as_after"):
        return "= after (code and tests unchanged)"
    counted = r["mutants"] - equivalent
    return f"{100 * r['killed'] / counted:.0f}% ({r['killed']}/{counted})" if counted else "-"


def _mutated_line(diff: str) -> str:
    return next((line[1:].strip() for line in diff.splitlines()
                 if line.startswith("+") and not line.startswith("+++")), "")


def _equivalent(module: str, s: dict) -> str | None:
    """The reason a survivor is not counted: its mutated line matches a pattern (and, for
    patterns given with a line number, it is on that line)."""
    line = _mutated_line(s["diff"])
    for pattern, why, *at in EQUIVALENT.get(module, []):
        if re.search(pattern, line) and (not at or at[0] == s["line"]):
            return why
    return None


def render(results: dict) -> str:
    before, after = results.get("before", {}), results.get("after", {})
    out = [
        "# Mutation testing of the pure core",
        "",
        "Generated by `bench/mutation.py` (cosmic-ray; see its docstring for the operators "
        "and how to run it). Each module is mutated with only its own unit tests. The kill "
        "rate counts equivalent and unobservable mutants (listed with the reason below) as "
        "neither killed nor survived, in both columns. *Before*: the tests as they were "
        "when issue 19 was filed (commit "
        "afb63ef: only those of the listed test files that existed then); *after*: with "
        "its tests. Where a module's code and tests are unchanged since afb63ef, one run "
        "gives both columns.",
        "",
        "| module | tests | before | after | not counted (equivalent, unobservable) "
        "| survivors |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for module in MODULES:
        a = after.get(module)
        eq = [s for s in (a or {}).get("survivors", []) if _equivalent(module, s)]
        live = len((a or {}).get("survivors", [])) - len(eq)
        tests = ", ".join(Path(t).name for t in (a or before.get(module) or {}).get("tests", []))
        b = before.get(module)
        b_eq = [s for s in (b or {}).get("survivors", []) if _equivalent(module, s)]
        out.append(f"| {module}.py | {tests} | {_rate(b, len(b_eq))} | "
                   f"{_rate(a, len(eq))} | {len(eq) if a else ''} | "
                   f"{live if a and 'mutants' in a else ''} |")
    out.append("")
    if any(m not in after or m not in before for m in MODULES):
        out += ["Modules marked *not run* have not been mutated yet; run "
                "`bench/mutation.py MODULE` to fill them in.", ""]
    breaks = RESULTS.parent / "security-breaks.md"
    if breaks.exists():
        out += ["## The channel security tests against broken handshakes", "",
                "`bench/security_breaks.py` puts each break below into a copy of the tree "
                "and runs tests/unit/test_channel_security.py (plus the older wrong-token "
                "and impostor tests) against it; a test that no break makes fail would "
                "prove nothing.", "", breaks.read_text().strip(), ""]
    for label, runs in (("after", after), ("before", before)):
        for module, r in runs.items():
            if "error" in r:
                out += [f"## {module}.py ({label}): not measured", "", "```",
                        r["error"], "```", ""]
                continue
            if not r["survivors"]:
                continue
            if label == "before" and module in after:
                continue  # the current survivors are what matters once re-run
            out += [f"## {module}.py: survivors ({label}, {r['date']})", ""]
            if label == "after" and module in LEFT:
                out += [LEFT[module], ""]
            ordered = sorted(r["survivors"], key=lambda s: (bool(_equivalent(module, s)),
                                                            s["line"]))
            for s in ordered:
                why = _equivalent(module, s)
                head = f"line {s['line']}, {s['operator']}"
                out.append(f"*{head}*: not counted, {why}" if why
                           else f"**{head}: SURVIVED**")
                out += ["", "```diff", s["diff"].strip(), "```", ""]
    return "\n".join(out) + "\n"


def main() -> int:
    global RESULTS, REPORT
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", help="e.g. control/wire (default: all)")
    parser.add_argument("--label", default="after", help="results slot: before or after")
    parser.add_argument("--report", action="store_true", help="only re-render the report")
    parser.add_argument("--at", metavar="COMMIT",
                        help="mutate the tree of COMMIT, e.g. `--label before --at afb63ef`")
    parser.add_argument("--fill-before", metavar="COMMIT",
                        help="for modules whose code and tests are unchanged since COMMIT, "
                        "record the after result as the before result too")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="where to store results (a scratch file for a trial run)")
    args = parser.parse_args()
    if args.results != RESULTS:  # a trial run: its report goes beside its results
        RESULTS, REPORT = args.results.resolve(), args.results.resolve().with_suffix(".md")
    results = load()
    if not args.report:
        chosen = [m for m in MODULES if not args.modules
                  or any(m.endswith(x) or re.fullmatch(x, m) for x in args.modules)]
        if not chosen:
            parser.error(f"no such module; one of: {', '.join(MODULES)}")
        with tempfile.TemporaryDirectory(prefix="tfbuild-mutation-") as tmp:
            work = Path(tmp)
            _package_copy(work, args.at)
            env = dict(os.environ, PYTHONPATH=str(work), PYTHONDONTWRITEBYTECODE="1")
            for module in chosen:
                print(f"mutating {module} ...", flush=True)
                r = run_module(module, work, env)
                results = load()  # another run may have stored other modules meanwhile
                results.setdefault(args.label, {})[module] = r
                RESULTS.parent.mkdir(parents=True, exist_ok=True)
                RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
                print(f"  {_rate(r)}, {len(r.get('survivors', []))} survived, "
                      f"{r.get('seconds', '?')} s", flush=True)
    if args.fill_before:
        results = load()
        for module, r in results.get("after", {}).items():
            paths = [_source(module), *r.get("tests", [])]
            same = subprocess.run(["git", "-C", str(REPO), "diff", "--quiet", args.fill_before,
                                   "--", *paths]).returncode == 0
            if same and module not in results.get("before", {}):
                results.setdefault("before", {})[module] = {**r, "same_as_after": True}
        RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    REPORT.write_text(render(results))
    print(f"wrote {REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
