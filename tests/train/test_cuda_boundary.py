"""What a run does at the CUDA boundary, with torch.cuda faked below its public functions: the random
state a checkpoint keeps and puts back (issue 26)."""

from __future__ import annotations

import pytest
import torch

from engine.train.checkpoint import restore_rng, rng_state


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
