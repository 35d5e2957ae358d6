"""Every chat-template family in the catalog: the Modelfile's TEMPLATE, rendered the way Ollama
renders it, gives exactly the prompt the model's Hugging Face template gives (as ftui renders it
for training), for system + user + assistant + user with and without a system prompt.

Ollama is not installed here, so `GoTemplate` below executes the Go text/template subset the
Modelfiles use (text, `{{ .Field }}`, `range`, `if` with `ne`/`eq`, `end`, and the `{{-`/`-}}`
trim markers, applied at parse time as Go does), and `ollama_render` prepares the data as
Ollama's server does (template/template.go `Execute` and `collate`, server's system insertion).
The Llama 3.1 and 3.2 templates are the published ones (tests/export/fixtures), because their
tokenizers are gated on the hub.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.data.render import TEMPLATE_DATE, render_text
from engine.data.types import Conversation, Message
from engine.export.modelfile import STOPS, TEMPLATES, default_system_prompt, render_modelfile, template_family
from engine.hardware.catalog import load_catalog

FIXTURES = Path(__file__).parent / "fixtures"
SYSTEM = "Answer with one command."
CONVERSATIONS = {
    "system-user-assistant-user": [
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": "Stop web"},
        {"role": "assistant", "content": "Run: `docker stop web`"}, {"role": "user", "content": "And remove it?\nPlease."}],
    "user-assistant-user": [
        {"role": "user", "content": "Stop web"}, {"role": "assistant", "content": "Run: `docker stop web`"},
        {"role": "user", "content": "And remove it?"}],
    "user": [{"role": "user", "content": "How do I list running containers?"}],
}


class GoTemplate:
    """Go text/template, the subset Ollama Modelfiles here use."""

    _ACTION = re.compile(r"\{\{(-\s)?\s*(.*?)\s*(\s-)?\}\}", re.S)

    def __init__(self, source: str):
        nodes: list[tuple[str, str]] = []
        pos = 0
        for m in self._ACTION.finditer(source):
            text = source[pos:m.start()]
            if m.group(1):  # "{{- " trims the white space before it
                text = text.rstrip(" \t\r\n")
            nodes.append(("text", text))
            nodes.append(("action", m.group(2)))
            pos = m.end()
            if m.group(3):  # " -}}" trims the white space after it
                rest = source[pos:]
                pos += len(rest) - len(rest.lstrip(" \t\r\n"))
        nodes.append(("text", source[pos:]))
        self.tree, end = self._parse(nodes, 0)
        assert end == len(nodes), "unbalanced {{ end }}"

    def _parse(self, nodes, i):
        out = []
        while i < len(nodes):
            kind, value = nodes[i]
            if kind == "action" and value == "end":
                return out, i
            if kind == "action" and value.startswith(("range ", "if ")):
                body, j = self._parse(nodes, i + 1)
                assert j < len(nodes) and nodes[j] == ("action", "end"), f"no end for {value!r}"
                out.append(("block", value, body))
                i = j + 1
                continue
            out.append((kind, value))
            i += 1
        return out, i

    def execute(self, data: dict) -> str:
        return self._run(self.tree, data, data)

    def _run(self, tree, dot, root) -> str:
        parts = []
        for node in tree:
            if node[0] == "text":
                parts.append(node[1])
            elif node[0] == "action":
                parts.append(str(self._value(node[1], dot, root)))
            else:
                _, head, body = node
                if head.startswith("range "):
                    for item in self._value(head[6:], dot, root) or []:
                        parts.append(self._run(body, item, root))
                elif self._truth(head[3:], dot, root):
                    parts.append(self._run(body, dot, root))
        return "".join(parts)

    def _truth(self, expr, dot, root):
        m = re.fullmatch(r'(eq|ne) (\S+) "(.*)"', expr)
        if m:
            value = self._value(m.group(2), dot, root)
            return (value == m.group(3)) == (m.group(1) == "eq")
        return bool(self._value(expr, dot, root))

    @staticmethod
    def _value(expr, dot, root):
        if expr.startswith("$."):
            return root.get(expr[2:], "")
        assert expr.startswith("."), f"unsupported action {expr!r}"
        return dot.get(expr[1:], "") if isinstance(dot, dict) else ""


def ollama_render(template: str, messages: list[dict[str, str]], modelfile_system: str) -> str:
    """What Ollama sends the model for a chat request with `messages`."""
    msgs = [dict(m) for m in messages]
    if modelfile_system and (not msgs or msgs[0]["role"] != "system"):
        msgs.insert(0, {"role": "system", "content": modelfile_system})
    system = "\n\n".join(m["content"] for m in msgs if m["role"] == "system")
    collated: list[dict[str, str]] = []
    for m in msgs:  # consecutive messages of one role are merged (template.go `collate`)
        if collated and collated[-1]["role"] == m["role"]:
            collated[-1]["content"] += "\n\n" + m["content"]
        else:
            collated.append(m)
    data = {"System": system, "Messages": [{"Role": m["role"], "Content": m["content"]} for m in collated],
            "Response": ""}
    return GoTemplate(template).execute(data)


def hf_tokenizer(spec, tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    if spec.chat_template == "llama3":
        version = "3.1" if "3.1" in spec.hub_id else "3.2"
        tok.chat_template = (FIXTURES / f"llama-{version}-instruct.jinja").read_text()
        tok.bos_token = "<|begin_of_text|>"
    return tok


def test_the_go_template_renderer_follows_go_trim_rules():
    assert GoTemplate("a \n{{- .X -}}\n b").execute({"X": "x"}) == "axb"
    assert GoTemplate('{{ range .M }}{{ if ne .R "s" }}[{{ .R }}]{{ end }}{{ end }}').execute(
        {"M": [{"R": "s"}, {"R": "u"}]}) == "[u]"


EXPORTED = [s.id for s in load_catalog() if s.architecture == "llama"]
"""The catalog models ftui writes GGUFs and Modelfiles for (engine/export/gguf_writer.py); the other
families are refused before training until their export is built (issue 23)."""


@pytest.mark.parametrize("model", EXPORTED)
@pytest.mark.parametrize("name", CONVERSATIONS)
@pytest.mark.parametrize("configured_system", ["", SYSTEM])
def test_modelfile_renders_what_the_model_was_trained_on(model, name, configured_system, tokenizer_dir):
    spec = next(s for s in load_catalog() if s.id == model)
    tok = hf_tokenizer(spec, tokenizer_dir)
    family = template_family(tok.chat_template, spec.chat_template)
    assert family == ("chatml" if spec.chat_template == "chatml" else "llama3.1")
    conversation = CONVERSATIONS[name]
    if configured_system and conversation[0]["role"] != "system":
        conversation = [{"role": "system", "content": configured_system}, *conversation]  # with_system_prompt
    # The Modelfile's SYSTEM: the run's system prompt, else the template's own default (SmolLM2 has one).
    modelfile_system = configured_system or default_system_prompt(tok)
    trained = render_text(tok, Conversation(tuple(Message(m["role"], m["content"]) for m in conversation), 1))
    want = tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True,
                                   date_string=TEMPLATE_DATE)
    assert want.startswith(trained)  # ftui's training render is the HF render, date included
    bos = tok.bos_token if spec.chat_template == "llama3" else ""  # llama.cpp adds BOS itself
    assert bos + ollama_render(TEMPLATES[family], conversation, modelfile_system) == want
    modelfile = render_modelfile("m.gguf", family, modelfile_system)
    for stop in STOPS[family]:
        assert f'PARAMETER stop "{stop}"' in modelfile


def test_llama32_training_render_uses_the_pinned_date_not_today(tokenizer_dir):
    spec = next(s for s in load_catalog() if "3.2" in s.hub_id)
    tok = hf_tokenizer(spec, tokenizer_dir)
    text = render_text(tok, Conversation((Message("user", "Hi"), Message("assistant", "Hello.")), 1))
    assert f"Today Date: {TEMPLATE_DATE}\n\n<|eot_id|>" in text
    assert default_system_prompt(tok) == ""  # the date preamble is TEMPLATE's, not a system prompt


def test_llama3_stops_are_ollamas_and_system_is_trimmed():
    text = render_modelfile("m.gguf", "llama3.1", "  Be brief.\n")
    assert text.count("PARAMETER stop") == 3 and 'SYSTEM """Be brief."""' in text
    assert 'PARAMETER stop "<|im_start|>"' in render_modelfile("m.gguf", "chatml", "")
