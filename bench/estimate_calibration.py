"""The memory estimator against torchtune's published peaks, and what planning costs.

Run: .venv/bin/python bench/estimate_calibration.py
Prints each calibration point (published GiB, estimated GiB, ratio) and the time one
estimate() and one recommend() take, which the TUI calls on every keystroke in the form.
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.hardware.catalog import get  # noqa: E402
from engine.hardware.estimate import TORCHTUNE, TORCHTUNE_OFFLOAD, estimate  # noqa: E402
from engine.hardware.probe import GpuInfo  # noqa: E402
from engine.hardware.recommend import recommend  # noqa: E402

ATTN_MLP = ("q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
POINTS = [
    ("Llama 3.1 8B LoRA, RTX 4090, b2 x 2048", "llama-3.1-8b", "lora", 2, 2048, 8, ATTN_MLP, TORCHTUNE, 16.2),
    ("Llama 3.1 8B QLoRA, RTX 4090, b2 x 2048", "llama-3.1-8b", "qlora", 2, 2048, 8, ("k_proj", *ATTN_MLP),
     TORCHTUNE, 7.4),
    ("Llama 3.2 3B LoRA, A100, b2 x 4096", "llama-3.2-3b", "lora", 2, 4096, 64, ATTN_MLP, TORCHTUNE_OFFLOAD, 8.5),
    ("Llama 3.2 3B QLoRA, A100, b2 x 4096", "llama-3.2-3b", "qlora", 2, 4096, 64, ATTN_MLP, TORCHTUNE_OFFLOAD, 4.6),
]


def main() -> None:
    print(f"{'setup (torchtune README)':<42} {'published':>9} {'estimate':>9} {'ratio':>6}")
    for label, model, method, batch, seq, rank, targets, runtime, published in POINTS:
        est = estimate(get(model), method, batch, seq, grad_checkpointing=True, lora_r=rank,
                       target_modules=targets, runtime=runtime)
        print(f"{label:<42} {published:>8.1f}G {est.tensors_gib:>8.2f}G {est.tensors_gib / published:>6.2f}")
    spec = get("llama-3.1-8b")
    n = 2000
    t_est = timeit.timeit(lambda: estimate(spec, "lora", 4, 2048, grad_checkpointing=True), number=n) / n
    card = [GpuInfo(0, "RTX 4090", 24.0, 23.6, 0.4, (8, 9), True)]
    t_rec = timeit.timeit(lambda: recommend(card), number=50) / 50
    print(f"estimate(): {t_est * 1e6:.0f} us per call; recommend() on a 24 GiB card: {t_rec * 1e6:.0f} us per call")


if __name__ == "__main__":
    main()
