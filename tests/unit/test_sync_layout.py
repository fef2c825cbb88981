"""Where local files go in the store, and which local files are synced at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfbuild_agent.errors import ConfigError
from tfbuild_agent.sync.layout import (
    check_name,
    is_record_key,
    local_rel,
    remote_key,
    task_record_key,
)

W = Path("/app")


def test_the_owner_writes_the_run_level_folders_others_their_own() -> None:
    assert remote_key("outputs/model.h5", "chief-0", owns_outputs=True) == "outputs/model.h5"
    assert remote_key("logs/tb/ev", "worker-1", owns_outputs=False) == "tasks/worker-1/logs/tb/ev"
    assert task_record_key("ps-0") == "tasks/ps-0/run.json"


@pytest.mark.parametrize(
    ("path", "rel"),
    [
        ("/app/outputs/model.h5", "outputs/model.h5"),
        ("/app/logs/tb/events.out.tfevents.1.host", "logs/tb/events.out.tfevents.1.host"),
        ("/app/logs/.tfbuild/manifest-x.jsonl", None),  # the agent's own state
        ("/app/logs/.tfbuild/staging-x/abc", None),
        ("/app/train.py", None),
        ("/app/outputs", None),
        ("/elsewhere/outputs/a", None),
    ],
)
def test_local_rel_keeps_only_outputs_and_logs(path: str, rel: str | None) -> None:
    assert local_rel(path, W) == rel


@pytest.mark.parametrize("name", ["", "../up", "a/b", "-x", "a..b", "x" * 129, "tab\t"])
def test_names_that_are_not_plain_folder_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="cannot be used as a folder name"):
        check_name("run id", name)


def test_plain_names_pass() -> None:
    for name in ("run-2024.05.01_1", "worker-0", "A1"):
        assert check_name("task name", name) == name


def test_record_keys() -> None:
    assert is_record_key("run.json") and is_record_key("tasks/worker-0/run.json")
    assert not is_record_key("outputs/run.json")
    assert not is_record_key("tasks/worker-0/outputs/run.json")


def test_a_name_of_128_characters_is_the_longest_that_passes() -> None:
    assert check_name("run id", "x" * 128) == "x" * 128


def test_only_the_agents_own_folder_under_logs_is_skipped() -> None:
    assert local_rel("/app/outputs/.tfbuild/model.h5", W) == "outputs/.tfbuild/model.h5"
    assert local_rel("/app/logs/tfbuild/train.log", W) == "logs/tfbuild/train.log"
    assert local_rel("/app/logs/train.log", W) == "logs/train.log"


def test_only_the_job_record_and_task_records_are_record_keys() -> None:
    assert not is_record_key("tasks/run.json")
    assert not is_record_key("tasks/a/b/run.json")
    assert not is_record_key("tasks/worker-0/run.json.part")
    assert not is_record_key("other/worker-0/run.json")
