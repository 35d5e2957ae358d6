"""Proof that a GGUF behaves like the model it came from, before export says "done".

The failures users meet are a tokenizer that splits text differently in llama.cpp, a lost
chat template or end-of-turn token (the model never stops), and quantisation that changes
answers. Each is measured here with llama.cpp itself and reported as figures.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIN_F16_AGREEMENT = 0.95
GENERATION_LIMIT = 128

# Digits, code, emoji, accents, whitespace runs and chat markup: where tokenizers usually part ways.
TOKENIZER_TEXTS = (
    "Hello, world!",
    "3.14159 + 2718281828 = 12345678901234567890",
    "def add(a, b):\n    return a + b  # sum\n\tprint(f\"{a!r}\")",
    "docker run -d -p 8080:80 --name web nginx:1.25-alpine",
    "Emoji: 🚀🔥👍🏽 and CJK: 机器学习, こんにちは",
    "Ünïcödé façade naïve café — “quotes” and ‘apostrophes’",
    "   leading spaces, trailing spaces   \n\n\nnew lines",
)
# The first one asks for a short answer: it is the prompt of the end-of-turn generation check.
SAMPLE_CONVERSATIONS = (
    [{"role": "user", "content": "Answer in one word: what colour is the sky on a clear day?"}],
    [{"role": "user", "content": "How do I list running containers?"}],
    [{"role": "system", "content": "You answer briefly."},
     {"role": "user", "content": "What is 17 times 23?"}],
    [{"role": "user", "content": "Write a haiku about the sea."}],
)


@dataclass(frozen=True)
class FileCheck:
    """Verification figures for one GGUF file, as written to verify.json."""

    path: str
    quant: str
    token_ids_match: bool
    token_mismatches: tuple[str, ...]
    chat_template_kept: bool
    end_of_turn_ok: bool
    """The HF end-of-turn token ends generation in llama.cpp too (it is end-of-generation in the GGUF)."""
    argmax_agreement: float
    max_abs_logit_diff: float | None
    positions: int
    stops_at_end_of_turn: bool | None
    generated_tokens: int
    passed: bool
    problems: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Reference:
    """The HF side of the comparison, computed once and shared by every file of an export."""

    prompts: tuple[tuple[int, ...], ...]
    logits: tuple[Any, ...]
    """float32 arrays, one (positions, vocab) per prompt."""
    chat_prompt: tuple[int, ...]
    tokenizer_texts: tuple[str, ...]
    tokenizer_ids: tuple[tuple[int, ...], ...]
    chat_template: str | None
    end_of_turn_ids: tuple[int, ...]


def build_reference(model: Any, tokenizer: Any, extra_prompts: Sequence[str] = ()) -> Reference:
    """Run the HF model and tokenizer on the fixed samples."""
    import torch

    texts = list(TOKENIZER_TEXTS)
    prompts: list[str] = []
    if getattr(tokenizer, "chat_template", None):
        for conv in SAMPLE_CONVERSATIONS:
            rendered = tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
            texts.append(rendered)
            prompts.append(rendered)
    prompts.extend(extra_prompts)
    prompts.extend(TOKENIZER_TEXTS[:4])
    encoded = [tuple(tokenizer(p, add_special_tokens=not _has_bos(tokenizer, p)).input_ids) for p in prompts]
    device = next(model.parameters()).device
    logits = []
    with torch.no_grad():
        for ids in encoded:
            out = model(torch.tensor([ids], device=device)).logits[0]
            logits.append(out.float().cpu().numpy())
    return Reference(
        prompts=tuple(encoded),
        logits=tuple(logits),
        chat_prompt=encoded[0],
        tokenizer_texts=tuple(texts),
        tokenizer_ids=tuple(tuple(tokenizer(t, add_special_tokens=False).input_ids) for t in texts),
        chat_template=getattr(tokenizer, "chat_template", None),
        end_of_turn_ids=end_of_turn_ids(tokenizer),
    )


def end_of_turn_ids(tokenizer: Any) -> tuple[int, ...]:
    """Tokens that close an assistant turn: the EOS plus the family's end-of-turn markers."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    vocab = tokenizer.get_vocab()
    for marker in ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>", "<end_of_turn>", "<|end|>"):
        if marker in vocab and (tokenizer.chat_template or "").find(marker) >= 0:
            ids.add(vocab[marker])
    return tuple(sorted(ids))


