"""1. Build: tfbuild vs a hand-written one-stage Dockerfile (classic builder and BuildKit).

The project is examples/keras-digits with two pip packages (scikit-learn, pyyaml). For each
builder: a cold build (no cache), the image size, then a warm rebuild after appending a
line to train.py: its time, and the layers and bytes it added over the cold image.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import yaml
from common import (
    HOST_CA,
    REPO,
    VENV_BIN,
    ImageTracker,
    Row,
    docker_cli,
    ensure_ca_base,
    load,
    median,
)

TFBUILD, CLASSIC, BUILDKIT = "tfbuild", "hand-written", "hand-written+BuildKit"
VARIANTS = (TFBUILD, CLASSIC, BUILDKIT)
PIP_PACKAGES = ["scikit-learn", "pyyaml"]
KERAS_IMAGE = "tfbuild-bench/keras-digits:latest"
# Classic `Step i/n :` and BuildKit `#i [` lines when a step starts; tfbuild prints
# `[i/n] ...  12.3 s` when a step ends.
STEP_LINE = re.compile(r"^\s*(Step \d+/\d+ : |#\d+ \[|\[\s*\d+/\d+\] )")
FULL_LOG = re.compile(r"^\s*full log: (\S+)")


def make_project(root: Path) -> Path:
    """A copy of examples/keras-digits with two pip packages."""
    project = root / "keras-digits"
    shutil.copytree(REPO / "examples" / "keras-digits", project,
                    ignore=shutil.ignore_patterns("outputs", "logs", "__pycache__"))
    config = project / "tfbuild.yaml"
    spec = yaml.safe_load(config.read_text())
    spec["pip_packages"] = PIP_PACKAGES
    config.write_text(yaml.safe_dump(spec, sort_keys=False))
    return project


def handwritten_dockerfile(project: Path, base: str) -> str:
    """What a user writes: one stage, one pip install, then the code. The same TensorFlow,
    TensorBoard and tf-keras pins as tfbuild's image; tf-keras with --no-deps because its
    `tensorflow` requirement would otherwise add the full `tensorflow` wheel next to
    tensorflow-cpu."""
    from tfbuild.image.build import prepare
    from tfbuild.spec import load_spec

    layers = prepare(load_spec(project, overrides={"trust_host_ca": True})).layers
    reqs = " ".join(f"'{r}'" for r in (*layers.tf_requirements, *PIP_PACKAGES))
    nodeps = " ".join(f"'{r}'" for r in layers.tf_nodeps_requirements)
    return (
        f"FROM {base}\n"
        f"RUN python3 -m venv /v && /v/bin/pip install {reqs}"
        + (f" && /v/bin/pip install --no-deps {nodeps}" if nodeps else "")
        + "\nCOPY . /app\n"
    )


def source_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def added_layers(client: docker.DockerClient, old: str, new: str) -> tuple[int, int]:
    """(layers, bytes) that `new` adds over `old`.

    Layers: RootFS layers after the prefix both images share. Bytes: `docker history`
    sizes from the first history entry that differs (instruction or size) on; entries
    without a layer have size 0. The bench's edit grows train.py, so even a BuildKit COPY
    (same instruction text) differs in size.
    """
    a = client.images.get(old).attrs["RootFS"]["Layers"]
    b = client.images.get(new).attrs["RootFS"]["Layers"]
    ha = [(h["CreatedBy"], h["Size"]) for h in reversed(client.api.history(old))]
    hb = [(h["CreatedBy"], h["Size"]) for h in reversed(client.api.history(new))]
    return len(b) - shared_prefix(a, b), sum(size for _, size in hb[shared_prefix(ha, hb):])


def shared_prefix(a: list[Any], b: list[Any]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@dataclass
class Builder:
    """How one variant builds its folder into a tag."""

    variant: str
    folder: Path
    cli: str

    def build(self, tag: str, *, cold: bool, tracker: ImageTracker
              ) -> tuple[float, list[tuple[float, str]]]:
        """Seconds the build took, and when each step began (classic `Step i/n` lines,
        BuildKit `#i [stage j/n]` lines), in seconds from the start."""
        env = dict(os.environ)
        if self.variant == TFBUILD:
            argv = [str(VENV_BIN / "tfbuild"), "image", str(self.folder), "-t", tag]
            argv += ["--trust-host-ca"] if HOST_CA.exists() else []
            argv += ["--no-cache"] if cold else []
            argv += ["--progress", "plain"]
        else:
            env["DOCKER_BUILDKIT"] = "1" if self.variant == BUILDKIT else "0"
            argv = [self.cli, "build", "-t", tag, *(["--no-cache"] if cold else [])]
            argv += ["--progress=plain"] if self.variant == BUILDKIT else []
            argv.append(str(self.folder))
        started = time.monotonic()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        assert proc.stdout is not None
        log, steps = [], []
        for line in proc.stdout:
            log.append(line)
            if STEP_LINE.match(line) and line.strip()[:90] not in {s for _, s in steps}:
                steps.append((round(time.monotonic() - started, 1), line.strip()[:90]))
        code = proc.wait()
        seconds = time.monotonic() - started
        tracker.tags.append(tag)
        if code != 0:
            raise RuntimeError(f"{self.variant} build of {tag} failed:\n{''.join(log[-30:])}")
        if self.variant == CLASSIC:
            tracker.note_build_log("".join(log))
        elif self.variant == TFBUILD:  # its step ids are in the raw log it names
            raw = [m.group(1) for line in log if (m := FULL_LOG.match(line))]
            tracker.note_build_log(Path(raw[-1]).read_text() if raw else "")
        return seconds, steps


def import_seconds(client: docker.DockerClient, image: str, python: str) -> float:
    """`import tensorflow` in a fresh container of `image` (bytecode not yet written)."""
    code = "import time; t = time.monotonic(); import tensorflow; print(time.monotonic() - t)"
    out = client.containers.run(image, entrypoint=[python, "-c", code], remove=True)
    return round(float(out.decode().split()[-1]), 2)


SIZE_PROBE = r"""
import pathlib, sys, sysconfig
site = pathlib.Path(sysconfig.get_path("purelib"))
roots = [site] + [pathlib.Path(p) for p in sys.path if "/opt/tfbuild/layers/" in p]
def size(paths):
    return sum(f.stat().st_size for p in paths if p.exists()
               for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())
