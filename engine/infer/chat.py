"""Chat with an exported GGUF through llama.cpp, using the chat template stored in the file.

Using the GGUF's own template means the chat here formats prompts exactly as llama.cpp and
Ollama will, so what you see is what you ship. Replies stream as text pieces. Each family's
stop strings (the Modelfile's, engine/export/modelfile.py) end a reply that writes the next
turn's markers as text; a thinking model's reasoning is left in the reply for the face to show or
hide (engine/infer/thinking.py).

llama.cpp reports any file it cannot load as "Failed to load model from file", so the file is
checked first (missing, a folder, empty, not a GGUF, truncated) and the message says which.
"""

from __future__ import annotations

import math
import mmap
import struct
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from engine.display import printable
from engine.errors import ActionableError

GGUF_MAGIC = b"GGUF"
GGUF_VERSIONS = (2, 3)
"""The versions llama.cpp reads: version 1 was dropped, and each later one only adds."""
RECOPY = "The download, copy or export stopped early: copy the file again, or export the run again."


class GGUFFileError(ActionableError, ValueError):
    """A file chat cannot load, with what is wrong with it (a ValueError for callers that catch those)."""


# Metadata value types by their number in the GGUF spec: sizes of the fixed-size ones.
_SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_UINT32, _STRING, _ARRAY = 4, 8, 9
MAX_ARRAY_DEPTH = 8
"""Arrays of arrays deeper than this are a damaged (or crafted) header: real GGUFs nest one level."""


class _Short(Exception):
    """The header reads past the end of the file."""


