"""Liger's RMSNorm / SwiGLU / RoPE kernels on CUDA when installed, transformers' torch code otherwise,
and a run that says which it uses."""

from __future__ import annotations

import sys
import types

import pytest

torch = pytest.importorskip("torch")

from engine.events import Progress  # noqa: E402
from engine.train.kernels import apply_decoder_kernels, describe_kernels  # noqa: E402
from tests.train.tiny import run_tiny, tiny_config  # noqa: E402


def tiny_model(folder):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder)


def patched_forwards(model) -> list[str]:
    """Modules whose forward was replaced on the instance, as Liger's instance patching does."""
    return [name for name, m in model.named_modules() if "forward" in m.__dict__]


def fake_liger(monkeypatch, calls: list) -> None:
    """liger_kernel's patch table with one llama entry that records its arguments."""

    def apply_liger_kernel_to_llama(rope=True, cross_entropy=False, fused_linear_cross_entropy=True,
                                    rms_norm=True, swiglu=True, model=None):
        calls.append(dict(rope=rope, cross_entropy=cross_entropy, fused_linear_cross_entropy=fused_linear_cross_entropy,
                          rms_norm=rms_norm, swiglu=swiglu, model=model))

    patch = types.ModuleType("liger_kernel.transformers.monkey_patch")
    patch.MODEL_TYPE_TO_APPLY_LIGER_FN = {"llama": apply_liger_kernel_to_llama}
    for name in ("liger_kernel", "liger_kernel.transformers"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers.monkey_patch", patch)


def test_the_cpu_runs_the_plain_decoder_and_the_run_says_so(tmp_path, model_folder):
    model = tiny_model(model_folder)
    assert apply_decoder_kernels(model, "cpu") == ()
    assert patched_forwards(model) == []

    result, events = run_tiny(tiny_config(tmp_path, max_steps=1, retention_mix=0.0), model_folder)
    assert result.status == "finished", result.reason
    said = [e.message for e in events if isinstance(e, Progress) and e.stage == "kernels"]
    assert said == ["decoder: plain torch, loss: chunked torch (fused kernels run on CUDA only); "
                    "LoRA A matrices fused per shared input (4 groups)"]


def test_cuda_without_liger_keeps_the_plain_decoder(monkeypatch, model_folder):
    monkeypatch.setitem(sys.modules, "liger_kernel", None)  # import fails, as when not installed
    model = tiny_model(model_folder)

    assert apply_decoder_kernels(model, "cuda") == ()
    assert patched_forwards(model) == []
    assert describe_kernels("cuda", (), None) == (
        "decoder: plain torch, loss: chunked torch (pip install -e '.[gpu]' adds liger-kernel)")


def test_cuda_with_liger_asks_for_the_decoder_kernels_only(monkeypatch, model_folder):
    calls: list = []
    fake_liger(monkeypatch, calls)
    model = tiny_model(model_folder)

    assert apply_decoder_kernels(model, "cuda:0") == ("rms_norm", "swiglu", "rope")
    assert calls == [dict(rope=True, cross_entropy=False, fused_linear_cross_entropy=False, rms_norm=True,
                          swiglu=True, model=model)]
    assert describe_kernels("cuda:0", ("rms_norm", "swiglu", "rope"), "liger-kernel") == (
        "decoder: liger-kernel rms_norm, swiglu, rope, loss: liger-kernel")


def test_a_model_type_liger_does_not_know_stays_plain(monkeypatch, model_folder):
    calls: list = []
    fake_liger(monkeypatch, calls)
    model = tiny_model(model_folder)
    model.config.model_type = "someother"

    assert apply_decoder_kernels(model, "cuda") == () and calls == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_liger_decoder_kernels_give_the_plain_loss_on_cuda(model_folder):
    pytest.importorskip("liger_kernel")
    from engine.train.batching import collate
    from engine.train.loss import token_loss_sum
    from tests.train.tiny import make_examples

    batch = {k: v.cuda() for k, v in collate(make_examples(6), 0).items()}
    with torch.no_grad():  # before patching: Liger's RoPE replaces transformers' module-level function
        want = token_loss_sum(tiny_model(model_folder).cuda(), batch, True).item()
    fused = tiny_model(model_folder).cuda()
    assert apply_decoder_kernels(fused, "cuda") == ("rms_norm", "swiglu", "rope")
    with torch.no_grad():
        got = token_loss_sum(fused, batch, True).item()
    assert got == pytest.approx(want, rel=1e-4)
