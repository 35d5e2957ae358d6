"""Chat with an exported GGUF through llama.cpp, using the chat template stored in the file.

Using the GGUF's own template means the chat here formats prompts exactly as llama.cpp and
Ollama will, so what you see is what you ship. Replies stream as text pieces.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class ChatSession:
    """A conversation with history; call close() when done (llama.cpp's finaliser can fail at exit)."""

    def __init__(self, gguf_path: str | Path, system_prompt: str = "", temperature: float = 0.7,
                 top_p: float = 0.9, max_tokens: int = 256, n_ctx: int = 4096, seed: int = 0):
        import llama_cpp

        path = Path(gguf_path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such GGUF file")
        self.path = path
        self.system_prompt = system_prompt
        self.temperature = temperature
        self.top_p = top_p
        self.max_tokens = max_tokens
        self.gpu = bool(llama_cpp.llama_supports_gpu_offload())
        self._llm: Any = llama_cpp.Llama(
            model_path=str(path), n_ctx=n_ctx, n_gpu_layers=-1 if self.gpu else 0,
            n_threads=max(1, min(8, os.cpu_count() or 1)), seed=seed, verbose=False,
        )
        if not self._llm.metadata.get("tokenizer.chat_template"):
            self.close()
            raise ValueError(f"{path.name} has no chat template; export it with ftui to embed one")
        self.history: list[dict[str, str]] = []

    def send(self, text: str) -> Iterator[str]:
        """Stream the reply to `text`; the full reply joins the history once streaming ends."""
        if self._llm is None:
            raise RuntimeError("the chat session is closed")
        self.history.append({"role": "user", "content": text})
        messages = ([{"role": "system", "content": self.system_prompt}] if self.system_prompt else []) + self.history
        pieces: list[str] = []
        try:
            stream = self._llm.create_chat_completion(
                messages=messages, stream=True, temperature=self.temperature, top_p=self.top_p,
                max_tokens=self.max_tokens,
            )
            for chunk in stream:
                piece = chunk["choices"][0]["delta"].get("content")
                if piece:
                    pieces.append(piece)
                    yield piece
        finally:
            # A reply cut short (stop pressed, consumer gone) still belongs to the conversation.
            self.history.append({"role": "assistant", "content": "".join(pieces)})

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
