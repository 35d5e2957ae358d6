"""Every chat-template family in the catalog: the Modelfile's TEMPLATE, rendered the way Ollama
renders it, gives exactly the prompt the model's Hugging Face template gives (as ftui renders it
for training), for system + user + assistant + user with and without a system prompt, and for
Qwen3 with thinking on and off.

Ollama is not installed here, so `GoTemplate` below executes the Go text/template subset the
Modelfiles use (text, `{{ .Field }}`, `$.Field`, `range` with or without `$i, $_ :=`, `if` over
`eq`/`ne`/`and`/`not`/`len`/`slice` calls, `end`, and the `{{-`/`-}}` trim markers, applied at
parse time as Go does), and `ollama_render` prepares the data as Ollama's server does
(template/template.go `Execute` and `collate`, server's system insertion, `--think`).

The HF templates are the published ones, in tests/engine/export/fixtures, because the tokenizers of most
of these models are gated or not on this machine:
- llama-3.1-instruct.jinja, llama-3.2-instruct.jinja and qwen3.jinja: llama.cpp's
  models/templates/meta-llama-Llama-3.1-8B-Instruct.jinja, meta-llama-Llama-3.2-3B-Instruct.jinja
  and Qwen-Qwen3-0.6B.jinja, from the llama.cpp that llama-cpp-python 0.3.36's sdist vendors;
- gemma-3.jinja, mistral-7b-v0.3.jinja and phi-4-mini.jinja: llama.cpp holds none of them, so
  they are the `chat_template` of google/gemma-3-1b-it, mistralai/Mistral-7B-Instruct-v0.3 and
  microsoft/Phi-4-mini-instruct's tokenizer_config.json as public repositories quote them
  (found with ftui's code search on 2026-12-06; several copies each, identical).
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
FAMILY_TEMPLATES = {"qwen3": "qwen3.jinja", "gemma": "gemma-3.jinja", "mistral": "mistral-7b-v0.3.jinja",
                    "phi4": "phi-4-mini.jinja"}
"""The fixture each catalog template family other than SmolLM2's and Llama's renders with."""
SPECIAL = {"gemma": ("<bos>", "<eos>"), "mistral": ("<s>", "</s>"), "phi4": ("<|endoftext|>", "<|endoftext|>"),
           "qwen3": (None, "<|im_end|>")}
"""(BOS, EOS) of each family's tokenizer, as its tokenizer_config.json names them."""
HF_BOS = {"llama3.1": "<|begin_of_text|>", "gemma": "<bos>", "mistral": "<s>"}
"""The BOS the HF template writes itself; llama.cpp adds it from the GGUF, so Ollama's text has none."""


class GoTemplate:
    """Go text/template, the subset Ollama Modelfiles here use."""

    _ACTION = re.compile(r"\{\{(-\s)?\s*(.*?)\s*(\s-)?\}\}", re.S)
    _TOKEN = re.compile(r'\s*(\(|\)|"[^"]*"|-?\d+|[^\s()]+)')

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
        return self._run(self.tree, data, {"$": data})

    def _run(self, tree, dot, env) -> str:
        parts = []
        for node in tree:
            if node[0] == "text":
                parts.append(node[1])
            elif node[0] == "action":
                parts.append(str(self._eval(node[1], dot, env)))
            else:
                _, head, body = node
                if head.startswith("range "):
                    m = re.fullmatch(r"range (?:(\$\w*), (\$\w*) := )?(.+)", head)
                    for index, item in enumerate(self._eval(m.group(3), dot, env) or []):
                        scope = {**env, m.group(1): index, m.group(2): item} if m.group(1) else env
                        parts.append(self._run(body, item, scope))
                elif self._eval(head[3:], dot, env):
                    parts.append(self._run(body, dot, env))
        return "".join(parts)

    def _eval(self, expr, dot, env):
        tokens = self._TOKEN.findall(expr)
        value, rest = self._command(tokens, dot, env)
        assert not rest, f"unparsed {rest!r} in {expr!r}"
        return value

    def _command(self, tokens, dot, env):
        """A pipeline command: a function applied to its arguments, or one value."""
        args = []
        while tokens and tokens[0] != ")":
            head, tokens = tokens[0], tokens[1:]
            if head == "(":
                value, tokens = self._command(tokens, dot, env)
                assert tokens[0] == ")"
                tokens = tokens[1:]
                args.append(value)
            else:
                args.append(head)
        first, rest = args[0], [self._value(a, dot, env) for a in args[1:]]
        functions = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "not": lambda a: not a,
                     "and": lambda *a: next((x for x in a if not x), a[-1]), "len": len,
                     "slice": lambda seq, i: seq[i:]}
        if isinstance(first, str) and first in functions:
            return functions[first](*rest), tokens
        assert not rest, f"{first!r} is not a function"
        return self._value(first, dot, env), tokens

    @staticmethod
    def _value(arg, dot, env):
        if not isinstance(arg, str):
            return arg  # a parenthesised command's value
        if arg.startswith('"'):
            return arg[1:-1]
        if re.fullmatch(r"-?\d+", arg):
            return int(arg)
        if arg.startswith("$."):
            return env["$"].get(arg[2:], "")
        if arg.startswith("$"):
            return env[arg]
        assert arg.startswith("."), f"unsupported argument {arg!r}"
        return dot.get(arg[1:], "") if isinstance(dot, dict) else ""


