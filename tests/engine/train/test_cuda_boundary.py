"""What a run does at the CUDA boundary, with torch.cuda and NVML faked below their public functions: the
GPU it computes on, the environment of its processes, the random state a checkpoint keeps and puts
back (issue 26)."""

from __future__ import annotations

import os
import signal
import threading
from types import SimpleNamespace

import pytest
import torch

import engine.train.devices as devices
import engine.train.launch as launch
import engine.train.load as load
from engine.events import Progress, TrainFailed
from engine.hardware.probe import probe
from engine.train.checkpoint import restore_rng, rng_state
from engine.train.methods import Precision
from engine.train.preflight import PreflightError
from tests.engine.hardware.conftest import FakeCard, FakeNvml
from tests.engine.train.test_train_api import api_config

SLOW = FakeCard("NVIDIA GeForce RTX 3060", 12.0, uuid="GPU-aaaaaaaa-0000-0000-0000-000000000000")
FAST = FakeCard("NVIDIA GeForce RTX 4090", 24.0, uuid="GPU-bbbbbbbb-0000-0000-0000-000000000000")


def machine(monkeypatch, cards, cuda_order, hidden=()) -> list[int]:
    """NVML lists `cards` in PCI order; CUDA shows them in `cuda_order` (fastest first by default), less
    the `hidden` ones (a CUDA_VISIBLE_DEVICES the user set). Returns the devices set_device was given."""
    nvml = FakeNvml(cards)
    shown = [cards[i] for i in cuda_order if i not in hidden]
    chosen: list[int] = []
    monkeypatch.setattr(devices, "probe", lambda: probe(nvml))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(shown))
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: SimpleNamespace(uuid=shown[i].uuid.removeprefix("GPU-")))
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: chosen[-1] if chosen else 0)
    if hidden:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", ",".join(str(cuda_order.index(i)) for i in cuda_order
                                                              if i not in hidden))
    else:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return chosen


def test_empty_gpus_trains_on_the_freest_gpu_in_cudas_numbering(monkeypatch):
    busy = FakeCard(FAST.name, 24.0, used_gib=20.0, uuid=FAST.uuid)
    chosen = machine(monkeypatch, [SLOW, busy], cuda_order=[1, 0])  # CUDA: the 4090 first
    said = devices.select_gpu("")
    assert chosen == [1]  # the 3060: NVML's GPU 0 (11.6 GiB free), CUDA's device 1
    assert said.startswith("training on GPU 0 (NVIDIA GeForce RTX 3060, 11.6 GiB free, CUDA's device 1")


@pytest.mark.parametrize(("gpus", "cuda"), [("0", 1), ("1", 0)])
def test_a_named_gpu_is_nvmls_index_whatever_cudas_order(monkeypatch, gpus, cuda):
    chosen = machine(monkeypatch, [SLOW, FAST], cuda_order=[1, 0])
    devices.select_gpu(gpus)
    assert chosen == [cuda]


def test_a_gpu_that_cuda_visible_devices_hides_is_refused_and_the_others_named(monkeypatch):
    chosen = machine(monkeypatch, [SLOW, FAST], cuda_order=[1, 0], hidden=(0,))
    with pytest.raises(PreflightError) as refused:
        devices.select_gpu("0")
    assert "names GPU 0 (NVIDIA GeForce RTX 3060), which CUDA_VISIBLE_DEVICES='0' hides" in refused.value.reason
    assert "set gpus to 1" in refused.value.advice
    devices.select_gpu("")  # the freest of those it shows
    assert chosen == [0]
    with pytest.raises(PreflightError, match="names GPU 5, and this machine has 2"):
        devices.select_gpu("5")


def test_one_process_selects_its_gpu_before_the_memory_check(tmp_path, model_folder, monkeypatch):
    chosen = machine(monkeypatch, [SLOW, FAST], cuda_order=[1, 0])
    asked: list = []

    def check_fits(*_args):
        asked.append(list(chosen))
        raise PreflightError("stop here", "")

    monkeypatch.setattr(load, "choose_precision", lambda *a, **k: Precision("cuda", torch.bfloat16, torch.bfloat16,
                                                                             False))
    monkeypatch.setattr(load, "check_fits", check_fits)
    events: list = []
    load.train_here(api_config(tmp_path, model_folder, gpus="0"), events.append, threading.Event())
    assert asked == [[1]]
    assert [e.message for e in events if isinstance(e, Progress) and e.stage == "gpu"] == [
        "training on GPU 0 (NVIDIA GeForce RTX 3060, 11.6 GiB free, CUDA's device 1)"]


