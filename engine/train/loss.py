"""Cross-entropy through the output projection without ever holding [tokens x vocab] logits.

A Llama 3 vocabulary has 128,256 entries: at 2048 tokens the plain loss holds fp32 logits, their
log-softmax and their gradient, 2.4-2.7 GiB, more than the activations of a 3B model under
gradient checkpointing. Here the projection and the loss run over chunks of tokens; each chunk's
gradients (to the hidden states, and to the projection weight when it trains) are computed in the
forward pass and kept, as Liger-Kernel's fused linear cross-entropy does, so backward has nothing
to recompute and at most one chunk of logits exists at a time. The matmuls are the same three as
the plain path's (logits, gradient to hidden, gradient to weight), so it costs no extra compute.

On CUDA a fused Triton kernel is used when one is installed (the `gpu` extra: liger-kernel, else
cut-cross-entropy) and agrees with this one on a small check; anything else falls back to the
chunked torch version, which runs on every device.
"""

from __future__ import annotations

from typing import Any

from engine.train.varlen_attention import FORKS, SEGMENTS

CHUNK_ELEMENTS = 2**25
"""Logit elements per chunk (32 Mi: 128 MiB in fp32), e.g. 261 tokens at a 128,256-entry vocabulary.
Large enough that each chunk's matmul keeps a GPU busy, small next to any model's weights."""
CHUNK_BYTES_PER_ELEMENT = 6
"""The chunk's peak: its logits in fp32 (4) beside either their 16-bit matmul output or the 16-bit
softmax gradient fed to the backward matmuls (2). Without autocast (fp32 on the CPU) it is 4."""


def token_loss_sum(model: Any, batch: dict[str, Any], fast: bool) -> Any:
    """Summed cross-entropy over the tokens that carry a label (next-token shifted).

    With `fast`, the decoder's hidden states at labelled positions go through the chunked (or, on
    CUDA, fused) projection + loss of `engine.train.loss`, which never holds the full logits.
    """
    import torch
    import torch.nn.functional as F

    labels = batch["labels"][:, 1:]
    keep = labels != -100
    if fast:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        hidden = base.get_decoder()(**model_inputs(batch))
        kept = hidden.last_hidden_state[:, :-1][keep]
        head = base.get_output_embeddings()
        if type(head) is torch.nn.Linear and head.bias is None:
            return linear_cross_entropy(kept, head.weight, labels[keep])
        logits = head(kept)  # an adapted or quantised head: its own forward, logits at labelled rows only
    else:
        out = model(**model_inputs(batch))
        logits = out.logits[:, :-1][keep]
    return F.cross_entropy(logits.float(), labels[keep], reduction="sum")


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """What the model reads of a batch: the ids and either the padding mask or a packed row's
    position ids and example bounds. No KV cache: training never reads it back.
    """
    keys = ("input_ids", "attention_mask", "position_ids", SEGMENTS, FORKS)
    return {**{k: batch[k] for k in keys if k in batch}, "use_cache": False}


def linear_cross_entropy(hidden: Any, weight: Any, labels: Any) -> Any:
    """Summed cross-entropy of `hidden @ weight.T` against `labels`, all rows labelled.

    hidden: [N, H] (the positions that carry a label), weight: [V, H], labels: [N]. Gradients
    reach `hidden` and, when it trains, `weight`. Fused on CUDA when a kernel is installed.
    """
    import torch

    if hidden.shape[0] == 0:
        return (hidden.sum() + weight.sum()) * 0.0
    kernel = _fused_kernel(hidden.device) if hidden.device.type == "cuda" else None
    if kernel is not None:
        return kernel(hidden, weight, labels)
    needs_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    if not needs_grad:
        return _loss_only(hidden, weight, labels)
    return _ChunkedLinearCrossEntropy.apply(hidden, weight, labels)


