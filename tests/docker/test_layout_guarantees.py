"""What the one-chain layout must keep: no compiler or pip.conf in the image, user
packages that cannot replace TensorFlow's pins, and bytecode that a fresh container
uses as it is (nothing compiled on the first `import tensorflow`)."""

from __future__ import annotations

import pytest
from imagetools import run_output, write_project

from tfbuild.errors import BuildError

pytestmark = pytest.mark.docker

TAG = "tfbuild-test/layout"
PROBE = r"""
import importlib.util, pathlib, shutil, sys
venv = pathlib.Path(sys.prefix)
site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
before = sorted(str(p) for p in pathlib.Path("/opt/tfbuild").rglob("*.pyc"))
import tensorflow, tf_keras, yaml
after = sorted(str(p) for p in pathlib.Path("/opt/tfbuild").rglob("*.pyc"))
pyc = pathlib.Path(importlib.util.cache_from_source(tensorflow.__file__)).read_bytes()
print("compilers", [t for t in ("gcc", "cc", "g++", "c++", "cmake", "make") if shutil.which(t)])
confs = [str(p) for root in ("/etc", "/root", "/opt", "/tmp", "/app", "/usr/local")
         for p in pathlib.Path(root).rglob("pip.conf")]
print("pip.conf", confs + [p for p in ("/tmp/tfbuild-pip",) if pathlib.Path(p).exists()])
print("headers", (site / "tensorflow" / "include").exists())
print("new_pyc", len(after) - len(before))
print("pyc_flags", int.from_bytes(pyc[4:8], "little"))
"""


@pytest.fixture(scope="module")
def image(build, tmp_path_factory):
    project = write_project(tmp_path_factory.mktemp("layout") / "proj", "print('layout')\n",
                            **{"probe.py": PROBE})
    tag, _ = build(project, f"{TAG}:1", entry_script="train.py", pip_packages=["pyyaml"])
    return tag


def test_no_compiler_no_pip_conf_no_headers_and_bytecode_used_as_is(image):
    out = dict(line.split(" ", 1) for line in run_output(
        image, "/app/probe.py", entrypoint="/opt/tfbuild/venv/bin/python").splitlines())
    assert out["compilers"] == "[]"
    assert out["pip.conf"] == "[]"
    assert out["headers"] == "False"
    # Importing TensorFlow, tf_keras and a user package wrote no .pyc: all shipped.
    assert out["new_pyc"] == "0"
    # PEP 552 flags 0b01: hash-based and not checked against the source (the same
    # bytes on every rebuild; no stat of the source on import).
    assert out["pyc_flags"] == "1"


def test_a_user_package_cannot_replace_tensorflows_pins(build, tmp_path):
    project = write_project(tmp_path / "conflict", "print('x')\n")
    pinned = run_output(f"{TAG}:1", "/opt/tfbuild/venv/tfbuild-constraints.txt",
                        entrypoint="cat")
    numpy = next(line for line in pinned.splitlines() if line.startswith("numpy=="))
    other = "numpy==1.26.4" if numpy != "numpy==1.26.4" else "numpy==2.0.0"
    with pytest.raises(BuildError) as caught:
        build(project, f"{TAG}:conflict", entry_script="train.py", pip_packages=[other])
    message = str(caught.value)
    assert "pip install" in caught.value.step and other in caught.value.step
    assert "may not replace them" in message and "full log: " in message
