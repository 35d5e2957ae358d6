"""LoRA dropout on the CPU from packed random bits: torch's rate and scaling, seeded, off in eval."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from engine.train.dropout import use_packed_bits_dropout  # noqa: E402


def dropout(p: float):
    holder = torch.nn.Module()
    holder.lora_dropout = torch.nn.ModuleDict({"default": torch.nn.Dropout(p)})
    assert use_packed_bits_dropout(holder, "cpu") == (1 if p > 0 else 0)
    return holder.lora_dropout["default"]


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_the_rate_and_the_scaling_are_torchs(p):
    layer = dropout(p).train()
    x = torch.ones(1000, 1000)
    out = layer(x)
    dropped = (out == 0).float().mean().item()
    assert dropped == pytest.approx(p, abs=0.003)
    assert torch.allclose(out[out != 0], torch.full_like(out[out != 0], 1 / (1 - p)), rtol=1e-4)
    assert out.mean().item() == pytest.approx(1.0, abs=0.01)


def test_masks_follow_the_seed_and_change_between_calls():
    layer = dropout(0.1).train()
    x = torch.randn(64, 96)
    torch.manual_seed(3)
    first, second = layer(x), layer(x)
    torch.manual_seed(3)
    assert torch.equal(layer(x), first)
    assert not torch.equal(first, second)


def test_the_gradient_passes_where_the_mask_keeps():
    layer = dropout(0.2).train()
    x = torch.randn(50, 40, requires_grad=True)
    out = layer(x)
    out.sum().backward()
    kept = out != 0
    assert torch.allclose(x.grad, kept.float() / (1 - 0.2), rtol=1e-4)


def test_eval_mode_and_zero_rate_pass_the_input_through():
    x = torch.randn(8, 8)
    assert torch.equal(dropout(0.3).eval()(x), x)
    assert torch.equal(dropout(0.0).train()(x), x)


def test_cuda_keeps_torchs_dropout():
    holder = torch.nn.Module()
    holder.lora_dropout = torch.nn.ModuleDict({"default": torch.nn.Dropout(0.1)})
    assert use_packed_bits_dropout(holder, "cuda:0") == 0
    assert "forward" not in holder.lora_dropout["default"].__dict__