def chunk_tokens(vocab: int) -> int:
    """Rows per chunk for a vocabulary of `vocab` entries."""
    return max(1, CHUNK_ELEMENTS // vocab)


def _logits(hidden: Any, weight: Any) -> Any:
    """One chunk's logits in fp32 (the matmul in the autocast dtype when autocast is on)."""
    import torch

    return torch.nn.functional.linear(hidden, weight).float()


def _loss_only(hidden: Any, weight: Any, labels: Any) -> Any:
    import torch

    step = chunk_tokens(weight.shape[0])
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    for start in range(0, hidden.shape[0], step):
        logits = _logits(hidden[start:start + step], weight)
        y = labels[start:start + step]
        total += (torch.logsumexp(logits, dim=-1) - logits.gather(1, y[:, None]).squeeze(1)).sum()
    return total


class _ChunkedLinearCrossEntropy:
    """A torch.autograd.Function built on first use, so importing this module never imports torch."""

    _function: Any = None

    @classmethod
    def apply(cls, hidden: Any, weight: Any, labels: Any) -> Any:
        if cls._function is None:
            cls._function = _build_function()
        return cls._function.apply(hidden, weight, labels)


def _build_function() -> Any:
    import torch

    class ChunkedLinearCrossEntropy(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, hidden: Any, weight: Any, labels: Any) -> Any:
            want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
            step = chunk_tokens(weight.shape[0])
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            grad_h = torch.empty_like(hidden) if want_h else None
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_w else None
            rows = torch.arange(min(step, hidden.shape[0]), device=hidden.device)
            kind = hidden.device.type
            dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else hidden.dtype
            w = _head_in(weight, dtype, want_w)
            for start in range(0, hidden.shape[0], step):
                h = hidden[start:start + step].to(dtype)
                y = labels[start:start + step]
                logits = torch.matmul(h, w.t()).float()
                target = logits.gather(1, y[:, None])
                # Softmax in place: logits -> exp(logits - max) -> probabilities, and lse on the side.
                top = logits.amax(dim=1, keepdim=True)
                probs = logits.sub_(top).exp_()
                norm = probs.sum(dim=1, keepdim=True)
                total += (top + norm.log() - target).sum()
                # d(sum of losses)/d(logits) = softmax - one_hot(label).
                probs.div_(norm)
                probs[rows[:len(y)], y] -= 1.0
                grad_logits = probs.to(dtype)
                del probs, logits
                if grad_h is not None:
                    grad_h[start:start + step] = torch.matmul(grad_logits, w)
                if grad_w is not None:
                    grad_w += torch.matmul(grad_logits.t(), h)  # a 16-bit [vocab x hidden] added into fp32
                del grad_logits  # before the next chunk's logits exist (in fp32 it is the logits tensor)
            ctx.save_for_backward(*(g for g in (grad_h, grad_w) if g is not None))
            ctx.wants = (want_h, want_w)
            return total

        @staticmethod
        def backward(ctx: Any, grad_out: Any) -> Any:
            saved = iter(ctx.saved_tensors)
            want_h, want_w = ctx.wants
            grad_h = grad_w = None
            if want_h:
                grad_h = next(saved)
                grad_h = grad_h * grad_out.to(grad_h.dtype)
            if want_w:
                grad_w = next(saved) * grad_out
            return grad_h, grad_w, None

    return ChunkedLinearCrossEntropy


def head_logits(head: Any, hidden: Any) -> Any:
    """`head(hidden)`, where a frozen bias-free head under autocast reads the 16-bit copy `_head_in`
    keeps instead of autocast's cast per call: the same values. For SmolLM2-135M's tied fp32
    head (28M weights) that cast took 51 ms, a quarter of each token GRPO samples on one CPU thread."""
    import torch

    kind = hidden.device.type
    plain = type(head) is torch.nn.Linear and head.bias is None and not head.weight.requires_grad
    if not plain or not torch.is_autocast_enabled(kind):
        return head(hidden)
    dtype = torch.get_autocast_dtype(kind)
    return torch.nn.functional.linear(hidden.to(dtype), _head_in(head.weight, dtype, False))


def _head_in(weight: Any, dtype: Any, trains: bool) -> Any:
    """The head weight in the matmul's type: the weight itself when it is already, one copy of an
    fp32 head that trains (full fine-tuning), and for a frozen fp32 head (a tied embedding under CPU
    autocast) a copy kept on the weight for the next calls: cast anew it took 2% of a CPU step."""
    if weight.dtype == dtype or trains:
        return weight.to(dtype)
    kept = getattr(weight, "_ftui_in_matmul_type", None)
    if kept is not None and kept[0] == weight._version and kept[1].dtype == dtype:
        return kept[1]
    copy = weight.to(dtype)
    weight._ftui_in_matmul_type = (weight._version, copy)
    return copy


_FUSED: dict[str, Any] = {}


def _fused_kernel(device: Any) -> Any:
    """A fused CUDA kernel that agrees with the chunked loss on a small check, or None; checked once per
    GPU, whether it is named "cuda" (the run's kernels line) or "cuda:0" (a tensor's device)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    key = str(device)
    if key not in _FUSED:
        _FUSED[key] = None
        for build in (_liger, _cut_cross_entropy):
            kernel = build()
            if kernel is not None and _agrees(kernel, device):
                _FUSED[key] = kernel
                break
    return _FUSED[key]


def fused_kernel_name(device: str) -> str | None:
    """Which fused kernel the loss uses on `device` ("liger-kernel", "cut-cross-entropy") or None."""
    if not device.startswith("cuda"):
        return None
    import torch

    kernel = _fused_kernel(torch.device(device))
    return getattr(kernel, "__name__", None) if kernel is not None else None


def _liger() -> Any:
    try:
        from liger_kernel.transformers.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyLoss
    except Exception:  # noqa: BLE001 - not installed, or built for another torch/triton
        return None
    loss = LigerFusedLinearCrossEntropyLoss(reduction="sum")

    def liger(hidden: Any, weight: Any, labels: Any) -> Any:
        out = loss(weight, hidden, labels)
        return out[0] if isinstance(out, tuple) else out

    liger.__name__ = "liger-kernel"
    return liger


def _cut_cross_entropy() -> Any:
    try:
        from cut_cross_entropy import linear_cross_entropy as cce
    except Exception:  # noqa: BLE001 - not installed, or built for another torch/triton
        return None

    def cut(hidden: Any, weight: Any, labels: Any) -> Any:
        return cce(hidden, weight.to(hidden.dtype), labels, reduction="sum").float()

    cut.__name__ = "cut-cross-entropy"
    return cut


def _agrees(kernel: Any, device: Any) -> bool:
    """The kernel runs here and gives the chunked loss and gradients on random bf16 inputs; with
    gradients on and autocast off whatever the caller runs under (an evaluation's no_grad would
    otherwise fail the check and turn the kernel off)."""
    import torch

    try:
        with torch.enable_grad(), torch.autocast(device.type, enabled=False):
            return _agrees_here(kernel, device)
    except Exception:  # noqa: BLE001 - a kernel that cannot run here is simply not used
        return False


def _agrees_here(kernel: Any, device: Any) -> bool:
    import torch

    gen = torch.Generator(device="cpu").manual_seed(0)
    h = torch.randn(64, 128, generator=gen).to(device, torch.bfloat16).requires_grad_(True)
    w = (torch.randn(1000, 128, generator=gen) * 0.05).to(device, torch.bfloat16)
    y = torch.randint(0, 1000, (64,), generator=gen).to(device)
    got = kernel(h, w, y)
    (g_got,) = torch.autograd.grad(got, h)
    h2 = h.detach().clone().requires_grad_(True)
    want = _ChunkedLinearCrossEntropy.apply(h2, w, y)
    (g_want,) = torch.autograd.grad(want, h2)
    return bool(torch.allclose(got.float(), want, rtol=1e-2, atol=1e-2)
                and torch.allclose(g_got.float(), g_want.float(), rtol=5e-2, atol=5e-3))
