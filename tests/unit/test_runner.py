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
