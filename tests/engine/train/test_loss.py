"""The chunked projection + loss equals the plain full-logits loss, in value and in every gradient.

Tolerances: fp32 on the CPU, relative 1e-5 on the loss and 1e-4 of the largest gradient entry
(summation order differs between chunks and one big softmax); under bf16 autocast, 1e-2 on the
loss and 4e-2 on gradients, about what two bf16 roundings of the same logits give.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from engine.train import loss as loss_module  # noqa: E402
from engine.train.batching import collate  # noqa: E402
from engine.train.loss import linear_cross_entropy, token_loss_sum  # noqa: E402
from tests.engine.train.tiny import make_examples  # noqa: E402


def plain_loss(model, batch):
    """The full-logits loss as transformers computes it: every position projected, fp32 cross-entropy."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    logits = out.logits[:, :-1].float()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1),
                                             ignore_index=-100, reduction="sum")


def adapted(folder, method):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(folder)
    if method == "full":
        return model
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    for name, p in model.named_parameters():  # non-zero B so every adapter gets a gradient
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    return model


def grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def batch_of(responses_only: bool):
    examples = make_examples(6)
    batch = collate(examples, 0)
    if not responses_only:  # every real token trained, as for text data
        batch["labels"] = torch.where(batch["attention_mask"].bool(), batch["input_ids"], -100)
    return batch


@pytest.mark.slow
@pytest.mark.parametrize("responses_only", [True, False])
@pytest.mark.parametrize("method", ["lora", "full"])
@pytest.mark.parametrize("chunk_elements", [7 * 64, 2**25])
def test_chunked_loss_and_gradients_equal_the_plain_path(model_folder, monkeypatch, method, responses_only,
                                                         chunk_elements):
    monkeypatch.setattr(loss_module, "CHUNK_ELEMENTS", chunk_elements)  # 7 rows per chunk, or one chunk
    model = adapted(model_folder, method)
    batch = batch_of(responses_only)

    plain = plain_loss(model, batch)
    want = grads(model, plain)
    chunked = token_loss_sum(model, batch, fast=True)
    got = grads(model, chunked)

    assert float(chunked) == pytest.approx(float(plain), rel=1e-5)
    assert want.keys() == got.keys() and len(want) > 0
    for name in want:
        scale = float(want[name].abs().max())
        assert scale > 0, name
        assert float((got[name] - want[name]).abs().max()) <= 1e-4 * scale, name


def test_tied_embeddings_get_both_gradients_in_full_fine_tuning(model_folder):
    """lm_head shares the embedding matrix in tiny models too: its gradient adds the loss's part."""
    model = adapted(model_folder, "full")
    model.config.tie_word_embeddings = True
    model.lm_head.weight = model.model.embed_tokens.weight
    batch = batch_of(True)
    want = grads(model, plain_loss(model, batch))
    got = grads(model, token_loss_sum(model, batch, fast=True))
    name = "model.embed_tokens.weight"
    assert float((got[name] - want[name]).abs().max()) <= 1e-4 * float(want[name].abs().max())