class _Header:
    """A cursor over a GGUF header that stops at the end of the buffer."""

    def __init__(self, buf: Any):
        self.buf, self.pos = buf, 4  # after the magic

    def take(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise _Short
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return int(value)

    def skip(self, n: int) -> None:
        self.pos += n
        if self.pos > len(self.buf):
            raise _Short

    def string(self) -> bytes:
        start = self.pos + 8
        self.skip(self.take("Q"))
        return bytes(self.buf[start:self.pos])

    def value(self, kind: int, depth: int = 0) -> None:
        if kind in _SCALAR_BYTES:
            self.skip(_SCALAR_BYTES[kind])
        elif kind == _STRING:
            self.skip(self.take("Q"))
        elif kind == _ARRAY:
            if depth >= MAX_ARRAY_DEPTH:
                raise ValueError(f"arrays nested more than {MAX_ARRAY_DEPTH} deep at byte {self.pos}")
            item, count = self.take("I"), self.take("Q")
            if item in _SCALAR_BYTES:
                self.skip(count * _SCALAR_BYTES[item])
            else:
                for _ in range(count):  # every item takes bytes, so a huge count soon runs out of file
                    self.value(item, depth + 1)
        else:
            raise ValueError(f"a metadata value of unknown type {kind} at byte {self.pos - 4}")


def check_gguf(path: Path) -> None:
    """Raise GGUFFileError saying what is wrong when `path` is not a whole GGUF file.

    Reads only the header (the metadata and the tensor table), then compares where the last
    tensor's data ends with the file size: a cut-off file is named as such, with both numbers.
    """
    if not path.exists():
        if path.is_symlink():
            raise GGUFFileError(f"{path} is a symbolic link to nothing (or a loop of links).", "Pass a .gguf file.")
        raise GGUFFileError(f"{path} does not exist.", "Pass a .gguf file; a run's export/ folder holds them.")
    if path.is_dir():
        raise GGUFFileError(f"{path} is a folder, not a GGUF file.",
                            "Pass one of its .gguf files, or the run directory to chat with its export.")
    if not path.is_file():
        raise GGUFFileError(f"{path} is not a regular file (a pipe or a device?).", "Pass a .gguf file.")
    size = path.stat().st_size
    if size == 0:
        raise GGUFFileError(f"{path} is empty (0 bytes).", RECOPY)
    try:
        f = path.open("rb")
    except OSError as exc:
        raise GGUFFileError(f"{path} cannot be read: {exc.strerror}.", "Check the file's permissions.") from None
    with f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != GGUF_MAGIC:
            raise GGUFFileError(f"{path} is not a GGUF file: it starts with {_looks_like(buf[:64])}.",
                                "Chat needs a GGUF: `ftui export RUN` writes one from a run.")
        try:
            data_end = _data_end(buf, path)
        except _Short:
            raise GGUFFileError(f"{path} is truncated: its {size:,} bytes end inside the GGUF header.",
                                RECOPY) from None
        except ValueError as exc:
            raise GGUFFileError(f"{path} has a damaged GGUF header: {exc}.", RECOPY) from None
    if data_end > size:
        raise GGUFFileError(f"{path} is truncated at byte {size:,} of {data_end:,} expected.", RECOPY)


def _data_end(buf: Any, path: Path) -> int:
    """Where the tensor data of the GGUF in `buf` ends, by its header."""
    from gguf.constants import GGML_QUANT_SIZES

    header = _Header(buf)
    version = header.take("I")
    if version & 0xFFFF == 0 and version:
        raise GGUFFileError(f"{path} is a big-endian GGUF.", "llama.cpp on this machine reads little-endian ones.")
    if version not in GGUF_VERSIONS:
        raise GGUFFileError(f"{path} is GGUF version {version}; llama.cpp reads versions 2 and 3.",
                            "Convert the model again with a current llama.cpp, or export the run with ftui.")
    n_tensors, n_values = header.take("Q"), header.take("Q")
    alignment = 32
    for _ in range(n_values):
        key, kind = header.string(), header.take("I")
        if key == b"general.alignment" and kind == _UINT32:
            alignment = header.take("I")
        else:
            header.value(kind)
    end = 0
    for _ in range(n_tensors):
        header.string()
        dims = [header.take("Q") for _ in range(header.take("I"))]
        kind, offset = header.take("I"), header.take("Q")
        if kind in GGML_QUANT_SIZES:  # an unknown type is llama.cpp's to report, by name
            block, block_bytes = GGML_QUANT_SIZES[kind]
            end = max(end, offset + math.prod(dims) // block * block_bytes)
    if alignment <= 0 or alignment & (alignment - 1):
        raise ValueError(f"general.alignment is {alignment}, not a power of two")
    return -(-header.pos // alignment) * alignment + end


def _looks_like(head: bytes) -> str:
    """What the first bytes of a file that is not a GGUF suggest it is."""
    if head.startswith(b"PK\x03\x04"):
        return "a zip signature (PyTorch .bin and .pt checkpoints are zip files)"
    if head[8:10] == b'{"':
        return "a safetensors header (Hugging Face weights, not a GGUF export)"
    if head[:4] in (b"lmgg", b"fmgg", b"tjgg"):
        return "an old GGML signature, a format llama.cpp no longer reads"
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer (the real file was never downloaded)"
    text = head[:24].decode("utf-8", errors="replace").rstrip("\ufffd")
    if text and all(c.isprintable() or c in "\t\r\n" for c in text):
        return f"text: {text!r}"
    return f"the bytes {head[:4].hex(' ')}"


class ChatSession:
    """A conversation with history; call close() when done (llama.cpp's finaliser can fail at exit)."""

    def __init__(self, gguf_path: str | Path, system_prompt: str = "", temperature: float = 0.7,
                 top_p: float = 0.9, max_tokens: int = 256, n_ctx: int = 4096, seed: int = 0):
        from engine.native.llama import load_llama

        path = Path(gguf_path)
        check_gguf(path)
        self.path = path
        self.system_prompt = system_prompt
        self.temperature = temperature
        self.top_p = top_p
        self.max_tokens = max_tokens
        try:
            # flash_attn: on two cores 160 greedy replies took 48 s instead of 60, the same replies batched or not
            self._llm, plan = load_llama(path, n_ctx=n_ctx, seed=seed, flash_attn=True)
        except ValueError as exc:
            raise GGUFFileError(f"llama.cpp could not load {path}, though its GGUF header and size are sound ({exc}).",
                                "Its architecture or tensor types may be newer than this llama.cpp: "
                                "export the run with ftui, or update llama-cpp-python.") from None
        self.gpu = plan.gpu_layers != 0
        self.notes = plan.notes
        """What the load chose and why (no repacking on an AMX CPU, the CPU when the GPU is full)."""
        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            self.close()
            raise GGUFFileError(f"{path.name} has no chat template.", "Export it with ftui to embed one.")
        from engine.export.modelfile import STOPS, template_family

        self.family = template_family(template)
        """The chat template family of the GGUF's template (None for one ftui has no Modelfile for)."""
        self.stops: tuple[str, ...] = STOPS.get(self.family or "", ())
        self.history: list[dict[str, str]] = []
        self.cut_short = False
        """The last reply ran into max_tokens instead of ending its turn."""
        self._formatter: Any = None

    def send(self, text: str) -> Iterator[str]:
        """Stream the reply to `text`, as text safe to show in a terminal (`engine.display`); the full
        reply, as the model wrote it, joins the history once streaming ends."""
        if self._llm is None:
            raise RuntimeError("the chat session is closed")
        self.history.append({"role": "user", "content": text})
        messages = ([{"role": "system", "content": self.system_prompt}] if self.system_prompt else []) + self.history
        pieces: list[str] = []
        self.cut_short = False
        try:
            stream = self._llm.create_chat_completion(
                messages=messages, stream=True, temperature=self.temperature, top_p=self.top_p,
                max_tokens=self.max_tokens, stop=list(self.stops),
            )
            for chunk in stream:
                self.cut_short = chunk["choices"][0].get("finish_reason") == "length"
                piece = chunk["choices"][0]["delta"].get("content")
                if piece:
                    pieces.append(piece)
                    shown = printable(piece)
                    if shown:
                        yield shown
        finally:
            # A reply cut short (stop pressed, consumer gone) still belongs to the conversation.
            self.history.append({"role": "assistant", "content": "".join(pieces)})

    def complete_all(self, conversations: Sequence[list[dict[str, str]]],
                     on_reply: Callable[[int, str, bool], None] | None = None) -> list[tuple[str, bool]]:
        """`complete`'s greedy reply to each conversation, decoded several at a time (`greedy_batch`):
        (text, ended on its own) in the conversations' order; `on_reply(index, text, ended)` as each ends."""
        from engine.infer.greedy_batch import greedy_replies

        if self._llm is None:
            raise RuntimeError("the chat session is closed")
        replies = greedy_replies(self._llm, [self.prompt_tokens(c) for c in conversations], self.max_tokens, on_reply)
        return [cut_at_stops(text, ended, self.stops) for text, ended in replies]

    def prompt_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        """The token ids llama.cpp's chat completion feeds for `messages` after the system prompt:
        the GGUF's template, its BOS unless the template writes one, special tokens parsed."""
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llm = self._llm
        if llm is None:
            raise RuntimeError("the chat session is closed")
        if self._formatter is None:
            vocab = llama_cpp.llama_model_get_vocab(llm.model)
            eos, bos = llm.token_eos(), llm.token_bos()
            text = {t: llama_cpp.llama_vocab_get_text(vocab, t).decode("utf-8") if t != -1 else "" for t in (eos, bos)}
            self._formatter = Jinja2ChatFormatter(template=llm.metadata["tokenizer.chat_template"],
                                                  eos_token=text[eos], bos_token=text[bos], stop_token_ids=[eos])
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        formatted = self._formatter(messages=system + messages)
        return list(llm.tokenize(formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True))

    def reset(self, system_prompt: str | None = None) -> None:
        self.history.clear()
        if system_prompt is not None:
            self.system_prompt = system_prompt

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    def __enter__(self) -> ChatSession:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def cut_at_stops(text: str, ended: bool, stops: Sequence[str]) -> tuple[str, bool]:
    """A reply up to the first of `stops` it writes, which ends it as the chat's stop strings do."""
    cuts = [i for i in (text.find(stop) for stop in stops) if i >= 0]
    return (text[:min(cuts)].rstrip(), True) if cuts else (text, ended)
