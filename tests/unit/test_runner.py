"""The agent's whole main path as a real process on this host (no container):
discovery (single node), planning, two local processes, output, records, upload."""

import json
import os
import subprocess
import sys


def run_agent(tmp_path, env_extra, args=()):
    script = tmp_path / "work" / "train.py"
    script.parent.mkdir()
    script.write_text(
        "import os, sys, pathlib\n"
        "print('rank', os.environ['RANK'], 'local', os.environ['LOCAL_RANK'], sys.argv[1:])\n"
        "pathlib.Path('outputs').mkdir(exist_ok=True)\n"
        "pathlib.Path('outputs', f\"r{os.environ['RANK']}.txt\").write_text('ok')\n"
        "sys.exit(int(os.environ.get('EXIT_CODE', '0')))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TFBUILD_", "TF_CONFIG"))}
    env.update({"TFBUILD_ENTRY_SCRIPT": "train.py", "TFBUILD_RUN_ID": "run-test",
                "TFBUILD_UPLOAD_TO": f"file://{tmp_path / 'store'}", **env_extra})
    return subprocess.run([sys.executable, "-m", "tfbuild_agent", "run", "--", *args],
                          cwd=script.parent, env=env, capture_output=True, text=True, timeout=120)


def test_two_local_processes_run_with_ranks_and_upload(tmp_path):
    result = run_agent(tmp_path, {"TFBUILD_PROCS_PER_NODE": "2"}, ["--lr", "0.1"])
    assert result.returncode == 0, result.stderr
    assert "[rank-0] rank 0 local 0 ['--lr', '0.1']" in result.stdout
    assert "[rank-1] rank 1 local 1 ['--lr', '0.1']" in result.stdout
    run = tmp_path / "store" / "run-test"
    assert (run / "outputs" / "r0.txt").read_text() == "ok"
    assert json.loads((run / "run.json").read_text())["status"] == "Completed"
    assert (tmp_path / "work" / "logs" / "rank-1.log").exists()


def test_a_failing_script_fails_the_agent_with_its_code_and_record(tmp_path):
    result = run_agent(tmp_path, {"EXIT_CODE": "5"})
    assert result.returncode == 5
    record = json.loads((tmp_path / "store" / "run-test" / "run.json").read_text())
    assert record["status"] == "Failed" and record["exit_code"] == 5


def test_describe_prints_the_plan(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFBUILD_")}
    env.update({"TFBUILD_HOSTS": "a,b", "TFBUILD_NODE_RANK": "1", "TFBUILD_BACKEND": "multiworker",
                "TFBUILD_NODES": "2"})
    out = subprocess.run([sys.executable, "-m", "tfbuild_agent", "describe"], env=env,
                         capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    described = json.loads(out)
    assert described["membership"]["source"] == "explicit"
    assert json.loads(described["plan"]["tasks"][0]["env"]["TF_CONFIG"])["task"]["index"] == 1


def test_sigterm_mid_run_uploads_every_file_written_before_it(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "train.py").write_text(
        "import pathlib, time\n"
        "pathlib.Path('outputs').mkdir(exist_ok=True)\n"
        "for i in range(5):\n"
        "    pathlib.Path('outputs', f'ckpt-{i}.bin').write_bytes(bytes(1000 * (i + 1)))\n"
        "print('written', flush=True)\n"
        "time.sleep(120)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TFBUILD_", "TF_CONFIG"))}
    env.update({"TFBUILD_ENTRY_SCRIPT": "train.py", "TFBUILD_RUN_ID": "run-term",
                "TFBUILD_UPLOAD_TO": f"file://{tmp_path / 'store'}"})
    agent = subprocess.Popen([sys.executable, "-m", "tfbuild_agent", "run"], cwd=work, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in agent.stdout:
        if "written" in line:
            break
    agent.send_signal(15)
    assert agent.wait(timeout=90) == 143
    out = tmp_path / "store" / "run-term" / "outputs"
    for i in range(5):
        assert (out / f"ckpt-{i}.bin").stat().st_size == 1000 * (i + 1)
    record = json.loads((tmp_path / "store" / "run-term" / "run.json").read_text())
    assert record["status"] == "Canceled"


def test_kill_9_of_node_1_fails_the_job_and_closes_every_record(tmp_path):
    """Two agents on this host (explicit discovery, a real control channel); node 1's agent
    and its task are killed with -9 mid-run. Node 0 ends Failed, not Canceled, naming the
    lost node, and closes node 1's task record too (issue 11)."""
    import signal
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agents, works = [], []
    for rank in range(2):
        work = tmp_path / f"node{rank}"
        work.mkdir()
        (work / "train.py").write_text("import time\nprint('started', flush=True)\n"
                                       "time.sleep(120)\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TFBUILD_", "TF_"))}
        env.update({"TFBUILD_ENTRY_SCRIPT": "train.py", "TFBUILD_RUN_ID": "run-k9",
                    "TFBUILD_HOSTS": "127.0.0.1,127.0.0.1", "TFBUILD_NODE_RANK": str(rank),
                    "TFBUILD_NODES": "2", "TFBUILD_BACKEND": "multiworker",
                    "TFBUILD_NODE_ID": f"n{rank}", "TFBUILD_JOB_TOKEN": "k9-token",
                    "TFBUILD_CONTROL_PORT": str(port), "TFBUILD_PORT": str(port + 10)})
        agents.append(subprocess.Popen(
            [sys.executable, "-m", "tfbuild_agent", "run"], cwd=work, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True))  # its own group: -9 takes the agent and its task
        works.append(work)
    try:
        for agent in agents:
            for line in agent.stdout:
                if "started" in line:
                    break
        os.killpg(agents[1].pid, signal.SIGKILL)
        killed = time.monotonic()
        code = agents[0].wait(timeout=60)
        stderr = agents[0].stderr.read()
        assert code == 1, stderr
        assert time.monotonic() - killed < 30
        records = works[0] / "logs" / ".tfbuild"
        mine = json.loads((records / "run-worker-0.json").read_text())
        assert mine["status"] == "Failed", mine
        assert "node n1 (rank 1) lost" in mine["reason"]
        theirs = json.loads((records / "run-worker-1.json").read_text())
        assert theirs["status"] == "Failed" and theirs["reason"].startswith("lost: node n1")
    finally:
        for agent in agents:
            if agent.poll() is None:
                os.killpg(agent.pid, signal.SIGKILL)
            agent.wait()


