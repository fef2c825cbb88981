"""The agent installs with only its own dependencies: what goes into a training
image is the `tfbuild_agent` package plus the `agent` extra, never the builder's
libraries. This installs that bundle into a clean venv, as the image does."""

import io
import subprocess
import sys
import tarfile

import pytest

from tfbuild.image.agent_bundle import add_agent, agent_requirements
from tfbuild.image.context import BuildContext


def test_agent_requirements_are_only_the_agent_extra():
    names = {r.split(">")[0].split("=")[0].split("[")[0] for r in agent_requirements()}
    assert names == {"watchdog", "fsspec"}
    assert "s3fs" in " ".join(agent_requirements(("s3",)))


@pytest.mark.timeout(300)
def test_agent_runs_in_a_clean_venv_without_docker_or_jinja2(tmp_path):
    ctx = BuildContext()
    add_agent(ctx, "agent")
    with tarfile.open(fileobj=io.BytesIO(ctx.tar_bytes())) as tar:
        tar.extractall(tmp_path / "bundle", filter="data")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "-r",
                    str(tmp_path / "bundle/agent/requirements.txt")], check=True)
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run(["cp", "-r", str(tmp_path / "bundle/agent/tfbuild_agent"), site], check=True)

    help_text = subprocess.run([str(py), "-m", "tfbuild_agent", "--help"], check=True,
                               capture_output=True, text=True).stdout
    assert "run" in help_text and "describe" in help_text
    # Importing every agent module must work with only the agent's dependencies.
    probe = (
        "import importlib, pkgutil, tfbuild_agent\n"
        "for m in pkgutil.walk_packages(tfbuild_agent.__path__, 'tfbuild_agent.'):\n"
        "    if m.name != 'tfbuild_agent.__main__': importlib.import_module(m.name)\n"
        "for name in ('docker', 'jinja2', 'click', 'rich', 'tfbuild'):\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError:\n"
        "        print('absent', name)\n"
    )
    out = subprocess.run([str(py), "-c", probe], check=True, capture_output=True,
                         text=True).stdout.split("\n")
    for name in ("docker", "jinja2", "click", "rich", "tfbuild"):
        assert f"absent {name}" in out
