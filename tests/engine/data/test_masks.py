"""Responses-only labels for each family's own template, token by token (issue 23 item 2): the
replies and the family's end-of-turn token carry loss, nothing of the prompt does, multi-turn and
with a system prompt, where Mistral, Qwen3 and Phi-4-mini render a turn differently on its own."""

from __future__ import annotations

import pytest

from engine.data.render import IGNORE_INDEX, render
from engine.data.types import Conversation, Message
from engine.train.batching import collate
from tests.engine.models.tiny import FAMILIES, make_tokenizer

CONVERSATION = Conversation((Message("system", "Be brief."), Message("user", "Hi there"), Message("assistant", "Hello!"),
                             Message("user", "Sky colour?"), Message("assistant", "Blue.")), source_line=1)
# What each reply trains on, as text: the reply and the token that ends its turn. Qwen3's final
# reply starts with the empty reasoning block its template writes there; Phi-4-mini's template
# closes the whole conversation with eos after the last <|end|>.
TRAINED = {
    "qwen3": ["Hello!<|im_end|>", "<think>\n\n</think>\n\nBlue.<|im_end|>"],
    "gemma3_text": ["Hello!<end_of_turn>", "Blue.<end_of_turn>"],
    "mistral": ["Hello!</s>", "Blue.</s>"],
    "phi3": ["Hello!<|end|>", "Blue.<|end|><|endoftext|>"],
}
END_OF_TURN = {"qwen3": "<|im_end|>", "gemma3_text": "<end_of_turn>", "mistral": "</s>", "phi3": "<|end|>"}


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokenizers")
    return {family: make_tokenizer(root / family, family) for family in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_trains_its_replies_and_end_of_turn_token_and_nothing_else(family, tokenizers):
    tokenizer = tokenizers[family]
    rendered = render(tokenizer, CONVERSATION)

    assert [rendered.text[a:b] for a, b in rendered.trained_spans] == TRAINED[family]
    trained = [t for t in rendered.labels if t != IGNORE_INDEX]
    assert tokenizer.decode(trained, skip_special_tokens=False).replace(" ", "") == "".join(TRAINED[family]).replace(
        " ", "")
    eot = tokenizer.convert_tokens_to_ids(END_OF_TURN[family])
    assert trained.count(eot) == 2
    # Every token whose label is ignored lies outside the replies: the prompt, system turn included.
    prompt = tokenizer.decode([t for t, label in zip(rendered.input_ids, rendered.labels, strict=True)
                               if label == IGNORE_INDEX], skip_special_tokens=False)
    assert "Hi there" in prompt and "Sky colour?" in prompt
    # Mistral v0.3's template writes the system prompt only into a conversation's final user turn,
    # so a conversation that ends with a reply (every training row) trains without it.
    assert ("Be brief." in prompt) == (family != "mistral")
    assert "Hello" not in prompt and "Blue" not in prompt


@pytest.mark.parametrize("family", FAMILIES)
def test_padding_never_masks_the_end_of_turn_even_where_pad_is_eos(family, tokenizers):
    # Phi-4-mini pads with its eos (<|endoftext|>); labels follow the attention mask, not the pad id.
    from engine.data.types import TokenizedExample

    tokenizer = tokenizers[family]
    rendered = render(tokenizer, CONVERSATION)
    short = TokenizedExample(rendered.input_ids[:5], rendered.labels[:5], 2)
    full = TokenizedExample(rendered.input_ids, rendered.labels, 1)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batch = collate([full, short], pad)

    eot = tokenizer.convert_tokens_to_ids(END_OF_TURN[family])
    assert batch["labels"][0].tolist().count(eot) == 2
    assert batch["labels"][1].tolist()[5:] == [IGNORE_INDEX] * (len(rendered.input_ids) - 5)
