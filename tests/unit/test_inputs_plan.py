"""Data inputs, the pure part: names, variables, overrides, argv paths, cache keys."""

import pytest

from tfbuild_agent.errors import ConfigError
from tfbuild_agent.inputs.plan import (
    Entry,
    Input,
    apply_overrides,
    cache_key,
    effective,
    env_name,
    from_job,
    name_from_flag,
    parse_overrides,
    placeholder,
    script_path,
    substitute,
    uri_problem,
    used,
    version_of,
)
from tfbuild_agent.jobspec import JobSpec, load_job
from tfbuild_agent.launch.command import merge_script_params


def test_env_names_are_upper_case_with_underscores():
    assert env_name("data-folder") == "TFBUILD_INPUT_DATA_FOLDER"
    assert env_name("train_set") == "TFBUILD_INPUT_TRAIN_SET"


def test_flag_names_become_input_names():
    assert name_from_flag("--data-folder") == "data-folder"
    assert name_from_flag("-d") == "d"
    assert name_from_flag("--2d") == "_2d"


@pytest.mark.parametrize("uri", ["file:///data/x", "s3://b/k", "az://c/p", "gs://b",
                                 "abfs://c@acct.dfs.core.windows.net/p"])
def test_store_uris_are_accepted(uri):
    assert uri_problem(uri) is None


@pytest.mark.parametrize(("uri", "says"), [
    ("http://example.com/x", "http:// is not a store"),
    ("/data/x", "write file:///data/x"),
    ("file://data/x", "absolute path"),
    ("s3:///key", "names no bucket"),
    ("", "is not a URI"),
])
def test_bad_uris_say_what_and_how(uri, says):
    problem = uri_problem(uri)
    assert problem is not None and says in " ".join(problem)


def test_job_inputs_are_checked_when_the_job_loads():
    with pytest.raises(ConfigError, match="mode 'stream' is unknown"):
        load_job({"inputs": [{"name": "d", "uri": "s3://b/k", "mode": "stream"}]}, {})
    with pytest.raises(ConfigError, match="both become TFBUILD_INPUT_A_B"):
        from_job([{"name": "a-b", "uri": "s3://b/1"}, {"name": "a_b", "uri": "s3://b/2"}])


def test_job_json_round_trip_keeps_inputs_and_omits_them_when_none():
    job = JobSpec(inputs=({"name": "d", "uri": "s3://b/k", "mode": "download", "arg": True},))
    import json

    assert json.loads(job.to_json())["inputs"][0]["uri"] == "s3://b/k"
    assert "inputs" not in json.loads(JobSpec().to_json())
    assert load_job(json.loads(job.to_json()), {}).inputs == job.inputs


def test_overrides_replace_the_uri_keep_the_mode_and_add_new_names():
    declared = (Input("data", "s3://b/train", "mount", arg=True),)
    out = apply_overrides(declared, parse_overrides("data=file:///mnt/d\n extra=gs://b/x"))
    assert out == (Input("data", "file:///mnt/d", "mount", arg=True),
                   Input("extra", "gs://b/x"))


def test_a_bad_override_names_the_variable():
    with pytest.raises(ConfigError, match="TFBUILD_INPUTS: 's3://x' is not NAME=URI"):
        effective((), {"TFBUILD_INPUTS": "s3://x"})
    with pytest.raises(ConfigError, match="TFBUILD_INPUTS: input d: ftp:// is not a store"):
        effective((), {"TFBUILD_INPUTS": "d=ftp://h/x"})


def test_argv_placeholders_become_paths_and_a_replaced_flag_is_not_fetched():
    baked = ["--data-folder", placeholder("data-folder"), "--epochs", "3"]
    inputs = (Input("data-folder", "s3://b/d", arg=True), Input("extra", "s3://b/e"))
    assert used(inputs, merge_script_params(baked, [])) == inputs
    # `docker run IMAGE --data-folder /mine` replaces the baked flag: nothing to fetch for it
    assert used(inputs, merge_script_params(baked, ["--data-folder", "/mine"])) == inputs[1:]
    assert substitute(baked, {"data-folder": "/app/inputs/data-folder"}) == [
        "--data-folder", "/app/inputs/data-folder", "--epochs", "3"]


def test_a_file_input_keeps_its_name_a_folder_is_the_path():
    assert script_path("/app", "m", True, "s3://b/models/m.keras") == "/app/inputs/m/m.keras"
    assert script_path("/app", "d", False, "s3://b/data/") == "/app/inputs/d"


def test_cache_key_changes_with_content_not_with_listing_order():
    a, b = Entry("a.csv", 10, "ETag=1"), Entry("b.csv", 20, "ETag=2")
    key = cache_key("s3://b/d", False, [a, b])
    assert key == cache_key("s3://b/d/", False, [b, a])
    assert key != cache_key("s3://b/d", False, [a, Entry("b.csv", 20, "ETag=3")])
    assert key != cache_key("s3://b/d", False, [a, Entry("b.csv", 21, "ETag=2")])
    assert key != cache_key("s3://b/d", False, [a])
    assert key != cache_key("s3://other/d", False, [a, b])


def test_versions_prefer_the_store_etag_over_times():
    assert version_of({"ETag": '"abc"', "LastModified": "t"}) == 'ETag="abc"'
    assert version_of({"mtime": 12.5, "size": 3}) == "mtime=12.5"
    assert version_of({"size": 3}) == ""
