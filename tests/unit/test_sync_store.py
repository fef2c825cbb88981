"""Store URIs -> backend options (pure), and the file:// store for real."""

from __future__ import annotations

import hashlib
import importlib.util
import os

import pytest

from tfbuild_agent.errors import ConfigError
from tfbuild_agent.sync.store import (
    PARTIAL_MARK,
    SourceChanged,
    fold_parts,
    open_store,
    part_key,
    split_part,
    store_spec,
)


def test_s3_endpoint_prefers_tfbuild_variable_and_defaults_the_region() -> None:
    spec = store_spec("s3://bucket/runs", {
        "TFBUILD_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ENDPOINT_URL": "http://elsewhere:1",
        "AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK",
    })
    assert spec.protocol == "s3"
    assert spec.options["client_kwargs"] == {
        "endpoint_url": "http://127.0.0.1:9000", "region_name": "us-east-1"}
    assert (spec.options["key"], spec.options["secret"]) == ("AK", "SK")
    assert spec.options["config_kwargs"]["retries"]["max_attempts"] == 2


def test_s3_falls_back_to_aws_endpoint_and_keeps_a_given_region() -> None:
    spec = store_spec("s3://b", {"AWS_ENDPOINT_URL": "http://minio:9000",
                                 "AWS_REGION": "eu-west-1"})
    assert spec.options["client_kwargs"] == {"endpoint_url": "http://minio:9000",
                                             "region_name": "eu-west-1"}
    plain = store_spec("s3://b/p", {})
    assert plain.options["client_kwargs"] == {} and "key" not in plain.options


def test_azure_connection_string_or_account_key_or_sas() -> None:
    conn = store_spec("az://c/runs", {"AZURE_STORAGE_CONNECTION_STRING": "DefaultEndpoints..."})
    assert conn.options["connection_string"] == "DefaultEndpoints..."
    assert conn.put_kwargs == {"retry_total": 0}
    key = store_spec("abfs://c/runs", {"AZURE_STORAGE_ACCOUNT_NAME": "acct",
                                       "AZURE_STORAGE_ACCOUNT_KEY": "k=="})
    assert (key.options["account_name"], key.options["account_key"]) == ("acct", "k==")
    sas = store_spec("az://c", {"AZURE_STORAGE_ACCOUNT_NAME": "acct",
                                "AZURE_STORAGE_SAS_TOKEN": "sv=1"})
    assert sas.options["sas_token"] == "sv=1"


def test_azure_account_in_the_uri_wins_over_a_connection_string() -> None:
    spec = store_spec("abfs://c@acct.dfs.core.windows.net/runs",
                      {"AZURE_STORAGE_CONNECTION_STRING": "for another account",
                       "AZURE_STORAGE_ACCOUNT_KEY": "k=="})
    assert "connection_string" not in spec.options and "account_name" not in spec.options
    assert spec.options["account_key"] == "k=="


