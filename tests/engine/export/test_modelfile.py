"""The Modelfile's Go template renders conversations exactly as the HF chat template does."""

from __future__ import annotations

import re

import pytest

from engine.export.modelfile import TEMPLATES, default_system_prompt, render_modelfile, template_family

# The Llama 3 Instruct template (8B, as published), for a family whose tokenizer is gated on the hub.
LLAMA3_HF_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
CONVERSATIONS = [
    [{"role": "user", "content": "How do I list running containers?"}],
    [{"role": "system", "content": "Answer with one command."}, {"role": "user", "content": "Show images"}],
    [{"role": "user", "content": "Stop web"}, {"role": "assistant", "content": "Run: `docker stop web`"},
     {"role": "user", "content": "And remove it?\nPlease."}],
]


def render_go(template: str, messages: list[dict[str, str]]) -> str:
    """Ollama's Go-template subset that ftui emits: range .Messages, .Role, .Content, trim markers."""
    parts = re.split(r"(\{\{-?\s*.*?\s*-?\}\})", template)
    out: list[str] = []

    def emit(nodes: list[str], msg: dict[str, str] | None) -> None:
        i = 0
        while i < len(nodes):
            node = nodes[i]
            action = re.fullmatch(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", node)
            if not action:
                out.append(node)
                i += 1
                continue
            trim_left, body, trim_right = action.groups()
            if trim_left and out:
                out[-1] = out[-1].rstrip()
            if trim_right and i + 1 < len(nodes):
                nodes[i + 1] = nodes[i + 1].lstrip()
            if body == "range .Messages":
                depth, j = 1, i + 1
                while depth:
                    inner = re.fullmatch(r"\{\{-?\s*(.*?)\s*-?\}\}", nodes[j])
                    if inner and inner.group(1).startswith(("range", "if")):
                        depth += 1
                    elif inner and inner.group(1) == "end":
                        depth -= 1
                    j += 1
                for m in messages:
                    emit(list(nodes[i + 1: j - 1]), m)
                i = j
                continue
            if body in (".Role", ".Content"):
                assert msg is not None, f"{body} outside range"
                out.append(msg[body[1:].lower()])
            else:
                raise AssertionError(f"unsupported action {body!r}")
            i += 1

    emit(parts, None)
    return "".join(out)


def ollama_messages(conversation, system):
    """Ollama puts the Modelfile's SYSTEM first when the chat has no system message."""
    if conversation[0]["role"] != "system" and system:
        return [{"role": "system", "content": system}, *conversation]
    return conversation


@pytest.mark.parametrize("conversation", CONVERSATIONS)
def test_chatml_template_matches_smollm2_hf_template(tokenizer_dir, conversation):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    family = template_family(tok.chat_template)
    system = default_system_prompt(tok)
    assert family == "chatml" and system.startswith("You are a helpful AI assistant named SmolLM")
    want = tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    assert render_go(TEMPLATES[family], ollama_messages(conversation, system)) == want


@pytest.mark.parametrize("conversation", CONVERSATIONS)
def test_llama3_template_matches_hf_template(tokenizer_dir, conversation):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.chat_template = LLAMA3_HF_TEMPLATE
    tok.bos_token = "<|begin_of_text|>"
    assert template_family(LLAMA3_HF_TEMPLATE) == "llama3" and default_system_prompt(tok) == ""
    want = tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    # llama.cpp adds BOS itself (add_bos_token in the GGUF), so the Modelfile leaves it out.
    assert "<|begin_of_text|>" + render_go(TEMPLATES["llama3"], conversation) == want


def test_modelfile_has_template_stops_and_system():
    text = render_modelfile("model-Q8_0.gguf", "chatml", "Answer with one command.")
    assert text.startswith("FROM ./model-Q8_0.gguf\n")
    assert 'TEMPLATE """{{- range .Messages }}' in text
    assert 'PARAMETER stop "<|im_end|>"' in text
    assert 'SYSTEM """Answer with one command."""' in text
    assert 'PARAMETER stop "<|eot_id|>"' in render_modelfile("m.gguf", "llama3", "")
