"""HF folder -> GGUF through llama.cpp's own convert_hf_to_gguf.py, pinned to the llama.cpp ftui runs.

The llama-cpp-python sdist that `make` builds carries llama.cpp's converter (convert_hf_to_gguf.py,
its `conversion` package) and the gguf-py it is written against; the Makefile extracts the three
into `<cache>/llama-convert/<llama-cpp-python version>/`. Choosing the folder by the installed
version means the converter always matches the llama.cpp that loads its files (no download, no
skew). It runs in a child process with that gguf-py first on its path (the pip `gguf` package may
be older), so it knows every architecture that llama.cpp knows: Qwen3, Gemma 3, Mistral, Phi-3 and
the rest. ftui's own writer (gguf_writer.py) still writes Llama models: it gives the same bytes,
streams progress and needs no extracted converter (docs/export-chat-eval.md has the measurement).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from engine.errors import ActionableError
from engine.events import EventSink, Progress, ignore
from engine.files.atomic import atomic_file
from engine.files.paths import cache_dir

CONVERTER_ENV = "FTUI_LLAMA_CONVERT"
"""A folder holding convert_hf_to_gguf.py, conversion/ and gguf-py/, used instead of the cache's."""
CONVERTED_ARCHITECTURES = {
    "Qwen3ForCausalLM": "qwen3", "Gemma3ForCausalLM": "gemma3_text", "MistralForCausalLM": "mistral",
    "Phi3ForCausalLM": "phi3", "Gemma3ForConditionalGeneration": "gemma3",
}
"""config.json architectures ftui exports through the converter, with their model_type. Each but
the last is exported and verified on a tiny model in tests/engine/export/; Gemma 3 4B/12B (the
multimodal class, of which llama.cpp converts the text tower) only by the verification every
export runs."""
LOG_TAIL = 2000


class ConverterMissing(ActionableError):
    """llama.cpp's converter is not in the cache folder for the installed llama-cpp-python."""


class ConversionFailed(ActionableError):
    """The converter ran and exited with an error."""


def llama_cpp_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llama-cpp-python")
    except PackageNotFoundError:
        return None


def converter_dir() -> Path:
    """Where the converter for the installed llama-cpp-python is (it may be absent)."""
    override = os.environ.get(CONVERTER_ENV)
    if override:
        return Path(override)
    return cache_dir() / "llama-convert" / (llama_cpp_version() or "none")


def find_converter() -> Path:
    """The converter folder, complete, or ConverterMissing saying how to get it."""
    folder = converter_dir()
    needed = [folder / "convert_hf_to_gguf.py", folder / "conversion" / "__init__.py",
              folder / "gguf-py" / "gguf" / "__init__.py"]
    missing = [p.relative_to(folder).as_posix() for p in needed if not p.is_file()]
    if missing:
        version = llama_cpp_version() or "(not installed)"
        raise ConverterMissing(
            f"llama.cpp's GGUF converter for llama-cpp-python {version} is not in {folder} "
            f"(missing {', '.join(missing)}); ftui uses it to export models other than Llama",
            "run `make converter` in the ftui checkout (it takes convert_hf_to_gguf.py and gguf-py from the "
            f"llama-cpp-python sdist that ftui builds), or point {CONVERTER_ENV} at a folder holding them")
    return folder


def convert(model_dir: Path, out_path: Path, *, dtype: str = "F16", name: str | None = None,
            on_event: EventSink = ignore) -> Path:
    """Write `out_path` (F16 or BF16) from an HF folder; the file appears only once complete."""
    folder = find_converter()
    model_dir = Path(model_dir)
    on_event(Progress("write", 0, 1, "files", f"{Path(out_path).name}: llama.cpp's convert_hf_to_gguf.py"))
    with atomic_file(Path(out_path)) as tmp:
        command = [sys.executable, "-m", "engine.export.convert_child", str(folder), str(model_dir),
                   "--outtype", dtype.lower(), "--outfile", str(tmp)]
        if name:
            command += ["--model-name", loadable_name(name, model_dir)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        env.pop("NO_LOCAL_GGUF", None)  # it would make the converter take the pip gguf package
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0 or not Path(tmp).is_file():
            raise ConversionFailed(
                f"llama.cpp's converter could not convert {model_dir} (exit code {done.returncode}): "
                f"{done.stderr[-LOG_TAIL:].strip()}",
                "check the folder's config.json and tokenizer files (the converter's own words are above)")
    on_event(Progress("write", 1, 1, "files", Path(out_path).name))
    return Path(out_path)


def loadable_name(name: str, model_dir: Path) -> str:
    """`general.name` for the file. llama.cpp gives a model whose name contains "phi3" or "phi-3"
    Phi-3's SentencePiece token attributes and fails to load it when the vocabulary has no "</s>",
    as Phi-4-mini's has not: such a name is written with a space ("phi 3") instead."""
    import re

    if architecture_of(model_dir) != "Phi3ForCausalLM" or (Path(model_dir) / "tokenizer.model").is_file():
        return name
    return re.sub(r"(?i)(phi)-?(3)", r"\1 \2", name)


def architecture_of(model_dir: Path) -> str | None:
    try:
        cfg = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    archs = cfg.get("architectures") or []
    return str(archs[0]) if archs else None