def check_file(path: Path, quant: str, ref: Reference, *, min_agreement: float | None,
               require_stop: bool) -> FileCheck:
    """Load `path` in llama.cpp and compare it with the reference.

    min_agreement: argmax agreement below which the file fails (None: reported only).
    require_stop: fail when a greedy answer runs to the limit instead of ending its turn.
    """
    import numpy as np

    problems: list[str] = []
    with open_llama(path, n_ctx=max(512, max(len(p) for p in ref.prompts) + GENERATION_LIMIT + 8),
                    logits_all=True) as llm:
        mismatches = []
        for text, want in zip(ref.tokenizer_texts, ref.tokenizer_ids, strict=True):
            got = tuple(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))
            if got != want:
                mismatches.append(text[:60])
        if mismatches:
            problems.append(f"llama.cpp tokenizes {len(mismatches)} of {len(ref.tokenizer_texts)} sample texts "
                            f"differently from the HF tokenizer, e.g. {mismatches[0]!r}")
        template = llm.metadata.get("tokenizer.chat_template")
        template_kept = ref.chat_template is None or template == ref.chat_template
        if not template_kept:
            problems.append("the GGUF's chat template differs from the tokenizer's")
        vocab = _vocab(llm)
        import llama_cpp

        eot_ok = bool(ref.end_of_turn_ids) and all(
            llama_cpp.llama_vocab_is_eog(vocab, t) for t in ref.end_of_turn_ids)
        if not eot_ok:
            problems.append(f"end-of-turn token(s) {list(ref.end_of_turn_ids)} do not end generation in llama.cpp")

        agree = total = 0
        max_diff = 0.0
        for ids, want in zip(ref.prompts, ref.logits, strict=True):
            llm.reset()
            llm.eval(list(ids))
            got = np.asarray(llm.scores[: len(ids)], dtype=np.float32)
            agree += int((got.argmax(-1) == want.argmax(-1)).sum())
            total += len(ids)
            max_diff = max(max_diff, float(np.abs(got - want).max()))
        agreement = agree / total if total else 0.0
        if min_agreement is not None and agreement < min_agreement:
            problems.append(f"next-token agreement with the HF model is {agreement:.1%}, under {min_agreement:.0%}")

        stops, n_generated = _greedy_stops(llm, ref.chat_prompt)
        if require_stop and not stops:
            problems.append(f"a greedy answer ran to the {GENERATION_LIMIT}-token limit without an end-of-turn token")

    return FileCheck(
        path=str(path), quant=quant, token_ids_match=not mismatches, token_mismatches=tuple(mismatches),
        chat_template_kept=template_kept, end_of_turn_ok=eot_ok, argmax_agreement=round(agreement, 4),
        max_abs_logit_diff=round(max_diff, 5) if quant in ("F16", "BF16") else None, positions=total,
        stops_at_end_of_turn=stops, generated_tokens=n_generated, passed=not problems, problems=tuple(problems),
    )


@contextlib.contextmanager
def open_llama(path: Path, *, n_ctx: int = 2048, logits_all: bool = False, vocab_only: bool = False) -> Any:
    """A llama.cpp model that is closed on exit (its finaliser can raise at interpreter exit)."""
    from engine.native.llama import load_llama

    llm, _plan = load_llama(path, n_ctx=n_ctx, logits_all=logits_all, vocab_only=vocab_only)
    try:
        yield llm
    finally:
        llm.close()


def _vocab(llm: Any) -> Any:
    import llama_cpp

    return llama_cpp.llama_model_get_vocab(llm.model)


def _greedy_stops(llm: Any, prompt: Sequence[int]) -> tuple[bool, int]:
    import llama_cpp

    vocab = _vocab(llm)
    llm.reset()
    n = 0
    for token in llm.generate(list(prompt), top_k=1, temp=0.0, reset=True):
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            return True, n
        n += 1
        if n >= GENERATION_LIMIT:
            break
    return False, n


def _has_bos(tokenizer: Any, text: str) -> bool:
    bos = tokenizer.bos_token
    return bool(bos) and text.startswith(bos)