def test_file_inputs_are_fetched_into_the_cache_linked_and_passed_in_argv(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("alpha")
    (data / "sub" / "b.txt").write_text("beta")
    (tmp_path / "one.csv").write_text("x,y\n")
    job = {"entry_script": "train.py",
           "script_params": ["--data", "${tfbuild.input.data}"],
           "inputs": [{"name": "data", "uri": f"file://{data}", "mode": "download", "arg": True}]}
    work = tmp_path / "work"
    work.mkdir()
    (work / "job.json").write_text(json.dumps(job))
    (work / "train.py").write_text(
        "import os, sys, pathlib\n"
        "d = pathlib.Path(sys.argv[2])\n"
        "print('argv', sys.argv[1:])\n"
        "print('read', (d / 'a.txt').read_text(), (d / 'sub' / 'b.txt').read_text())\n"
        "print('env', os.environ['TFBUILD_INPUT_DATA'] == sys.argv[2])\n"
        "print('one', pathlib.Path(os.environ['TFBUILD_INPUT_ONE_CSV']).read_text().strip())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TFBUILD_", "TF_CONFIG"))}
    env.update({"TFBUILD_RUN_ID": "run-in", "TFBUILD_UPLOAD_TO": f"file://{tmp_path / 'store'}",
                "TFBUILD_INPUT_CACHE": str(tmp_path / "cache"),
                "TFBUILD_INPUTS": f"one_csv=file://{tmp_path / 'one.csv'}"})
    agent = [sys.executable, "-c",
             "import sys, json, pathlib; import tfbuild_agent.jobspec as j; "
             "j.BAKED_JOB_PATH = pathlib.Path('job.json'); "
             "j.read_baked_job.__defaults__ = (j.BAKED_JOB_PATH,); "
             "from tfbuild_agent.cli import main; sys.exit(main(['run']))"]
    first = subprocess.run(agent, cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert f"['--data', '{work}/inputs/data']" in first.stdout
    assert "read alpha beta" in first.stdout and "env True" in first.stdout
    assert "one x,y" in first.stdout
    assert "input data: fetching" in first.stderr and "sizes verified" in first.stderr
    again = subprocess.run(agent, cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "is in the node cache" in again.stderr and "fetching" not in again.stderr

    (work / "job.json").write_text(json.dumps({**job, "inputs": [
        {"name": "data", "uri": f"file://{tmp_path / 'nope'}", "mode": "download", "arg": True}]}))
    failed = subprocess.run(agent, cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert failed.returncode != 0
    assert f"file://{tmp_path / 'nope'} does not exist" in failed.stderr
    assert "argv" not in failed.stdout
    record = json.loads((tmp_path / "store" / "run-in" / "run.json").read_text())
    assert record["status"] == "Failed" and "nope does not exist" in record["reason"]


def test_on_a_two_node_job_only_rank_0s_node_owns_outputs(tmp_path):
    """Two agents on this host, two processes each, one store: node 0's outputs/ is the
    run's outputs/, node 1's goes under its lowest-rank task (worker-2), never over it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = tmp_path / "store"
    agents = []
    for rank in range(2):
        work = tmp_path / f"node{rank}"
        work.mkdir()
        (work / "train.py").write_text(
            "import os, pathlib\n"
            "pathlib.Path('outputs').mkdir(exist_ok=True)\n"
            "pathlib.Path('outputs', f\"r{os.environ['RANK']}.txt\").write_text('ok')\n"
            "pathlib.Path('outputs', 'model.txt').write_text(os.environ['NODE_RANK'])\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TFBUILD_", "TF_"))}
        env.update({"TFBUILD_ENTRY_SCRIPT": "train.py", "TFBUILD_RUN_ID": "run-own",
                    "TFBUILD_HOSTS": "127.0.0.1,127.0.0.1", "TFBUILD_NODE_RANK": str(rank),
                    "TFBUILD_NODES": "2", "TFBUILD_BACKEND": "multiworker",
                    "TFBUILD_PROCS_PER_NODE": "2", "TFBUILD_NODE_ID": f"n{rank}",
                    "TFBUILD_JOB_TOKEN": "own-token", "TFBUILD_CONTROL_PORT": str(port),
                    "TFBUILD_PORT": str(port + 10), "TFBUILD_UPLOAD_TO": f"file://{store}"})
        agents.append(subprocess.Popen(
            [sys.executable, "-m", "tfbuild_agent", "run"], cwd=work, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    codes = [a.wait(timeout=120) for a in agents]
    assert codes == [0, 0], [a.stderr.read() for a in agents]
    run = store / "run-own"
    assert sorted(p.name for p in (run / "outputs").iterdir()) == ["model.txt", "r0.txt", "r1.txt"]
    assert (run / "outputs" / "model.txt").read_text() == "0"
    theirs = run / "tasks" / "worker-2" / "outputs"
    assert sorted(p.name for p in theirs.iterdir()) == ["model.txt", "r2.txt", "r3.txt"]
    assert (theirs / "model.txt").read_text() == "1"
    assert json.loads((run / "run.json").read_text())["status"] == "Completed"
