"""GRPO's sampler on a tiny real Llama: what it draws, and the work it leaves out to draw it."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from engine.train import sampling  # noqa: E402
from engine.train.sampling import new_generator, sample  # noqa: E402

PROMPTS = [(3, 4, 5, 6), (7, 8)]


@pytest.fixture(scope="module")
def tied_lora(tmp_path_factory):
    """SmolLM2's layout: the head is the fp32 input embedding, frozen under LoRA."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=96, max_position_embeddings=128, pad_token_id=0, eos_token_id=1, bos_token_id=2,
        tie_word_embeddings=True))
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    return model


def draw(model, tokens: int = 6, group: int = 3):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return sample(model, PROMPTS, group, tokens, 1.0, frozenset({1}), 0, new_generator(7),
                      torch.autocast("cpu", dtype=torch.bfloat16))


def test_the_frozen_fp32_head_is_cast_to_16_bits_once_not_per_token(tied_lora, monkeypatch):
    head = tied_lora.get_output_embeddings().weight
    assert head.dtype == torch.float32 and not head.requires_grad
    with torch.profiler.profile(record_shapes=True) as prof:
        got = draw(tied_lora)
    head_casts = [e for e in prof.events() if e.name == "aten::_to_copy" and e.input_shapes[:1] == [list(head.shape)]]
    assert len(head_casts) <= 1

    # The same answers as the model's own forward, where autocast casts the head at every token.
    monkeypatch.setattr(sampling, "has_plain_head", lambda _model: False)
    assert draw(tied_lora) == got


STOPS = frozenset(range(1, 96, 3))
"""A third of the vocabulary ends an answer, so the answers end at many lengths."""


def draw_plainly(model, tokens: int, group: int, stops=STOPS):
    """The sampler without its savings: every prompt copied per answer, every row run to the end."""
    rows = [list(p) for p in PROMPTS for _ in range(group)]
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    answers, done, past, generator = [[] for _ in rows], set(), None, new_generator(7)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for _ in range(tokens):
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=past, use_cache=True,
                        logits_to_keep=1)
            past = out.cache
            probs = torch.softmax(out.logits[:, -1].float(), dim=-1)
            drawn = torch.multinomial(probs, 1, generator=generator).squeeze(1).tolist()
            for i, t in enumerate(drawn):
                if i not in done:
                    answers[i].append(t)
                    if t in stops:
                        done.add(i)
            if len(done) == len(rows):
                break
            ids = torch.tensor(drawn).unsqueeze(1)
            mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
            positions = positions[:, -1:] + 1
    return answers


def test_each_prompt_is_read_once_and_ended_answers_leave_the_batch_with_the_same_draws(tied_lora):
    rows_run: list[int] = []
    embed = tied_lora.get_base_model().get_input_embeddings()
    hook = embed.register_forward_hook(lambda _m, args, _out: rows_run.append(args[0].shape[0]))
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = sample(tied_lora, PROMPTS, 4, 12, 1.0, STOPS, 0, new_generator(7),
                         torch.autocast("cpu", dtype=torch.bfloat16))
    finally:
        hook.remove()

    assert got == draw_plainly(tied_lora, 12, 4)
    lengths = sorted(len(a) for a in got)
    assert lengths[0] < lengths[-1]  # some answers ended before others
    # The prompts once (2 rows), then at each later token only the answers still running.
    assert rows_run[0] == len(PROMPTS)
    assert rows_run[1:] == [sum(len(a) > k for a in got) for k in range(1, max(lengths))]