tests = [d for r in roots if r.exists() for d in r.rglob("tests") if d.is_dir()]
top = [d for d in tests if not any(o != d and o in d.parents for o in tests)]
pyc = [f for r in roots if r.exists() for f in r.rglob("*.pyc")]
print(size([site / "tensorflow" / "include"]), size(top), size(pyc))
"""


def item_bytes(client: docker.DockerClient, image: str, python: str) -> dict[str, int]:
    """Bytes of what tfbuild drops (TF's C++ headers, tests folders) and ships (bytecode)
    in `image`'s Python packages."""
    out = client.containers.run(image, entrypoint=[python, "-c", SIZE_PROBE], remove=True)
    headers, tests, pyc = (int(x) for x in out.decode().split()[-3:])
    return {"tf_headers": headers, "tests_folders": tests, "bytecode": pyc}


def measure(client: docker.DockerClient, builder: Builder, rep: int, original: str,
            tracker: ImageTracker) -> dict[str, Any]:
    slug = builder.variant.replace("+", "-").lower()
    cold_tag = f"tfbuild-bench/build-{slug}:cold{rep}"
    warm_tag = f"tfbuild-bench/build-{slug}:warm{rep}"
    train = builder.folder / "train.py"
    train.write_text(original)
    load_cold = load()
    cold, steps = builder.build(cold_tag, cold=True, tracker=tracker)
    size = client.images.get(cold_tag).attrs["Size"]
    python = "/opt/tfbuild/venv/bin/python" if builder.variant == TFBUILD else "/v/bin/python"
    imports = [import_seconds(client, cold_tag, python) for _ in range(3)]
    items = item_bytes(client, cold_tag, python) if builder.variant != BUILDKIT else {}
    train.write_text(original + f"\n# bench edit {uuid.uuid4().hex}\n")
    load_warm = load()
    warm, _ = builder.build(warm_tag, cold=False, tracker=tracker)
    layers, added = added_layers(client, cold_tag, warm_tag)
    result = {
        "variant": builder.variant, "rep": rep, "cold_s": round(cold, 2),
        "warm_s": round(warm, 2), "image_bytes": size, "new_layers": layers,
        "new_layer_bytes": added, "source_bytes": source_bytes(builder.folder),
        "load_cold": load_cold, "load_warm": load_warm, "cold_steps": steps,
        "import_tf_s": imports, "item_bytes": items,
    }
    train.write_text(original)
    print(f"  build {builder.variant} rep {rep}: cold {cold:.0f} s, warm {warm:.1f} s, "
          f"{size / 1e6:.0f} MB, +{layers} layers / {added} B, import tensorflow "
          f"{median(imports):.1f} s (load {load_cold})", flush=True)
    return result


def run(reps: int, workdir: Path, tracker: ImageTracker) -> tuple[list[Row], dict[str, Any]]:
    client = docker.from_env(timeout=900)
    base = ensure_ca_base(client)
    project = make_project(workdir / "tfbuild")
    hand = make_project(workdir / "hand-written")
    (hand / "Dockerfile").write_text(handwritten_dockerfile(project, base))
    cli = docker_cli()
    builders = {TFBUILD: Builder(TFBUILD, project, cli), CLASSIC: Builder(CLASSIC, hand, cli),
                BUILDKIT: Builder(BUILDKIT, hand, cli)}
    original = (project / "train.py").read_text()
    runs: list[dict[str, Any]] = []
    for rep in range(reps):
        order = VARIANTS[rep % 3:] + VARIANTS[:rep % 3]  # rotate who builds first
        for variant in order:
            own = ImageTracker(client)
            runs.append(measure(client, builders[variant], rep, original, own))
            if variant == TFBUILD and rep == reps - 1:
                # Its cache makes the other sections' image a cached build; removed at the end.
                tracker.tags += own.tags
                tracker.ids += own.ids
            else:
                own.remove()
    return rows(runs), {"runs": runs, "dockerfile": (hand / "Dockerfile").read_text(),
                        "docker_cli": cli}


def rows(runs: list[dict[str, Any]]) -> list[Row]:
    def med(variant: str, key: str) -> float:
        return median(r[key] for r in runs if r["variant"] == variant)

    tf = {k: med(TFBUILD, k) for k in ("cold_s", "warm_s", "image_bytes", "new_layer_bytes",
                                       "source_bytes")}
    loads = [r["load_cold"] for r in runs]
    n = len([r for r in runs if r["variant"] == TFBUILD])
    out = []
    cold_ratio = tf["cold_s"] / med(CLASSIC, "cold_s")
    out.append(Row("build", f"cold build (median of {n})", tf["cold_s"], "s", CLASSIC,
                   med(CLASSIC, "cold_s"), "<= 1.1x hand-written classic", cold_ratio <= 1.1,
                   load=median(loads)))
    out.append(Row("build", f"cold build (median of {n})", tf["cold_s"], "s", BUILDKIT,
                   med(BUILDKIT, "cold_s"), load=median(loads)))
    for peer in (CLASSIC, BUILDKIT):
        out.append(Row("build", "warm rebuild after editing train.py", tf["warm_s"], "s", peer,
                       med(peer, "warm_s"), load=median(r["load_warm"] for r in runs)))
    share = tf["warm_s"] / tf["cold_s"]
    at = median(loads)
    out.append(Row("build", "warm rebuild / cold build", share * 100, "%", "", None,
                   "<= 10%", share <= 0.10, load=at))
    limit = tf["source_bytes"] + 1_000_000
    out.append(Row("build", "new layer bytes after the edit", tf["new_layer_bytes"], "B", CLASSIC,
                   med(CLASSIC, "new_layer_bytes"), "<= source + 1 MB",
                   tf["new_layer_bytes"] <= limit,
                   note=f"source {tf['source_bytes']:.0f} B", load=at))
    imports = {v: median(median(r["import_tf_s"]) for r in runs if r["variant"] == v)
               for v in (TFBUILD, CLASSIC)}
    out.append(Row("build", "fresh container: first `import tensorflow`", imports[TFBUILD],
                   "s", CLASSIC, imports[CLASSIC], "<= 1.05x hand-written",
                   imports[TFBUILD] <= 1.05 * imports[CLASSIC], load=at,
                   note="median of 3 fresh containers per image"))
    out.append(Row("build", "image size", tf["image_bytes"], "B", CLASSIC,
                   med(CLASSIC, "image_bytes"), "<= hand-written",
                   tf["image_bytes"] <= med(CLASSIC, "image_bytes"), load=at))
    items = {v: next(r["item_bytes"] for r in runs if r["variant"] == v)
             for v in (TFBUILD, CLASSIC)}
    for key, what in (("tf_headers", "TensorFlow's C++ headers (dropped)"),
                      ("tests_folders", "tests folders of the packages (dropped)"),
                      ("bytecode", ".pyc bytecode (shipped)")):
        out.append(Row("build", f"bytes: {what}", items[TFBUILD][key], "B", CLASSIC,
                       items[CLASSIC][key], load=at))
    return out