def test_several_processes_each_see_their_gpu_by_uuid(tmp_path, model_folder, monkeypatch):
    machine(monkeypatch, [SLOW, FAST], cuda_order=[1, 0])
    started: list = []

    class Processes:
        def join(self, timeout=None, grace_period=None):
            return True

    def start_processes(fn, args, nprocs, join, start_method):
        started.append(args)
        return Processes()

    monkeypatch.setattr(torch.multiprocessing, "start_processes", start_processes)
    monkeypatch.setattr(launch, "choose_strategy", lambda config: "ddp")
    launch.train(api_config(tmp_path, model_folder, gpus="1,0"), lambda e: None, threading.Event())
    envs = started[0][7]
    assert envs == [{"CUDA_VISIBLE_DEVICES": FAST.uuid}, {"CUDA_VISIBLE_DEVICES": SLOW.uuid}]

    seen: list = []
    for name in ("CUDA_VISIBLE_DEVICES", "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.setenv(name, "before")  # put back after the test
    monkeypatch.setattr(signal, "signal", lambda *a: None)
    monkeypatch.setattr(launch, "_run_rank", lambda *a: seen.append(os.environ["CUDA_VISIBLE_DEVICES"]) or True)
    launch._rank_main(1, 2, 0, started[0][2], None, "1,0", "ddp", "cuda", envs, None, threading.Event())
    assert seen == [SLOW.uuid]


def test_several_processes_refuse_a_gpu_the_users_cuda_visible_devices_hides(tmp_path, model_folder, monkeypatch):
    machine(monkeypatch, [SLOW, FAST], cuda_order=[1, 0], hidden=(1,))
    monkeypatch.setattr(torch.multiprocessing, "start_processes", lambda *a, **k: pytest.fail("nothing may start"))
    events: list = []
    result = launch.train(api_config(tmp_path, model_folder, gpus="0,1"), events.append, threading.Event())
    assert result.status == "failed" and isinstance(events[-1], TrainFailed)
    assert "names GPU 1 (NVIDIA GeForce RTX 4090), which CUDA_VISIBLE_DEVICES='1' hides" in result.reason


def test_training_processes_grow_allocator_segments_unless_the_user_set_the_allocator(tmp_path, model_folder,
                                                                                      monkeypatch):
    for name in (*devices.ALLOCATOR_VARIABLES, devices.ONEDNN_CACHE[0]):
        monkeypatch.setenv(name, "before")  # put back after the test
        monkeypatch.delenv(name)
    launch.train(api_config(tmp_path, model_folder, dataset=str(tmp_path / "missing.jsonl")), lambda e: None,
                 threading.Event())
    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    mine = {"PYTORCH_ALLOC_CONF": "max_split_size_mb:128", "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "1024"}
    devices.training_environment(mine)
    assert mine == {"PYTORCH_ALLOC_CONF": "max_split_size_mb:128", "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "1024"}


def test_cpu_training_processes_bound_onednn_s_cache_of_shapes_unless_the_user_set_it():
    environ: dict[str, str] = {}
    devices.training_environment(environ)
    assert environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "64"


class FakeGpus:
    """torch.cuda's per-device random state, as the driver has it: an index past the visible GPUs fails."""

    def __init__(self, count: int, current: int = 0):
        self.count, self.current = count, current
        self.states = {i: torch.full((16,), i, dtype=torch.uint8) for i in range(count)}

    def _index(self, device) -> int:
        index = self.current if device in ("cuda", None) else int(device)
        if index >= self.count:
            raise RuntimeError("CUDA error: invalid device ordinal")
        return index

    def get_rng_state(self, device="cuda"):
        return self.states[self._index(device)].clone()

    def set_rng_state(self, state, device="cuda"):
        self.states[self._index(device)] = state.clone()

    def install(self, monkeypatch) -> FakeGpus:
        # torch.cuda.get/set_rng_state_all stay torch's own: they loop over these.
        for name in ("get_rng_state", "set_rng_state"):
            monkeypatch.setattr(torch.cuda, name, getattr(self, name))
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: self.count)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: self.current)
        return self


def saved_and_read(rng, tmp_path):
    torch.save(rng, tmp_path / "rng.pt")
    return torch.load(tmp_path / "rng.pt", weights_only=True)


def test_a_checkpoint_keeps_the_random_state_of_its_own_gpu_alone(monkeypatch, tmp_path):
    gpus = FakeGpus(count=2, current=1).install(monkeypatch)
    rng = saved_and_read(rng_state(), tmp_path)
    assert torch.equal(rng["cuda"], gpus.states[1])


@pytest.mark.parametrize("saved_on", [2, 4])
def test_a_run_saved_seeing_more_gpus_resumes_on_one(monkeypatch, tmp_path, saved_on):
    """Checkpoints written before held every visible GPU's state; `set_rng_state_all` of them on fewer
    GPUs failed with an invalid device ordinal."""
    old = {"cpu": torch.get_rng_state(), "cuda": [torch.full((16,), 50 + i, dtype=torch.uint8) for i in range(saved_on)]}
    gpus = FakeGpus(count=1).install(monkeypatch)
    restore_rng(saved_and_read(old, tmp_path))
    assert torch.equal(gpus.states[0], old["cuda"][0])


def test_a_process_of_several_takes_its_own_gpus_state_back(monkeypatch, tmp_path):
    saved = FakeGpus(count=2, current=1).install(monkeypatch)
    saved.states[1] = torch.full((16,), 77, dtype=torch.uint8)
    rng = saved_and_read(rng_state(), tmp_path)
    resumed = FakeGpus(count=4, current=3).install(monkeypatch)
    restore_rng(rng)
    assert torch.equal(resumed.states[3], saved.states[1])
    assert all(torch.equal(resumed.states[i], torch.full((16,), i, dtype=torch.uint8)) for i in range(3))
