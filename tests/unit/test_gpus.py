"""GPU assignment (pure; no GPU on this machine, so the device list is given)."""

from tfbuild_agent.launch.gpus import device_for, processes_per_node, visible_gpus


def test_devices_from_dev_entries_and_cuda_override():
    dev = ["null", "nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia3"]
    assert visible_gpus({}, dev) == ["0", "1", "2"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}, dev) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}, dev) == []
    assert visible_gpus({}, ["null"]) == []


def test_one_process_per_gpu_by_default_on_gpu_jobs():
    assert processes_per_node(1, explicit=False, use_gpu=True, gpus=["0", "1", "2", "3"]) == 4
    assert processes_per_node(1, explicit=True, use_gpu=True, gpus=["0", "1"]) == 1
    assert processes_per_node(1, explicit=False, use_gpu=False, gpus=["0", "1"]) == 1
    assert processes_per_node(2, explicit=False, use_gpu=True, gpus=["0", "1", "2", "3"]) == 2


def test_each_local_process_gets_its_own_devices():
    gpus = ["0", "1", "2", "3"]
    assert [device_for(r, 4, gpus) for r in range(4)] == ["0", "1", "2", "3"]
    assert [device_for(r, 2, gpus) for r in range(2)] == ["0,1", "2,3"]
    assert device_for(0, 1, gpus) is None, "a single process sees every GPU"
    assert device_for(0, 2, []) is None
