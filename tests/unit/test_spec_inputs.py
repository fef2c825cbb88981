"""Data inputs in tfbuild.yaml: script-param inputs, the `inputs:` mapping, and every
refusal naming the key, the value and the fix."""

from __future__ import annotations

import json

import pytest
from spec_checks import fails, spec

from tfbuild.image.build import job_for
from tfbuild_agent.inputs.plan import Input


def test_a_download_script_param_becomes_a_placeholder_and_an_argv_input(proj):
    s = spec(proj, upload_extras=["s3"],
             script_params={"--data-folder": {"download": "s3://bucket/mnist"}, "--lr": 0.1})
    assert s.script_params == ("--data-folder", "${tfbuild.input.data-folder}", "--lr", "0.1")
    assert s.inputs == (Input("data-folder", "s3://bucket/mnist", "download", arg=True),)


def test_list_form_script_params_take_inputs_after_their_flag(proj):
    s = spec(proj, script_params=["--data", {"mount": "file:///mnt/d"}, "--x", 1])
    assert s.script_params == ("--data", "${tfbuild.input.data}", "--x", "1")
    assert s.inputs == (Input("data", "file:///mnt/d", "mount", arg=True),)


def test_the_inputs_mapping_accepts_a_uri_a_mode_form_and_uri_plus_mode(proj):
    s = spec(proj, upload_extras=["azure", "gcs"], inputs={
        "train": "file:///data/train",
        "labels": {"mount": "az://c/labels.csv"},
        "vocab": {"uri": "gs://b/vocab", "mode": "download"},
    })
    assert s.inputs == (Input("train", "file:///data/train"),
                        Input("labels", "az://c/labels.csv", "mount"),
                        Input("vocab", "gs://b/vocab"))


def test_inputs_are_baked_into_job_json_and_shown_by_inspect(proj):
    s = spec(proj, script_params={"--data": {"download": "file:///d"}})
    job = json.loads(job_for(s).to_json())
    assert job["inputs"] == [{"name": "data", "uri": "file:///d", "mode": "download",
                              "arg": True}]
    assert s.to_dict()["inputs"] == job["inputs"]


@pytest.mark.parametrize(("data", "key", "says", "fix"), [
    ({"inputs": {"d": "http://host/x"}}, "inputs", "http:// is not a store",
     "use file://, s3://"),
    ({"inputs": {"d": "/data/x"}}, "inputs", "is a path, not a URI", "write file:///data/x"),
    ({"inputs": {"d": {"uri": "file:///x", "mode": "stream"}}}, "inputs", "mode 'stream'",
     "use mode: download or mode: mount"),
    ({"inputs": {"d": {"copy": "file:///x"}}}, "inputs", "neither a URI nor",
     "{download: s3://bucket/train}"),
    ({"inputs": ["file:///x"]}, "inputs", "not a mapping", "write inputs: {train:"),
    ({"inputs": {"my data": "file:///x"}}, "inputs", "not a usable input name", "letters"),
    ({"inputs": {"d": "s3://bucket/x"}}, "inputs", "the image gets no s3 backend",
     "add `upload_extras: [s3]`"),
    ({"script_params": {"--d": {"download": "az://c/x"}}}, "script_params",
     "the image gets no azure backend", "--upload-extra azure"),
    ({"script_params": {"--d": {"download": "ftp://h/x"}}}, "script_params",
     "ftp:// is not a store", "use file://"),
    ({"script_params": {"--a-b": {"download": "file:///x"}}, "inputs": {"a_b": "file:///y"}},
     "inputs", "both become TFBUILD_INPUT_A_B", "rename one"),
])
def test_bad_inputs_name_the_key_and_the_fix(proj, data, key, says, fix):
    e = fails(proj, **data)
    assert e.field == key
    assert says in str(e) and fix in e.fix


def test_inputs_is_a_tfbuild_key_now(proj):
    assert spec(proj, inputs={}).inputs == ()


def test_the_image_label_records_inputs_only_when_there_are_some(proj):
    from tfbuild.image.render import label_spec

    with_inputs = spec(proj, inputs={"d": "file:///data"})
    assert label_spec(with_inputs)["inputs"] == [
        {"name": "d", "uri": "file:///data", "mode": "download", "arg": False}]
    assert "inputs" not in label_spec(spec(proj))
