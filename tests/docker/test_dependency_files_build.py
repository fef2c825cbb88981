"""pip_requirements_file and conda_dependencies_file in a real build: the packages of
requirements.txt (with its -r include and -c constraints) and of environment.yml's pip
section are importable in the image at the versions asked; editing train.py keeps the
package layer cached, editing the requirements rebuilds it but not TensorFlow's."""

from __future__ import annotations

import json
import uuid

from imagetools import run_output, write_project
from test_build_cache import instructions

from tfbuild.image.build import prepare
from tfbuild.spec import load_spec

TAG = "tfbuild-test/dependency-files"
TRAIN_PY = """\
import importlib.metadata as md, json
print("VERSIONS " + json.dumps({d.metadata["Name"].lower().replace("_", "-"): d.version
                               for d in md.distributions()}))
"""
FILES = {
    "tfbuild.yaml": "entry_script: train.py\npip_requirements_file: requirements.txt\n"
                    "conda_dependencies_file: environment.yml\n",
    "requirements.txt": "-r base.txt\n-c constraints.txt\nattrs\n",
    "base.txt": "six==1.17.0\n",
    "constraints.txt": "attrs==24.2.0\n",
    "environment.yml": "name: proj\ndependencies:\n  - pip\n  - pip:\n      - tomli-w==1.0.0\n",
}


def versions(tag: str) -> dict:
    out = run_output(tag)
    return json.loads(out.split("VERSIONS ", 1)[1].splitlines()[0])


def test_dependency_files_install_and_cache_like_the_lists(build, tmp_path):
    project = write_project(tmp_path / "proj", TRAIN_PY, **FILES)
    build(project, f"{TAG}:1")
    found = versions(f"{TAG}:1")
    assert (found["six"], found["attrs"], found["tomli-w"]) == ("1.17.0", "24.2.0", "1.0.0")

    steps = instructions(prepare(load_spec(project, {"trust_host_ca": True})).dockerfile)
    source_step = next(i for i, s in enumerate(steps) if s.startswith("COPY src/"))
    before_source = sum(not s.startswith("FROM ") for s in steps[:source_step])

    # A code edit: every step before the source, the package install included, is cached.
    (project / "train.py").write_text(TRAIN_PY + f"# edit {uuid.uuid4().hex}\n")
    _, edited = build(project, f"{TAG}:2")
    assert edited.cached_steps == before_source

    # A requirements edit: the package step runs again, TensorFlow's does not.
    # (a fresh, harmless exclusion every run: a list seen before would be in the cache)
    (project / "base.txt").write_text(
        f"six==1.17.0\niniconfig==2.0.0\nattrs!=0.0.{uuid.uuid4().int % 10**9}\n")
    _, changed = build(project, f"{TAG}:3")
    install = next(i for i, s in enumerate(steps) if "-r /tmp/tfbuild-requirements" in s)
    # Cached: everything before the COPY of the flattened lists (the step before it).
    assert changed.cached_steps == sum(not s.startswith("FROM ") for s in steps[:install]) - 1
    assert versions(f"{TAG}:3")["iniconfig"] == "2.0.0"
