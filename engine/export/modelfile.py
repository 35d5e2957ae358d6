"""Ollama Modelfiles: the chat template and stop tokens Ollama needs to answer and then stop.

A Modelfile with only `FROM` leaves Ollama guessing the prompt format, which is how exported
models end up answering gibberish or never stopping. The TEMPLATE here is written per
chat-template family in the Go-template subset Ollama uses, so it renders conversations the
same way as the Hugging Face template the model was trained with (tests/export checks this for
every family in the catalog, with and without a system prompt). BOS is left out: llama.cpp adds
it itself when the GGUF says so. The stops are the ones Ollama's own templates list.

Llama 3.1 and 3.2 open every chat with a system turn holding "Cutting Knowledge Date" and
"Today Date" before the system prompt. 3.2's template asks for today's date, which a Go
template cannot compute; ftui renders training data with the template's own fallback date
(`engine.data.render.TEMPLATE_DATE`, the one 3.1 always uses), so the Modelfile carries that
date and Ollama sends the model exactly what it was trained on. Go templates cannot trim, so
SYSTEM is written trimmed, as the HF template trims it.
"""

from __future__ import annotations

import re
from pathlib import Path

from engine.data.render import TEMPLATE_DATE
from engine.files.atomic import write_text_atomic

LLAMA31_PREAMBLE = f"Cutting Knowledge Date: December 2023\nToday Date: {TEMPLATE_DATE}\n\n"
# Ollama puts the SYSTEM text first as a system message when a chat has none and passes every
# system message both in .Messages and joined in .System.
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
    "llama3.1": (
        f"<|start_header_id|>system<|end_header_id|>\n\n{LLAMA31_PREAMBLE}{{{{ .System }}}}<|eot_id|>"
        '{{ range .Messages }}{{ if ne .Role "system" }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n'
        "{{ .Content }}<|eot_id|>{{ end }}{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
}
_LLAMA3_STOPS = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
STOPS = {"chatml": ("<|im_start|>", "<|im_end|>"), "llama3": _LLAMA3_STOPS, "llama3.1": _LLAMA3_STOPS}
"""As in Ollama's template/chatml.json and template/llama3-instruct.json."""


def template_family(chat_template: str | None, declared: str | None = None) -> str | None:
    """The family whose markers the template uses (Llama 3.1/3.2 by their date preamble), else the
    one the catalog names."""
    text = chat_template or ""
    if "<|start_header_id|>" in text:
        return "llama3.1" if "Cutting Knowledge Date" in text else "llama3"
    if "<|im_start|>" in text:
        return "chatml"
    return declared if declared in TEMPLATES else None


def default_system_prompt(tokenizer: object) -> str:
    """The system text the HF template inserts when a chat has none (SmolLM2 has one)."""
    marker = "\x00user-turn\x00"
    try:
        rendered = tokenizer.apply_chat_template(  # type: ignore[attr-defined]
            [{"role": "user", "content": marker}], tokenize=False, date_string=TEMPLATE_DATE)
    except Exception:  # noqa: BLE001 - a template that cannot render has no default to offer
        return ""
    head = rendered.split(marker)[0]
    match = re.search(r"<\|im_start\|>system\n(.*?)<\|im_end\|>", head, re.S) or re.search(
        r"<\|start_header_id\|>system<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>", head, re.S)
    # Llama 3.1/3.2's date preamble is part of TEMPLATE, not a system prompt.
    return match.group(1).removeprefix(LLAMA31_PREAMBLE) if match else ""


def render_modelfile(gguf_name: str, family: str | None, system_prompt: str, stops: tuple[str, ...] = ()) -> str:
    lines = [f"FROM ./{gguf_name}"]
    if family is None:
        lines.append("# This chat template family has no Ollama template here; Ollama reads the one in the GGUF.")
    else:
        lines.append(f'TEMPLATE """{TEMPLATES[family]}"""')
    for stop in dict.fromkeys((*STOPS.get(family or "", ()), *stops)):
        lines.append(f'PARAMETER stop "{stop}"')
    if system_prompt.strip():
        lines.append(f'SYSTEM """{system_prompt.strip().replace(chr(34) * 3, chr(39) * 3)}"""')
    return "\n".join(lines) + "\n"


def write_modelfile(path: Path, gguf_name: str, family: str | None, system_prompt: str,
                    stops: tuple[str, ...] = ()) -> Path:
    write_text_atomic(path, render_modelfile(gguf_name, family, system_prompt, stops))
    return path
