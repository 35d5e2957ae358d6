"""Which converter writes a model's F16/BF16 GGUF, decided from config.json before any work.

Llama models (SmolLM2, Llama 3.x) go through ftui's own writer (gguf_writer.py); Qwen3, Gemma 3,
Mistral and Phi-3 (Phi-4-mini) through llama.cpp's convert_hf_to_gguf.py pinned to the installed
llama-cpp-python (hf_converter.py). Both give the same tensors for a Llama model; the measurement
and the reasons are in docs/export-chat-eval.md.
"""

from __future__ import annotations

from pathlib import Path

from engine.events import EventSink, ignore
from engine.export.gguf_writer import SUPPORTED_ARCHITECTURES, UnsupportedModel, read_params, write_gguf
from engine.export.hf_converter import CONVERTED_ARCHITECTURES, architecture_of, convert, find_converter

OWN_WRITER = "ftui"
LLAMA_CPP_CONVERTER = "llama.cpp"


def supported_architectures() -> tuple[str, ...]:
    return (*SUPPORTED_ARCHITECTURES, *CONVERTED_ARCHITECTURES)


def exportable_model_types() -> tuple[str, ...]:
    """config.json model_types that export, for refusing a model before training rather than after."""
    return tuple(dict.fromkeys(("llama", *CONVERTED_ARCHITECTURES.values())))


def check_convertible(model_dir: Path) -> str:
    """The converter for this folder (OWN_WRITER or LLAMA_CPP_CONVERTER); raises UnsupportedModel
    naming what is supported, or ConverterMissing when llama.cpp's converter is needed and absent."""
    arch = architecture_of(Path(model_dir))
    if arch in CONVERTED_ARCHITECTURES:
        find_converter()
        return LLAMA_CPP_CONVERTER
    if arch is None or arch in SUPPORTED_ARCHITECTURES:
        read_params(Path(model_dir))  # the Llama checks (rope scaling), or "not a model folder"
        return OWN_WRITER
    raise UnsupportedModel(f"{model_dir}: architecture {arch} is not supported for GGUF export; supported: "
                           f"{', '.join(supported_architectures())}")


def write_f16(model_dir: Path, out_path: Path, *, dtype: str = "F16", name: str | None = None,
              on_event: EventSink = ignore) -> Path:
    """The lossless GGUF of a merged folder, by the converter check_convertible names."""
    if check_convertible(model_dir) == OWN_WRITER:
        return write_gguf(model_dir, out_path, dtype=dtype, name=name, on_event=on_event)
    return convert(model_dir, out_path, dtype=dtype, name=name, on_event=on_event)
