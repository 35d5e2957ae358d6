"""mean_token_nll on a tiny real Llama: a finite figure over the answer tokens only."""

import math

import pytest

from engine.data.prompts import GeneralPrompt
from engine.data.types import Message
from engine.eval.retention import answer_nll, mean_token_nll
from tests.engine.train.tiny import make_model_folder, make_tokenizer

# Prefix-stable, like real templates: t3 marks the user, t4 the assistant; <eos> ends each turn.
TEMPLATE = (
    "{% for m in messages %}<bos> {% if m['role'] == 'user' %}t3{% else %}t4{% endif %} {{ m['content'] }} <eos>\n"
    "{% endfor %}{% if add_generation_prompt %}<bos> t4 {% endif %}"
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(make_model_folder(tmp_path_factory.mktemp("tiny-llama")))
    tokenizer = make_tokenizer()
    tokenizer.chat_template = TEMPLATE
    return model, tokenizer


def chat(prompt: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def test_only_the_answer_tokens_are_scored(tiny):
    model, tokenizer = tiny
    short = answer_nll(model, tokenizer, [chat("t10 t11", "t20 t21 t22")])
    long = answer_nll(model, tokenizer, [chat("t10 t11 t12 t13 t14 t15 t16 t17 t18 t19", "t20 t21 t22")])
    assert short.tokens == long.tokens == 4  # three answer tokens and the end of turn
    both = answer_nll(model, tokenizer, [chat("t10", "t20"), chat("t10", "t30 t31 t32 t33 t34")])
    assert both.tokens == 2 + 6
    assert math.isfinite(short.mean) and 0 < short.mean < 2 * math.log(64)


def test_mean_token_nll_is_finite_positive_and_zero_drift_against_itself(tiny):
    model, tokenizer = tiny
    prompt = GeneralPrompt((Message("user", "t5 t6 t7"),), None, "smalltalk")
    conversations = [prompt.answered("t8 t9 t10"), chat("t40 t41", "t42 t43 t44 t45")]
    model.train()
    nll = mean_token_nll(model, tokenizer, conversations)
    assert math.isfinite(nll) and nll > 0
    assert mean_token_nll(model, tokenizer, conversations) - nll == pytest.approx(0.0, abs=1e-6)
    assert model.training  # the caller's mode is restored


def test_nothing_to_score_is_an_error(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="no assistant answer tokens"):
        mean_token_nll(model, tokenizer, [[{"role": "user", "content": "t5"}]])
