"""Ollama Modelfiles: the chat template and stop tokens Ollama needs to answer and then stop.

A Modelfile with only `FROM` leaves Ollama guessing the prompt format, which is how exported
models end up answering gibberish or never stopping. The TEMPLATE here is written per
chat-template family in the Go-template subset Ollama uses, so it renders conversations the
same way as the Hugging Face template the model was trained with (tests/engine/export checks this for
every family in the catalog, with and without a system prompt). BOS is left out: llama.cpp adds
it itself when the GGUF says so. The stops are the ones Ollama's own templates list.

Llama 3.1 and 3.2 open every chat with a system turn holding "Cutting Knowledge Date" and
"Today Date" before the system prompt. 3.2's template asks for today's date, which a Go
template cannot compute; ftui renders training data with the template's own fallback date
(`engine.data.render.TEMPLATE_DATE`, the one 3.1 always uses), so the Modelfile carries that
date and Ollama sends the model exactly what it was trained on. Go templates cannot trim, so
SYSTEM is written trimmed, as the HF template trims it.

The other families, each against its published HF template (tests/engine/export/fixtures):
- Qwen3 is ChatML plus thinking. HF's `enable_thinking=False` appends an empty `<think>` block to
  the generation prompt; Ollama's `--think=false` (IsThinkSet, not Think) does the same here, and
  without the flag the model thinks, as HF's default does. Ollama finds a model's thinking tags
  from `.Thinking` inside the Messages range (thinking/template.go `InferTags`), so it appears
  where HF keeps reasoning: in an assistant message sent last. Earlier replies go without their
  reasoning, as HF's template drops it.
- Gemma 3 has no system turn: HF folds the system text into the first user turn. Ollama puts the
  system message first in .Messages, so that turn is the one at index 1 (as Ollama's own
  gemma3-instruct template does it), and the assistant's role is `model`.
- Mistral v0.3 writes the system text into the *last* user turn, `[INST] SYSTEM\n\nUSER[/INST]`;
  a reply is ` REPLY</s>`; there is no generation prompt.
- Phi-4-mini is `<|role|>TEXT<|end|>` with no newlines (unlike Phi-3's template).
HF trims Gemma 3 messages and Mistral replies, which a Go template cannot: chat text rarely has
outer white space, and the SYSTEM line is written trimmed.
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
    "qwen3": (
        "{{- range $i, $_ := .Messages }}<|im_start|>{{ .Role }}\n"
        '{{ if and (eq .Role "assistant") (eq (len (slice $.Messages $i)) 1) }}'
        "<think>\n{{ .Thinking }}\n</think>\n\n{{ end }}"
        "{{ .Content }}<|im_end|>\n"
        "{{ end }}<|im_start|>assistant\n"
        "{{ if and $.IsThinkSet (not $.Think) }}<think>\n\n</think>\n\n{{ end }}"
    ),
    "gemma": (
        "{{- range $i, $_ := .Messages }}"
        '{{ if eq .Role "user" }}<start_of_turn>user\n'
        "{{ if and $.System (eq $i 1) }}{{ $.System }}\n\n{{ end }}{{ .Content }}<end_of_turn>\n{{ end }}"
        '{{ if eq .Role "assistant" }}<start_of_turn>model\n{{ .Content }}<end_of_turn>\n{{ end }}'
        "{{ end }}<start_of_turn>model\n"
    ),
    "mistral": (
        "{{- range $i, $_ := .Messages }}"
        '{{ if eq .Role "user" }}[INST] '
        "{{ if and $.System (eq (len (slice $.Messages $i)) 1) }}{{ $.System }}\n\n{{ end }}"
        "{{ .Content }}[/INST]{{ end }}"
        '{{ if eq .Role "assistant" }} {{ .Content }}</s>{{ end }}'
        "{{ end }}"
    ),
    "phi4": '{{- range .Messages }}<|{{ .Role }}|>{{ .Content }}<|end|>{{ end }}<|assistant|>',
}
_LLAMA3_STOPS = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
_CHATML_STOPS = ("<|im_start|>", "<|im_end|>")
STOPS = {
    "chatml": _CHATML_STOPS, "qwen3": _CHATML_STOPS, "llama3": _LLAMA3_STOPS, "llama3.1": _LLAMA3_STOPS,
    "gemma": ("<end_of_turn>",), "mistral": ("[INST]", "[/INST]"),
    "phi4": ("<|end|>", "<|system|>", "<|user|>", "<|assistant|>"),
}
"""As Ollama's own templates list them: template/chatml.json, llama3-instruct.json,
gemma3-instruct.json, phi-3.json (the same role markers), and its registry's mistral template
([INST]/[/INST]; template/mistral-instruct.json lists ChatML's by mistake)."""


def template_family(chat_template: str | None, declared: str | None = None) -> str | None:
    """The family whose markers the template uses (Llama 3.1/3.2 by their date preamble, Qwen3 by
    its thinking switch, Phi-4 by role tags with no newline after them, which Phi-3's has), else
    the one the catalog names."""
    text = chat_template or ""
    if "<|start_header_id|>" in text:
        return "llama3.1" if "Cutting Knowledge Date" in text else "llama3"
    if "<|im_start|>" in text:
        return "qwen3" if "enable_thinking" in text else "chatml"
    if "<start_of_turn>" in text:
        return "gemma"
    if "[INST]" in text:
        return "mistral"
    if "<|end|>" in text and "'|>' + message['content']" in text:
        return "phi4"
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