def test_azure_without_an_account_says_which_variables_to_set() -> None:
    with pytest.raises(ConfigError, match="AZURE_STORAGE_CONNECTION_STRING"):
        store_spec("az://container/runs", {})


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("", "no upload destination"),
        ("runs/here", "neither a URI nor an absolute path"),
        ("ftp://host/x", "ftp://, which tfbuild does not upload to"),
        ("s3://", "names no bucket"),
        ("file://relative", "absolute path"),
    ],
)
def test_bad_destinations_explain_the_fix(uri: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        store_spec(uri, {})


def test_a_bare_absolute_path_is_a_file_store() -> None:
    spec = store_spec("/mnt/share/runs", {})
    assert (spec.protocol, spec.url) == ("file", "file:///mnt/share/runs")


@pytest.mark.skipif(importlib.util.find_spec("gcsfs") is not None, reason="gcsfs is installed")
def test_missing_backend_names_the_extra_to_install() -> None:
    with pytest.raises(ConfigError, match=r"--upload-extra gcs.*tfbuild\[gcs\]"):
        open_store("gs://bucket/runs", {})


def test_file_store_round_trip(tmp_path) -> None:
    store = open_store(f"file://{tmp_path}/dest").child("run-1")
    src = tmp_path / "src.bin"
    src.write_bytes(b"0123456789")
    store.put_file(src, "outputs/deep/a.bin")
    store.put_bytes(b'{"x": 1}', "run.json")
    assert store.files() == {"outputs/deep/a.bin": 10, "run.json": 8}
    assert store.files("outputs") == {"outputs/deep/a.bin": 10}
    assert store.read("outputs/deep/a.bin", 2, 5) == b"234"
    assert store.listdir() == ["outputs", "run.json"]
    assert store.files("nothing-here") == {} and store.listdir("nothing-here") == []
    leftovers = [p for p in (tmp_path / "dest").rglob("*") if PARTIAL_MARK in p.name]
    assert leftovers == []


def test_put_stream_copies_big_files_in_the_kernel_and_hashes_when_asked(tmp_path) -> None:
    store = open_store(f"file://{tmp_path}/dest").child("run-1")
    src = tmp_path / "big.bin"
    data = os.urandom(3 * 2**20 + 13)
    src.write_bytes(data)
    fd = os.open(src, os.O_RDONLY)
    try:
        assert store.put_stream(fd, "outputs/big.bin", lambda: True, digest=False) == ""
        sha = store.put_stream(fd, "outputs/hashed.bin", lambda: True)
        store.put_stream(fd, "outputs/tail.bin", lambda: True, 13, start=3 * 2**20)
    finally:
        os.close(fd)
    assert sha == hashlib.sha256(data).hexdigest()
    assert store.read("outputs/big.bin") == data == store.read("outputs/hashed.bin")
    assert store.read("outputs/tail.bin") == data[-13:]


def test_a_source_that_changed_during_the_upload_is_never_committed(tmp_path) -> None:
    store = open_store(f"file://{tmp_path}/dest").child("run-1")
    src = tmp_path / "a.bin"
    src.write_bytes(b"x" * 1000)
    fd = os.open(src, os.O_RDONLY)
    try:
        with pytest.raises(SourceChanged):
            store.put_stream(fd, "outputs/a.bin", lambda: False)
    finally:
        os.close(fd)
    assert store.files() == {}
    assert not list((tmp_path / "dest").rglob(f"*{PARTIAL_MARK}*"))


def test_fold_parts_joins_a_log_up_to_its_first_gap_and_a_whole_file_wins() -> None:
    listing = {
        part_key("logs/a.log", 0): 5, part_key("logs/a.log", 5): 3,
        part_key("logs/b.log", 0): 4, part_key("logs/b.log", 9): 1,  # a gap after 4
        part_key("logs/c.log", 0): 2, "logs/c.log": 7,
        "outputs/m.bin": 1,
    }
    folded, pieces = fold_parts(listing)
    assert folded == {"logs/a.log": 8, "logs/b.log": 4, "logs/c.log": 7, "outputs/m.bin": 1}
    assert [p[0] for p in pieces["logs/a.log"]] == [0, 5] and "logs/c.log" not in pieces
    assert split_part(part_key("logs/x", 12)) == ("logs/x", 12) and split_part("logs/x") is None


def test_a_log_in_parts_reads_and_downloads_as_one_file(tmp_path) -> None:
    store = open_store(f"file://{tmp_path}/dest").child("run-1")
    store.put_bytes(b"hello ", part_key("logs/t.log", 0))
    store.put_bytes(b"world\n", part_key("logs/t.log", 6))
    assert store.files() == {"logs/t.log": 12}
    assert store.read("logs/t.log") == b"hello world\n"
    assert store.read("logs/t.log", 4, 8) == b"o wo"
    store.get_file("logs/t.log", tmp_path / "got")
    assert (tmp_path / "got").read_bytes() == b"hello world\n"
    assert len(store.parts_of("logs/t.log")) == 2