def ollama_render(template: str, messages: list[dict[str, str]], modelfile_system: str,
                  think: bool | None = None) -> str:
    """What Ollama sends the model for a chat request with `messages` (`think`: the request's
    `think`, None when not set, as `ollama run` without `--think`)."""
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
    data = {"System": system, "Response": "", "Think": bool(think), "IsThinkSet": think is not None,
            "Messages": [{"Role": m["role"], "Content": m["content"], "Thinking": m.get("thinking", "")}
                         for m in collated]}
    return GoTemplate(template).execute(data)


def hf_tokenizer(spec, tokenizer_dir):
    """SmolLM2's tokenizer with the model's published template and special tokens (rendering to
    text needs no more of the model's own tokenizer)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    fixture = (f"llama-{'3.1' if '3.1' in spec.hub_id else '3.2'}-instruct.jinja" if spec.chat_template == "llama3"
               else FAMILY_TEMPLATES.get(spec.family) or FAMILY_TEMPLATES.get(spec.chat_template))
    if fixture:
        tok.chat_template = (FIXTURES / fixture).read_text()
        bos, eos = SPECIAL.get(spec.family, SPECIAL.get(spec.chat_template, ("<|begin_of_text|>", "<|eot_id|>")))
        tok.bos_token, tok.eos_token = bos, eos
    return tok


def test_the_go_template_renderer_follows_go_trim_rules():
    assert GoTemplate("a \n{{- .X -}}\n b").execute({"X": "x"}) == "axb"
    assert GoTemplate('{{ range .M }}{{ if ne .R "s" }}[{{ .R }}]{{ end }}{{ end }}').execute(
        {"M": [{"R": "s"}, {"R": "u"}]}) == "[u]"
    last = '{{ range $i, $_ := .M }}{{ if and (eq (len (slice $.M $i)) 1) (not $.Q) }}{{ .R }}{{ end }}{{ end }}'
    assert GoTemplate(last).execute({"M": [{"R": "a"}, {"R": "b"}], "Q": False}) == "b"
    assert GoTemplate(last).execute({"M": [{"R": "a"}, {"R": "b"}], "Q": True}) == ""


TEMPLATE_MODELS = list({(s.chat_template, s.family, s.hub_id if s.chat_template == "llama3" else ""): s.id
                        for s in load_catalog()}.values())
"""One catalog model per published template: SmolLM2, Llama 3.1, Llama 3.2, Qwen3, Gemma 3,
Mistral v0.3 and Phi-4-mini (the 4-bit copies and other sizes share their template)."""
FAMILY_OF = {"smollm2": "chatml", "qwen3": "qwen3", "gemma3": "gemma", "mistral": "mistral", "phi4": "phi4"}


def _expected_family(spec) -> str:
    return "llama3.1" if spec.chat_template == "llama3" else FAMILY_OF[spec.family]


@pytest.mark.parametrize("model", TEMPLATE_MODELS)
@pytest.mark.parametrize("name", CONVERSATIONS)
@pytest.mark.parametrize("configured_system", ["", SYSTEM])
def test_modelfile_renders_what_the_model_was_trained_on(model, name, configured_system, tokenizer_dir):
    spec = next(s for s in load_catalog() if s.id == model)
    tok = hf_tokenizer(spec, tokenizer_dir)
    family = template_family(tok.chat_template, spec.chat_template)
    assert family == _expected_family(spec)
    conversation = CONVERSATIONS[name]
    if configured_system and conversation[0]["role"] != "system":
        conversation = [{"role": "system", "content": configured_system}, *conversation]  # with_system_prompt
    # The Modelfile's SYSTEM: the run's system prompt, else the template's own default (SmolLM2 has one).
    modelfile_system = configured_system or default_system_prompt(tok)
    trained = render_text(tok, Conversation(tuple(Message(m["role"], m["content"]) for m in conversation), 1))
    if family == "phi4":  # Phi-4 ends a conversation with EOS, here after the user's turn that training never ends on
        trained = trained.removesuffix(tok.eos_token)
    for think in ((None, True, False) if family == "qwen3" else (None,)):
        extra = {} if think is None else {"enable_thinking": think}
        want = tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True,
                                       date_string=TEMPLATE_DATE, **extra)
        assert want.startswith(trained)  # ftui's training render is the HF render, date included
        bos = HF_BOS.get(family, "")  # llama.cpp adds BOS itself
        assert bos + ollama_render(TEMPLATES[family], conversation, modelfile_system, think) == want, think
    modelfile = render_modelfile("m.gguf", family, modelfile_system)
    for stop in STOPS[family]:
        assert f'PARAMETER stop "{stop}"' in modelfile


def test_qwen3_thinking_of_earlier_replies_is_dropped_and_a_last_replys_kept(tokenizer_dir):
    """HF's Qwen3 template drops the reasoning of replies before the last question and keeps it
    in a reply sent last; Ollama passes the reasoning apart from the answer (.Thinking)."""
    spec = next(s for s in load_catalog() if s.family == "qwen3")
    tok = hf_tokenizer(spec, tokenizer_dir)
    hf_reply = {"role": "assistant", "content": "<think>\nThe user wants docker.\n</think>\n\nRun: `docker stop web`"}
    ollama_reply = {"role": "assistant", "content": "Run: `docker stop web`", "thinking": "The user wants docker."}
    question = {"role": "user", "content": "Stop web"}
    for tail in ([{"role": "user", "content": "And remove it?"}], []):
        want = tok.apply_chat_template([question, hf_reply, *tail], tokenize=False, add_generation_prompt=True)
        assert ollama_render(TEMPLATES["qwen3"], [question, ollama_reply, *tail], "") == want
        assert ("The user wants docker." in want) == (not tail)


def test_each_template_is_told_apart_by_its_markers():
    for family, fixture in FAMILY_TEMPLATES.items():
        assert template_family((FIXTURES / fixture).read_text()) == family
    phi3 = "{{ '<|' + message['role'] + '|>' + '\\n' + message['content'] + '<|end|>\\n' }}"
    assert template_family(phi3) is None  # Phi-3's newlines are not Phi-4's template
    assert template_family(phi3, "phi4") == "phi4"  # ...unless the catalog says so


def test_llama32_training_render_uses_the_pinned_date_not_today(tokenizer_dir):
    spec = next(s for s in load_catalog() if "3.2" in s.hub_id)
    tok = hf_tokenizer(spec, tokenizer_dir)
    text = render_text(tok, Conversation((Message("user", "Hi"), Message("assistant", "Hello.")), 1))
    assert f"Today Date: {TEMPLATE_DATE}\n\n<|eot_id|>" in text
    assert default_system_prompt(tok) == ""  # the date preamble is TEMPLATE's, not a system prompt


def test_stops_are_ollamas_and_system_is_trimmed():
    text = render_modelfile("m.gguf", "llama3.1", "  Be brief.\n")
    assert text.count("PARAMETER stop") == 3 and 'SYSTEM """Be brief."""' in text
    assert 'PARAMETER stop "<|im_start|>"' in render_modelfile("m.gguf", "chatml", "")
    assert render_modelfile("m.gguf", "gemma", "").count("PARAMETER stop") == 1
    assert 'PARAMETER stop "[INST]"' in render_modelfile("m.gguf", "mistral", "")
