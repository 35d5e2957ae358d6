"""Liger's RMSNorm / SwiGLU / RoPE kernels on CUDA when installed, transformers' torch code otherwise,
and a run that says which it uses."""

from __future__ import annotations

import sys
import types

import pytest

torch = pytest.importorskip("torch")

from engine.events import Progress  # noqa: E402
from engine.train.kernels import DecoderKernels, apply_decoder_kernels, describe_kernels  # noqa: E402
from tests.engine.train.tiny import run_tiny, tiny_config  # noqa: E402


def tiny_model(folder):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder)


def patched_forwards(model) -> list[str]:
    """Modules whose forward was replaced on the instance, as Liger's instance patching does."""
    return [name for name, m in model.named_modules() if "forward" in m.__dict__]


def fake_liger(monkeypatch, calls: list, fails: str = "") -> None:
    """liger_kernel's patch table with one llama entry that records its arguments and patches as Liger's
    does: transformers' modeling_llama globals for the whole process (RoPE lives only there), then the
    given model's norms and MLPs on the instance. The stand-ins compute what they replace, on the CPU.
    `fails`: "apply" raises inside the patch, "forward" patches a norm whose forward raises (Triton
    that cannot compile for this GPU)."""
    from transformers.models.llama import modeling_llama

    real_rope, real_norm = modeling_llama.apply_rotary_pos_emb, modeling_llama.LlamaRMSNorm

    def liger_rotary_pos_emb(*args, **kwargs):
        calls.append("rope")
        return real_rope(*args, **kwargs)

    class LigerRMSNorm(real_norm):
        pass

    def broken_forward(self, hidden):
        raise RuntimeError("triton: no kernel image is available for execution on the device")

    def apply_liger_kernel_to_llama(rope=True, cross_entropy=False, fused_linear_cross_entropy=True,
                                    rms_norm=True, swiglu=True, model=None):
        calls.append(dict(rope=rope, cross_entropy=cross_entropy, fused_linear_cross_entropy=fused_linear_cross_entropy,
                          rms_norm=rms_norm, swiglu=swiglu, model=model))
        if rope:
            modeling_llama.apply_rotary_pos_emb = liger_rotary_pos_emb
        if rms_norm:
            modeling_llama.LlamaRMSNorm = LigerRMSNorm
        if fails == "apply":
            raise RuntimeError("liger_kernel 0.x does not know transformers 9")
        if model is not None and rms_norm:
            norm = model.model.norm
            norm.__dict__["forward"] = (broken_forward if fails == "forward" else real_norm.forward).__get__(norm)

    patch = types.ModuleType("liger_kernel.transformers.monkey_patch")
    patch.MODEL_TYPE_TO_APPLY_LIGER_FN = {"llama": apply_liger_kernel_to_llama}
    for name in ("liger_kernel", "liger_kernel.transformers"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers.monkey_patch", patch)
    # What a test leaves behind is put back even when the code under test does not.
    monkeypatch.setattr(modeling_llama, "apply_rotary_pos_emb", real_rope)
    monkeypatch.setattr(modeling_llama, "LlamaRMSNorm", real_norm)


@pytest.mark.slow
def test_the_cpu_runs_the_plain_decoder_and_the_run_says_so(tmp_path, model_folder):
    model = tiny_model(model_folder)
    assert apply_decoder_kernels(model, "cpu").names == ()
    assert patched_forwards(model) == []

    result, events = run_tiny(tiny_config(tmp_path, max_steps=1, retention_mix=0.0), model_folder)
    assert result.status == "finished", result.reason
    said = [e.message for e in events if isinstance(e, Progress) and e.stage == "kernels"]
    assert said == ["decoder: plain torch, loss: chunked torch (fused kernels run on CUDA only); "
                    "LoRA A matrices fused per shared input (4 groups)"]


def test_cuda_without_liger_keeps_the_plain_decoder(monkeypatch, model_folder):
    monkeypatch.setitem(sys.modules, "liger_kernel", None)  # import fails, as when not installed
    model = tiny_model(model_folder)

    kernels = apply_decoder_kernels(model, "cuda")
    assert kernels == DecoderKernels()
    assert patched_forwards(model) == []
    assert describe_kernels("cuda", kernels, None) == (
        "decoder: plain torch, loss: chunked torch (pip install -e '.[gpu]' adds liger-kernel)")


def test_cuda_with_liger_asks_for_the_decoder_kernels_only(monkeypatch, model_folder):
    calls: list = []
    fake_liger(monkeypatch, calls)
    model = tiny_model(model_folder)

    kernels = apply_decoder_kernels(model, "cuda:0")
    assert kernels.names == ("rms_norm", "swiglu", "rope") and not kernels.failure
    assert calls[0] == dict(rope=True, cross_entropy=False, fused_linear_cross_entropy=False, rms_norm=True,
                            swiglu=True, model=model)
    assert "rope" in calls  # the first forward went through the patched model
    assert describe_kernels("cuda:0", kernels, "liger-kernel") == (
        "decoder: liger-kernel rms_norm, swiglu, rope, loss: liger-kernel")


def test_the_process_wide_patch_is_undone_and_the_models_own_stays(monkeypatch, model_folder):
    from transformers.models.llama import modeling_llama

    real_rope, real_norm = modeling_llama.apply_rotary_pos_emb, modeling_llama.LlamaRMSNorm
    fake_liger(monkeypatch, [])
    model = tiny_model(model_folder)
    kernels = apply_decoder_kernels(model, "cuda")
    assert modeling_llama.apply_rotary_pos_emb is not real_rope  # while the run trains, as Liger left it
    kernels.restore()
    assert modeling_llama.apply_rotary_pos_emb is real_rope and modeling_llama.LlamaRMSNorm is real_norm
    assert patched_forwards(model) == ["model.norm"]


@pytest.mark.slow
def test_a_run_puts_back_what_liger_changed_for_the_process(tmp_path, model_folder, monkeypatch):
    """`ftui demo` and `ftui sweep` train, then run a CPU forward in the same process: Liger's RoPE
    (a Triton kernel on a GPU) must not be in it."""
    import engine.train.setup as setup

    calls: list = []
    fake_liger(monkeypatch, calls)
    on_cuda = apply_decoder_kernels
    monkeypatch.setattr(setup, "apply_decoder_kernels", lambda model, device: on_cuda(model, "cuda"))
    result, _events = run_tiny(tiny_config(tmp_path, max_steps=1, val_split=0.0, retention_mix=0.0), model_folder)
    assert result.status == "finished", result.reason
    assert calls.count("rope") > 2  # the run trained through it (its first forward went through 2 layers)

    calls.clear()
    with torch.no_grad():
        tiny_model(model_folder)(input_ids=torch.tensor([[3, 4, 5]]))
    assert calls == []


@pytest.mark.parametrize("fails", ["apply", "forward"])
def test_a_liger_failure_is_a_named_fallback_to_plain_torch(monkeypatch, model_folder, fails):
    from transformers.models.llama import modeling_llama

    real_rope = modeling_llama.apply_rotary_pos_emb
    fake_liger(monkeypatch, [], fails=fails)
    model = tiny_model(model_folder)

    kernels = apply_decoder_kernels(model, "cuda")
    assert kernels.names == () and kernels.failure.startswith("RuntimeError: ")
    assert patched_forwards(model) == [] and modeling_llama.apply_rotary_pos_emb is real_rope
    said = describe_kernels("cuda", kernels, None)
    assert said.startswith("decoder: plain torch (liger-kernel failed, so the run goes on without it: RuntimeError:")
    assert "pip install" not in said


def test_a_model_type_liger_does_not_know_stays_plain(monkeypatch, model_folder):
    calls: list = []
    fake_liger(monkeypatch, calls)
    model = tiny_model(model_folder)
    model.config.model_type = "someother"

    assert apply_decoder_kernels(model, "cuda") == DecoderKernels() and calls == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_liger_decoder_kernels_give_the_plain_loss_on_cuda(model_folder):
    pytest.importorskip("liger_kernel")
    from engine.train.batching import collate
    from engine.train.loss import token_loss_sum
    from tests.engine.train.tiny import make_examples

    batch = {k: v.cuda() for k, v in collate(make_examples(6), 0).items()}
    with torch.no_grad():  # before patching: Liger's RoPE replaces transformers' module-level function
        want = token_loss_sum(tiny_model(model_folder).cuda(), batch, True).item()
    fused = tiny_model(model_folder).cuda()
    kernels = apply_decoder_kernels(fused, "cuda")
    assert kernels.names == ("rms_norm", "swiglu", "rope"), kernels.failure
    with torch.no_grad():
        got = token_loss_sum(fused, batch, True).item()
    assert got == pytest.approx(want, rel=1e-4)
