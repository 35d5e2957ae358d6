"""`python -m engine.export.convert_child FOLDER ARGS...`: llama.cpp's convert_hf_to_gguf.py from FOLDER.

FOLDER's gguf-py goes first on the path before anything imports `gguf`, so the converter runs with
the gguf-py it was written against, not the pip package. One change to it: a BPE tokenizer whose
test tokenization llama.cpp does not recognise (llama.cpp names pre-tokenizers by hashing the
token ids of a fixed text, so a vocabulary extended or shrunk but split by the same rules is
unknown to it) gets the pre-tokenizer its splitting rules name (gguf_writer.pre_tokenizer_name);
the token-id check of the verification proves the choice on every export. Two: a Phi-3 folder
with a byte-level tokenizer.json and no tokenizer.model (Phi-4-mini) is read as the GPT-2 kind of
vocabulary; the converter decides that by tokenizer_config.json naming `GPT2Tokenizer`, which a
folder saved by transformers 5 (merged/) no longer does.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> None:
    folder = Path(argv[1])
    sys.path[:0] = [str(folder / "gguf-py"), str(folder)]
    import conversion.base as base  # type: ignore[import-not-found]  # llama.cpp's, from `folder`

    hashed = base.TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self: Any, tokenizer: Any) -> str:
        try:
            return hashed(self, tokenizer)
        except NotImplementedError:
            from engine.export.gguf_writer import pre_tokenizer_name

            name = pre_tokenizer_name(self.dir_model)
            base.logger.info(f"pre-tokenizer {name!r}, read from the tokenizer's splitting rules")
            return name

    base.TextModel.get_vocab_base_pre = get_vocab_base_pre

    import conversion.phi as phi  # type: ignore[import-not-found]

    by_class_name = phi.Phi3MiniModel.set_vocab

    def phi3_set_vocab(self: Any) -> Any:
        if not (self.dir_model / "tokenizer.model").is_file() and (self.dir_model / "tokenizer.json").is_file():
            return self._set_vocab_gpt2()
        return by_class_name(self)

    phi.Phi3MiniModel.set_vocab = phi3_set_vocab
    script = folder / "convert_hf_to_gguf.py"
    sys.argv = [str(script), *argv[2:]]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main(sys.argv)