def test_under_bf16_autocast_the_loss_stays_close(model_folder, monkeypatch):
    monkeypatch.setattr(loss_module, "CHUNK_ELEMENTS", 5 * 64)
    model = adapted(model_folder, "lora").to(torch.bfloat16)
    batch = batch_of(False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = plain_loss(model, batch)
    want = grads(model, plain)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        chunked = token_loss_sum(model, batch, fast=True)
    got = grads(model, chunked)
    assert float(chunked) == pytest.approx(float(plain), rel=1e-2)
    for name in want:
        scale = float(want[name].float().abs().max())
        assert float((got[name].float() - want[name].float()).abs().max()) <= 4e-2 * scale, name


def test_without_gradients_only_the_loss_is_computed(model_folder, monkeypatch):
    monkeypatch.setattr(loss_module, "CHUNK_ELEMENTS", 3 * 64)
    model = adapted(model_folder, "lora")
    batch = batch_of(True)
    with torch.no_grad():
        assert float(token_loss_sum(model, batch, fast=True)) == pytest.approx(float(plain_loss(model, batch)),
                                                                              rel=1e-5)


def test_no_labelled_row_is_a_zero_loss_that_still_backpropagates():
    hidden = torch.zeros(0, 8, requires_grad=True)
    weight = torch.randn(16, 8, requires_grad=True)
    loss = linear_cross_entropy(hidden, weight, torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert float(loss) == 0.0 and weight.grad is not None


def test_no_fused_kernel_off_cuda():
    assert loss_module.fused_kernel_name("cpu") is None


def chunked_as_a_kernel(hidden, weight, labels):
    """A stand-in for an installed fused kernel that agrees with the chunked loss."""
    return loss_module._ChunkedLinearCrossEntropy.apply(hidden, weight, labels)


def test_the_fused_kernel_is_checked_once_per_gpu_whether_named_cuda_or_cuda_0(monkeypatch):
    checks: list = []

    def agrees(kernel, device):
        checks.append(str(device))
        return True

    monkeypatch.setattr(loss_module, "_FUSED", {})
    monkeypatch.setattr(loss_module, "_liger", lambda: chunked_as_a_kernel)
    monkeypatch.setattr(loss_module, "_agrees", agrees)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert loss_module.fused_kernel_name("cuda") == "chunked_as_a_kernel"  # the run's kernels line
    assert loss_module._fused_kernel(torch.device("cuda", 0)) is chunked_as_a_kernel  # the first forward's lookup
    assert checks == ["cuda:0"]


@pytest.mark.parametrize("context", ["no_grad", "autocast"])
def test_the_fused_kernel_check_passes_under_no_grad_and_autocast(context):
    """An evaluation's no_grad (or a step's autocast) around the first lookup must not fail a good kernel."""
    outer = torch.no_grad() if context == "no_grad" else torch.autocast("cpu", dtype=torch.bfloat16)
    with outer:
        assert loss_module._agrees(chunked_as_a_kernel, torch.device("cpu"))
        assert torch.is_grad_enabled() == (context != "no_grad")  # the caller's mode is left as it was
    assert not loss_module._agrees(lambda h, w, y: (h.sum() * 0).float(), torch.device("cpu"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fused_kernel_on_cuda_matches_the_chunked_loss():
    """Whichever kernel is picked (liger-kernel, cut-cross-entropy or none) gives the chunked loss."""
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(700, 256, generator=gen).cuda().bfloat16().requires_grad_(True)
    w = (torch.randn(5000, 256, generator=gen) * 0.05).cuda().bfloat16()
    y = torch.randint(0, 5000, (700,), generator=gen).cuda()
    got = linear_cross_entropy(h, w, y)
    (g_got,) = torch.autograd.grad(got, h)
    h2 = h.detach().clone().requires_grad_(True)
    want = loss_module._ChunkedLinearCrossEntropy.apply(h2, w, y)
    (g_want,) = torch.autograd.grad(want, h2)
    assert float(got) == pytest.approx(float(want), rel=1e-2)
    assert torch.allclose(g_got.float(), g_want.float(), rtol=5e-2, atol=5e-3)


def test_a_frozen_fp32_head_under_autocast_is_cast_once_and_again_after_it_changes():
    torch.manual_seed(0)
    weight = torch.randn(300, 32) * 0.1  # frozen: a tied embedding under LoRA on the CPU
    labels = torch.randint(0, 300, (40,))

    def loss_of(w):
        hidden = torch.randn(40, 32, generator=torch.Generator().manual_seed(1), requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = linear_cross_entropy(hidden, w, labels)
        value.backward()
        return value.detach(), hidden.grad

    first = loss_of(weight)
    kept = weight._ftui_in_matmul_type[1]
    second = loss_of(weight)
    assert weight._ftui_in_matmul_type[1] is kept
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])

    weight.mul_(2.0)  # changed in place: the kept copy is stale
    changed = loss_of(weight)
    fresh = loss_of(weight.clone())
    assert torch.equal(changed[0], fresh[0]) and torch.equal(changed[1], fresh[1])
    assert not torch.equal(changed[0], first[0])
