"""Rendering through SmolLM2's own chat template and responses-only labels, token by token."""

from engine.data.render import IGNORE_INDEX, render, render_text, with_system_prompt
from engine.data.types import Conversation, Message

TWO_TURNS = Conversation((
    Message("user", "How do I list all containers?"),
    Message("assistant", "Run: `docker ps -a`"),
    Message("user", "And only the running ones?"),
    Message("assistant", "Run: `docker container ls`"),
), source_line=1)


def _trained_runs(rendered):
    """Maximal runs of consecutive trained positions, as lists of token ids."""
    runs, current = [], []
    for tok, label in zip(rendered.input_ids, rendered.labels, strict=True):
        if label == IGNORE_INDEX:
            if current:
                runs.append(current)
            current = []
        else:
            assert label == tok
            current.append(tok)
    return runs + ([current] if current else [])


def test_text_is_the_templates_own_rendering(tokenizer):
    messages = [{"role": m.role, "content": m.content} for m in TWO_TURNS.messages]
    assert render(tokenizer, TWO_TURNS).text == tokenizer.apply_chat_template(messages, tokenize=False)
    assert render_text(tokenizer, TWO_TURNS) == render(tokenizer, TWO_TURNS).text


def test_only_replies_and_their_end_of_turn_are_trained(tokenizer):
    rendered = render(tokenizer, TWO_TURNS)
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    runs = _trained_runs(rendered)
    replies = ["Run: `docker ps -a`<|im_end|>", "Run: `docker container ls`<|im_end|>"]
    assert runs == [tokenizer(r, add_special_tokens=False)["input_ids"] for r in replies]
    assert all(run[-1] == end_of_turn for run in runs)
    # Every other token, the system/user turns' own <|im_end|> and the newline after each reply included, is masked.
    trained = sum(len(r) for r in runs)
    assert rendered.labels.count(IGNORE_INDEX) == len(rendered.input_ids) - trained
    im_ends = [i for i, t in enumerate(rendered.input_ids) if t == end_of_turn]
    assert [rendered.labels[i] != IGNORE_INDEX for i in im_ends] == [False, False, True, False, True]
    assert rendered.labels[-1] == IGNORE_INDEX and tokenizer.decode(rendered.input_ids[-1:]) == "\n"


def test_training_prompt_tokens_match_inference_prompt(tokenizer):
    """The tokens before the first trained token are exactly what chat sends as the prompt."""
    rendered = render(tokenizer, TWO_TURNS)
    first = next(i for i, label in enumerate(rendered.labels) if label != IGNORE_INDEX)
    prompt = [{"role": m.role, "content": m.content} for m in TWO_TURNS.messages[:1]]
    at_inference = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    assert list(rendered.input_ids[:first]) == tokenizer(at_inference, add_special_tokens=False)["input_ids"]


def test_default_system_prompt_is_the_templates(tokenizer):
    text = render(tokenizer, TWO_TURNS).text
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


def test_configured_system_prompt_replaces_the_default_only_where_missing(tokenizer):
    text = render(tokenizer, with_system_prompt(TWO_TURNS, "Answer with one Docker command.")).text
    assert text.startswith("<|im_start|>system\nAnswer with one Docker command.<|im_end|>")
    assert "SmolLM" not in text
    own = Conversation((Message("system", "Mine."), *TWO_TURNS.messages), 1)
    assert with_system_prompt(own, "Other.") == own


def test_train_on_everything(tokenizer):
    rendered = render(tokenizer, TWO_TURNS, responses_only=False)
    assert rendered.labels == rendered.input_ids


def test_raw_text_trains_every_token_and_ends_with_eos(tokenizer):
    rendered = render(tokenizer, Conversation((), 1, raw_text="Docker images are built from layers."))
    assert rendered.labels == rendered.input_ids
    assert rendered.text == "Docker images are built from layers.<|im_end|>"
    assert rendered.input_ids[-1] == tokenizer.eos_token_id


def test_template_that_refuses_is_reported(tokenizer):
    import copy

    import pytest

    from engine.data.render import RenderError

    strict = copy.deepcopy(tokenizer)
    strict.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}{{ m['content'] }}{% endfor %}"
    )
    with pytest.raises(RenderError, match="refused this conversation: System role not supported"):
        render(strict, Conversation((Message("system", "x"), *TWO_TURNS.messages), 1))
