import json

import pytest
from discovery_fakes import make_ctx

from tfbuild_agent.discovery import tf_config
from tfbuild_agent.errors import DiscoveryError

# What Kubeflow's training-operator puts into every TFJob pod (namespace kubeflow).
KUBEFLOW_CLUSTER = {
    "chief": ["dist-mnist-chief-0.kubeflow.svc:2222"],
    "ps": ["dist-mnist-ps-0.kubeflow.svc:2222", "dist-mnist-ps-1.kubeflow.svc:2222"],
    "worker": ["dist-mnist-worker-0.kubeflow.svc:2222", "dist-mnist-worker-1.kubeflow.svc:2222"],
}


def tfjob_env(task_type, index, cluster=KUBEFLOW_CLUSTER):
    return {
        "TF_CONFIG": json.dumps(
            {
                "cluster": cluster,
                "task": {"type": task_type, "index": index},
                "environment": "cloud",
            }
        )
    }


def test_not_applicable_when_unset_empty_or_without_cluster():
    assert tf_config.discover(make_ctx({})) is None
    assert tf_config.discover(make_ctx({"TF_CONFIG": "  "})) is None
    assert tf_config.discover(make_ctx({"TF_CONFIG": "{}"})) is None
    assert tf_config.discover(make_ctx({"TF_CONFIG": '{"environment": "cloud"}'})) is None


@pytest.mark.parametrize(
    ("task_type", "index", "rank"),
    [("chief", 0, 0), ("worker", 0, 1), ("worker", 1, 2), ("ps", 0, 3), ("ps", 1, 4)],
)
def test_kubeflow_tfjob_hosts_in_documented_order(task_type, index, rank):
    m = tf_config.discover(make_ctx(tfjob_env(task_type, index)))
    assert m.source == "tf_config"
    assert m.hosts == (
        "dist-mnist-chief-0.kubeflow.svc",
        "dist-mnist-worker-0.kubeflow.svc",
        "dist-mnist-worker-1.kubeflow.svc",
        "dist-mnist-ps-0.kubeflow.svc",
        "dist-mnist-ps-1.kubeflow.svc",
    )
    assert m.node_rank == rank
    assert m.tf_config["task"] == {"type": task_type, "index": index}
    assert m.tf_config["cluster"] == KUBEFLOW_CLUSTER  # kept as is


def test_tf1_master_is_accepted_and_ordered_first():
    cluster = {"worker": ["10.0.0.5:2222"], "master": ["10.0.0.4:2222"], "ps": ["10.0.0.6:2222"]}
    m = tf_config.discover(make_ctx(tfjob_env("master", 0, cluster)))
    assert m.hosts == ("10.0.0.4", "10.0.0.5", "10.0.0.6")
    assert m.node_rank == 0


def test_evaluator_is_not_a_peer_but_points_at_itself():
    cluster = {**KUBEFLOW_CLUSTER, "evaluator": ["dist-mnist-evaluator-0.kubeflow.svc:2222"]}
    worker = tf_config.discover(make_ctx(tfjob_env("worker", 0, cluster)))
    assert "dist-mnist-evaluator-0.kubeflow.svc" not in worker.hosts
    evaluator = tf_config.discover(make_ctx(tfjob_env("evaluator", 0, cluster)))
    assert evaluator.hosts[:-1] == worker.hosts
    assert evaluator.hosts[-1] == "dist-mnist-evaluator-0.kubeflow.svc"
    assert evaluator.node_rank == len(worker.hosts)


def test_evaluator_missing_from_cluster_uses_hostname():
    m = tf_config.discover(make_ctx(tfjob_env("evaluator", 0), hostname="eval-pod"))
    assert m.hosts[-1] == "eval-pod" and m.node_rank == 5


def test_sparse_cluster_and_ipv6_addresses():
    cluster = {"worker": {"1": "[fd00::b]:2222", "0": "[fd00::a]:2222"}, "ps": ["[fd00::c]:2222"]}
    m = tf_config.discover(make_ctx(tfjob_env("worker", 1, cluster)))
    assert m.hosts == ("fd00::a", "fd00::b", "fd00::c")
    assert m.node_rank == 1


def test_malformed_json_names_the_position():
    bad = '{"cluster": {"worker": ["a:2222"]}, "task": {"type" "worker"}}'
    with pytest.raises(DiscoveryError) as info:
        tf_config.discover(make_ctx({"TF_CONFIG": bad}))
    message = str(info.value)
    assert "TF_CONFIG is not valid JSON" in message
    pos = bad.index('"worker"}')  # where the ':' is missing
    assert f"line 1 column {pos + 1} (character {pos})" in message
    assert '"type" <here>"worker"' in message


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ('["a:1"]', "must be a JSON object"),
        ('{"cluster": {"worker": ["a:1"]}}', 'no "task"'),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}',
            "task worker 3.*1 worker entry",
        ),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "boss", "index": 0}}',
            "'boss' is not one of",
        ),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": -1}}', "index -1"),
        (
            '{"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}',
            "must be a list",
        ),
        (
            '{"cluster": {"worker": [2222]}, "task": {"type": "worker", "index": 0}}',
            r"cluster.worker\[0\] is 2222",
        ),
        ('{"cluster": ["a"], "task": {"type": "worker", "index": 0}}', "role -> addresses"),
    ],
)
def test_invalid_tf_config(config, fragment):
    with pytest.raises(DiscoveryError, match=fragment):
        tf_config.discover(make_ctx({"TF_CONFIG": config}))


def test_read_task_takes_index_0_when_absent_and_digit_strings():
    from tfbuild_agent.discovery.tf_config import read_task

    assert read_task({"task": {"type": "chief"}}) == ("chief", 0)
    assert read_task({"task": {"type": "worker", "index": "3"}}) == ("worker", 3)


@pytest.mark.parametrize("index", [True, -1, "x", 1.5])
def test_read_task_refuses_an_index_that_is_not_a_whole_number(index):
    from tfbuild_agent.discovery.tf_config import read_task

    with pytest.raises(DiscoveryError, match="is not a whole number >= 0"):
        read_task({"task": {"type": "worker", "index": index}})


def test_invalid_json_is_quoted_30_characters_either_side_of_the_error():
    from tfbuild_agent.discovery.tf_config import parse

    text = "{" + '"a": 1, ' * 10 + "oops" + ', "b": 2' * 10 + "}"
    pos = text.index("oops")
    with pytest.raises(DiscoveryError) as err:
        parse(text)
    assert f"...{text[pos - 30:pos]}<here>{text[pos:pos + 30]}..." in str(err.value)
    with pytest.raises(DiscoveryError, match=r"\.\.\.\{<here>oops\}\.\.\."):
        parse("{oops}")


@pytest.mark.parametrize("cluster", [{"worker": {"zero": "w:1"}}, {"worker": "w:1"},
                                     {"worker": [7]}, {"worker": ["w:port"]}])
def test_a_malformed_cluster_says_which_role_is_wrong(cluster):
    from tfbuild_agent.discovery.tf_config import cluster_members

    with pytest.raises(DiscoveryError, match=r"cluster\.worker"):
        cluster_members(cluster)
