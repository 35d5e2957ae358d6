"""GGUF quantisation through llama-cpp-python's bundled library: no binaries, no build step."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from engine.files.atomic import atomic_file

QUANTIZED_TYPES = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M")


class QuantizeError(RuntimeError):
    pass


def quantize(src: Path, dst: Path, quant: str, threads: int | None = None) -> Path:
    """Write `dst` as `quant` from an F16/BF16 GGUF; nothing appears under `dst` on failure."""
    import llama_cpp

    if quant not in QUANTIZED_TYPES:
        raise ValueError(f"quantisation {quant!r} is not one of {', '.join(QUANTIZED_TYPES)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant}")
    params.nthread = threads or os.cpu_count() or 1
    # llama.cpp logs every tensor it converts; keep its errors only, through its Python logger.
    log = logging.getLogger("llama-cpp-python")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with atomic_file(Path(dst)) as tmp:
            code = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), params)
            if code != 0:
                raise QuantizeError(f"llama.cpp could not quantize {Path(src).name} to {quant} (code {code})")
    finally:
        log.setLevel(level)
    return Path(dst)
