"""Ollama Modelfiles: the chat template and stop tokens Ollama needs to answer and then stop.

A Modelfile with only `FROM` leaves Ollama guessing the prompt format, which is how exported
models end up answering gibberish or never stopping. The TEMPLATE here is written per
chat-template family in the Go-template subset Ollama uses, so it renders conversations the
same way as the Hugging Face template the model was trained with (tests/export checks this).
BOS is left out: llama.cpp adds it itself when the GGUF says so.
"""

from __future__ import annotations

import re
from pathlib import Path

from engine.atomic import write_text_atomic

# Ollama puts the SYSTEM text first as a system message when a chat has none, so these
# templates only walk the messages.
TEMPLATES = {
    "chatml": (
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n"
        "{{ .Content }}<|im_end|>\n"
        "{{ end }}<|im_start|>assistant\n"
    ),
    "llama3": (
        "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
        "{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
}
STOPS = {"chatml": ("<|im_end|>",), "llama3": ("<|eot_id|>",)}


def template_family(chat_template: str | None, declared: str | None = None) -> str | None:
    """The family named in the catalog, else the one whose markers the template uses."""
    if declared in TEMPLATES:
        return declared
    text = chat_template or ""
    if "<|im_start|>" in text:
        return "chatml"
    if "<|start_header_id|>" in text:
        return "llama3"
    return None


def default_system_prompt(tokenizer: object) -> str:
    """The system text the HF template inserts when a chat has none (SmolLM2 has one)."""
    marker = "\x00user-turn\x00"
    try:
        rendered = tokenizer.apply_chat_template(  # type: ignore[attr-defined]
            [{"role": "user", "content": marker}], tokenize=False)
    except Exception:  # noqa: BLE001 - a template that cannot render has no default to offer
        return ""
    head = rendered.split(marker)[0]
    match = re.search(r"<\|im_start\|>system\n(.*?)<\|im_end\|>", head, re.S) or re.search(
        r"<\|start_header_id\|>system<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>", head, re.S)
    return match.group(1) if match else ""


def render_modelfile(gguf_name: str, family: str | None, system_prompt: str, stops: tuple[str, ...] = ()) -> str:
    lines = [f"FROM ./{gguf_name}"]
    if family is None:
        lines.append("# This chat template family has no Ollama template here; Ollama reads the one in the GGUF.")
    else:
        lines.append(f'TEMPLATE """{TEMPLATES[family]}"""')
    for stop in dict.fromkeys((*STOPS.get(family or "", ()), *stops)):
        lines.append(f'PARAMETER stop "{stop}"')
    if system_prompt:
        lines.append(f'SYSTEM """{system_prompt.replace(chr(34) * 3, chr(39) * 3)}"""')
    return "\n".join(lines) + "\n"


def write_modelfile(path: Path, gguf_name: str, family: str | None, system_prompt: str,
                    stops: tuple[str, ...] = ()) -> Path:
    write_text_atomic(path, render_modelfile(gguf_name, family, system_prompt, stops))
    return path
