"""q/k/v and gate/up adapters compute their A matrices as one matmul, with peft's losses and gradients."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from engine.train.shared_input_lora import fuse_shared_input_adapters  # noqa: E402
from tests.engine.train.tiny import VOCAB  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def adapted(folder, dropout: float = 0.0, quantized: bool = False):
    """The tiny Llama with LoRA on every projection and B matrices moved off peft's zero start,
    so every adapter's gradient is non-zero."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    extra = {}
    if quantized:
        from transformers import BitsAndBytesConfig

        extra["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                          bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(folder, **extra)
    model.config.use_cache = False
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=TARGETS))
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.1)
    return model


def batch():
    torch.manual_seed(2)
    ids = torch.randint(3, VOCAB, (3, 24))
    labels = ids.clone()
    labels[:, :8] = -100  # a responses-only mask
    return ids, labels


def loss_and_grads(model, ids, labels):
    model.zero_grad()
    loss = model(input_ids=ids, labels=labels).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.slow
@pytest.mark.parametrize("checkpointing", [False, True])
def test_fused_groups_give_peft_losses_and_gradients(model_folder, checkpointing):
    plain = adapted(model_folder)
    if checkpointing:
        plain.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    plain.train()
    fused = copy.deepcopy(plain)
    assert fuse_shared_input_adapters(fused) == 4  # q/k/v and gate/up in each of 2 layers

    ids, labels = batch()
    want_loss, want = loss_and_grads(plain, ids, labels)
    got_loss, got = loss_and_grads(fused, ids, labels)
    assert got_loss == pytest.approx(want_loss, rel=1e-6)
    assert got.keys() == want.keys()
    for name in want:
        assert torch.allclose(got[name], want[name], atol=1e-6, rtol=1e-4), name


@pytest.mark.slow
def test_qlora_groups_give_peft_losses(wide_model_folder):
    pytest.importorskip("bitsandbytes")
    plain = adapted(wide_model_folder, quantized=True)
    fused = adapted(wide_model_folder, quantized=True)
    fuse_shared_input_adapters(fused)
    ids, labels = batch()
    want_loss, want = loss_and_grads(plain, ids, labels)
    got_loss, got = loss_and_grads(fused, ids, labels)
    assert got_loss == pytest.approx(want_loss, rel=1e-5)
    for name in want:
        assert torch.allclose(got[name], want[name], atol=1e-5, rtol=1e-3), name


def test_a_group_runs_one_matmul_and_one_dropout_mask(model_folder):
    model = adapted(model_folder, dropout=0.1)
    fuse_shared_input_adapters(model)
    model.train()
    calls: dict[str, int] = {}

    def count(name):
        def hook(module, args, output):
            calls[name] = calls.get(name, 0) + 1
        return hook

    for name, module in model.named_modules():
        if name.endswith((".lora_A.default", ".lora_dropout.default")):
            module.register_forward_hook(count(name.split("layers.0.", 1)[-1] if "layers.0." in name else "other"))
    model(input_ids=batch()[0])

    layer0 = {name: n for name, n in calls.items() if name != "other"}
    # No A module runs its own matmul; a group's dropout is drawn once, by its first, and a single
    # adapter (o_proj, down_proj) draws its own.
    assert layer0 == {"self_attn.o_proj.lora_dropout.default": 1, "mlp.down_proj.lora_dropout.default": 1,
                      "self_attn.q_proj.lora_dropout.default": 1, "mlp.gate_proj.lora_dropout.default": 1}


def test_disabled_and_evaluated_adapters_behave_as_peft(model_folder):
    plain = adapted(model_folder, dropout=0.3).eval()
    fused = copy.deepcopy(plain)
    fuse_shared_input_adapters(fused)
    ids, _ = batch()
    with torch.no_grad():
        assert torch.allclose(fused(input_ids=ids).logits, plain(input_ids=ids).logits, atol=1e-5)
        with fused.disable_adapter(), plain.disable_adapter():
            base = plain(input_ids=ids).logits
            assert torch.allclose(fused(input_ids=ids).logits, base, atol=1e-6)
        assert not torch.allclose(fused(input_ids=ids).logits, base, atol=1e-3)  # the adapters are back


def test_a_sibling_called_with_another_input_computes_its_own(model_folder):
    model = adapted(model_folder)
    fuse_shared_input_adapters(model)
    attention = model.base_model.model.model.layers[0].self_attn
    x, y = torch.randn(2, 5, 32), torch.randn(2, 5, 32)
    with torch.no_grad():
        q_x, k_y = attention.q_proj(x), attention.k_proj(y)
        fresh = adapted(model_folder).base_model.model.model.layers[0].self_attn
        assert torch.allclose(q_x, fresh.q_proj(x), atol=1e-6)
        assert torch.allclose(k_y, fresh.k_proj(y), atol=1e-6)
