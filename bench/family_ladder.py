"""The memory ladder per model family: each catalog model's predicted peak for LoRA and QLoRA at
batch 1 x 2048 tokens with gradient checkpointing, and what ftui's chunked loss saves against the
loss over all logits at once (`HF_PEFT_FULL_LOGITS`). The saving grows with the vocabulary:
Gemma 3's 262,144 entries make its logits the largest tensor of a small model's step.

Arithmetic only (engine/hardware/estimate.py), no GPU: the same figures `ftui estimate` prints.
The README's table is this script's output, and tests/bench/test_family_ladder.py keeps it so.

    .venv/bin/python bench/family_ladder.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH, SEQ_LEN = 1, 2048


def ladder_table() -> str:
    """The ladder as a markdown table, families in `ftui recommend --family` order, largest first."""
    from engine.hardware.catalog import get
    from engine.hardware.estimate import HF_PEFT_FULL_LOGITS, estimate
    from engine.hardware.recommend import FAMILIES, ladder_of

    rows = ["| family | model | vocabulary | LoRA peak | with the full-logits loss | saved | QLoRA peak |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for family in FAMILIES:
        for model_id in ladder_of(family):
            spec = get(model_id)
            lora = estimate(spec, "lora", BATCH, SEQ_LEN, grad_checkpointing=True).peak_gib
            full = estimate(spec, "lora", BATCH, SEQ_LEN, grad_checkpointing=True,
                            runtime=HF_PEFT_FULL_LOGITS).peak_gib
            qlora = estimate(spec, "qlora", BATCH, SEQ_LEN, grad_checkpointing=True).peak_gib
            rows.append(f"| {family} | {model_id} | {spec.vocab:,} | {lora:.1f} GiB | {full:.1f} GiB | "
                        f"{full - lora:.1f} GiB ({(full - lora) / full:.0%}) | {qlora:.1f} GiB |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(ladder_table())
