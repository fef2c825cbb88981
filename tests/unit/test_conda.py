"""The conda layer's build-context inputs: installer, request.json, local channels."""

from __future__ import annotations

import json
import tarfile
from io import BytesIO
from pathlib import Path

import pytest

from tfbuild.image.build import prepare
from tfbuild.image.conda import add_conda_request
from tfbuild.image.context import BuildContext
from tfbuild.spec import load_spec

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    src = tmp_path / "proj"
    src.mkdir()
    (src / "train.py").write_text("print('hi')\n")
    return src


def make_channel(root: Path) -> Path:
    """A channel with noarch and linux-64 packages, another platform, and indexer scratch."""
    for subdir, pkg in (("noarch", "hello-1.0-0.tar.bz2"), ("linux-64", "tool-2.0-0.conda")):
        (root / subdir).mkdir(parents=True)
        (root / subdir / "repodata.json").write_text(json.dumps({"info": {"subdir": subdir}}))
        (root / subdir / pkg).write_bytes(b"package bytes " + subdir.encode())
    (root / "osx-arm64").mkdir()
    (root / "osx-arm64" / "repodata.json").write_text("{}")
    (root / ".tmp").mkdir()
    (root / ".tmp" / "scratch").write_text("x")
    return root


def test_request_names_packages_and_rewrites_local_channels(project, tmp_path):
    channel = make_channel(tmp_path / "chan")
    spec = load_spec(
        project,
        {
            "entry_script": "train.py",
            "conda_packages": ["hello", "tool >=2"],
            "conda_channels": [str(channel), "conda-forge"],
        },
    )
    ctx = BuildContext()
    add_conda_request(ctx, spec)

    request = json.loads(ctx.files["tfbuild/conda/request.json"])
    assert request == {
        "packages": ["hello", "tool >=2"],
        "channels": ["file:///tmp/tfbuild-conda/channels/0", "conda-forge"],
        "platforms": ["linux-64", "noarch"],
    }
    installer = REPO / "base-images" / "scripts" / "conda_install.py"
    assert ctx.files["tfbuild/conda/install.py"] == installer.read_bytes()
    # The solve-relevant subdirectories only: other platforms and scratch stay out.
    assert sorted(n for n in ctx.files if n.startswith("tfbuild/conda/channels/")) == [
        "tfbuild/conda/channels/0/linux-64/repodata.json",
        "tfbuild/conda/channels/0/linux-64/tool-2.0-0.conda",
        "tfbuild/conda/channels/0/noarch/hello-1.0-0.tar.bz2",
        "tfbuild/conda/channels/0/noarch/repodata.json",
    ]
    with tarfile.open(fileobj=BytesIO(ctx.tar_bytes())) as tar:
        member = tar.extractfile("tfbuild/conda/channels/0/noarch/hello-1.0-0.tar.bz2")
        assert member is not None and member.read() == b"package bytes noarch"


def test_no_channel_means_conda_forge(project):
    spec = load_spec(project, {"entry_script": "train.py", "conda_packages": ["zlib"]})
    ctx = BuildContext()
    add_conda_request(ctx, spec)
    assert json.loads(ctx.files["tfbuild/conda/request.json"])["channels"] == ["conda-forge"]


def test_prepare_renders_the_conda_stage_and_keeps_paths_out_of_the_label(project, tmp_path):
    channel = make_channel(tmp_path / "my-channel")
    spec = load_spec(
        project,
        {"entry_script": "train.py", "conda_packages": ["hello"], "conda_channels": [str(channel)]},
    )
    prepared = prepare(spec)
    assert "tfbuild/conda/request.json" in prepared.context.files
    assert "FROM os AS conda" in prepared.dockerfile
    assert "COPY --from=conda /opt/tfbuild/layers/conda /opt/tfbuild/layers/conda" in (
        prepared.dockerfile
    )
    label = json.loads(prepared.layers.labels["io.tfbuild.spec"])
    assert label["conda_channels"] == ["my-channel"]
    assert label["source_directory"] == "proj"
    assert str(tmp_path) not in prepared.dockerfile


def test_no_conda_packages_no_conda_files(project):
    prepared = prepare(load_spec(project, {"entry_script": "train.py"}))
    assert not any(n.startswith("tfbuild/conda/") for n in prepared.context.files)
    assert "AS conda" not in prepared.dockerfile
