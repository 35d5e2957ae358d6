"""The tokenizer of a resolved model, made fit for chat fine-tuning.

Base models often have no chat template, and many pad with the end-of-turn token; both are
fixed here once so data preparation, training and chat see the same tokenizer.
"""

from __future__ import annotations

from typing import Any

from engine.models.errors import ModelLoadError
from engine.models.hf_import import hf_imported
from engine.models.resolve import ResolvedModel


def load_tokenizer(resolved: ResolvedModel) -> Any:
    """The tokenizer with a chat template and a pad token that is not the end-of-turn token.

    A pad equal to eos would be masked out of the labels with the padding, and the tuned model
    would never learn to end its turn.
    """
    hf_imported()
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.ref, trust_remote_code=resolved.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"The tokenizer of {resolved.name} does not load: {exc}", "Check the model folder.") from None
    if not tokenizer.chat_template:
        tokenizer.chat_template = _fallback_template(tokenizer)
    if tokenizer.pad_token is None or tokenizer.pad_token == tokenizer.eos_token:
        vocab = tokenizer.get_vocab()
        for candidate in ("<|finetune_right_pad_id|>", "<|endoftext|>", "<pad>", "<|pad|>", tokenizer.unk_token):
            if candidate and candidate in vocab and candidate != tokenizer.eos_token:
                tokenizer.pad_token = candidate
                break
        else:
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _fallback_template(tokenizer: Any) -> str:
    """ChatML when the vocabulary has its markers, else plain role headers ending turns with eos."""
    if "<|im_start|>" in tokenizer.get_vocab():
        return (
            "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
            "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
        )
    return (
        "{% for message in messages %}{{ '### ' + message['role'] | capitalize + ':\n' + message['content'] }}"
        "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\n\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '### Assistant:\n' }}{% endif %}"
    )
