"""What goes into each artefact folder besides the weights: configs other tools load, the
tokenizer, and a model card. Called where the folders are written (the trainer's adapter/ or
model/, export's merged/), inside their temporary folder, so a folder is never seen without them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from engine.export.card import Kind, model_card
from engine.export.portable import base_model, copy_tokenizer, make_adapter_portable, make_model_portable
from engine.runs import RunDir, tokenizer_dir


def finish_weights(folder: Path, run: RunDir) -> None:
    """adapter/ (or model/ for full fine-tuning) as other machines and tools load it."""
    base = base_model(run.record.base_model_ref or run.record.model_ref)
    tokenizer = tokenizer_dir(run.path)
    kind: Kind
    if run.config.method == "full":
        if tokenizer.is_dir():
            copy_tokenizer(tokenizer, folder)
        make_model_portable(folder)
        kind = "model"
    else:
        make_adapter_portable(folder, base, tokenizer)
        kind = "adapter"
    _card(folder, model_card(kind, run.config, base, dataclasses.asdict(run.record)))


def finish_merged(folder: Path, source: Any) -> None:
    """merged/: configs both transformers 4.x and 5.x load the same, and a card naming the base,
    which is also where the GGUF writer finds `general.base_model` (as llama.cpp's converter does)."""
    from engine.runs import RunReadError, read_record

    make_model_portable(folder)
    try:
        record = dataclasses.asdict(read_record(source.run_dir))
    except RunReadError:
        record = {}
    base = base_model(source.base_ref or source.origin_ref)
    _card(folder, model_card("merged", source.config, base, record))


def _card(folder: Path, text: str) -> None:
    (folder / "README.md").write_text(text, encoding="utf-8")
