"""The agent installs with only its own dependencies: what goes into a training
image is the `tfbuild_agent` package plus the `agent` extra, never the builder's
libraries. This installs that bundle into a clean venv, as the image does."""

import importlib.metadata
import io
import subprocess
import sys
import tarfile

import pytest

from tfbuild.image.agent_bundle import add_agent, agent_requirements, vendorable
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


def test_pure_requirements_installed_here_are_vendored_with_their_metadata():
    dists = vendorable(agent_requirements(), "3.11")
    assert dists is not None
    assert {d.metadata["Name"].lower() for d in dists} == {"watchdog", "fsspec"}
    ctx = BuildContext()
    assert add_agent(ctx, "agent", python_version="3.11") is True
    names = set(ctx.files)
    assert "agent/site/fsspec/__init__.py" in names
    assert "agent/site/watchdog/observers/inotify.py" in names
    assert any(n.startswith("agent/site/watchdog-") and n.endswith(".dist-info/METADATA")
               for n in names)
    # No bytecode, no console scripts from outside site-packages, no installer records.
    assert not [n for n in names if n.endswith((".pyc", "/RECORD", "/direct_url.json"))
                or "/bin/" in n]


@pytest.mark.parametrize(("requirements", "python", "why"), [
    (["fsspec>=9999"], "3.11", "the installed version does not satisfy the requirement"),
    (["fsspec"], "3.6", "the image's Python is older than the distribution supports"),
    (["no-such-distribution-here"], "3.11", "not installed"),
    (["s3fs"], "3.11", "s3fs needs aiohttp, which is compiled"),
])
def test_anything_not_pure_or_not_matching_goes_the_pip_way(requirements, python, why):
    assert vendorable(requirements, python) is None, why


def test_an_upload_backend_makes_the_image_install_the_agent_with_pip():
    ctx = BuildContext()
    assert add_agent(ctx, "agent", ("s3",), python_version="3.11") is False
    assert not [n for n in ctx.files if n.startswith("agent/site/")]
    assert b"s3fs" in ctx.files["agent/requirements.txt"]


@pytest.mark.timeout(300)
def test_the_vendored_agent_runs_in_a_venv_without_pip(tmp_path):
    ctx = BuildContext()
    assert add_agent(ctx, "agent", python_version="{}.{}".format(*sys.version_info[:2]))
    with tarfile.open(fileobj=io.BytesIO(ctx.tar_bytes())) as tar:
        tar.extractall(tmp_path / "bundle", filter="data")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run(["cp", "-r", f"{tmp_path}/bundle/agent/site/.",
                    f"{tmp_path}/bundle/agent/tfbuild_agent", site], check=True)
    probe = ("import importlib.metadata as md, fsspec, watchdog.observers, tfbuild_agent.sync\n"
             "print(md.version('fsspec'), md.version('watchdog'))\n"
             "fs = fsspec.filesystem('file'); print(fs.exists('/'))\n")
    out = subprocess.run([str(py), "-c", probe], check=True, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin"}).stdout.split()
    assert out == [importlib.metadata.version("fsspec"), importlib.metadata.version("watchdog"),
                   "True"]
