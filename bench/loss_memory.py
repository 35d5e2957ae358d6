"""The chunked loss's memory cut on long sequences, in MiB, against the plain loss over all logits.

One sequence of N tokens, every token trained, through an lm_head of Llama 3's or SmolLM2's
vocabulary under bf16 autocast on the CPU, forward and backward of the loss alone:

- `plain`: what transformers' causal-LM loss does, `cross_entropy(lm_head(hidden).float(), labels)`,
  holding the [tokens x vocab] logits in bf16 and fp32 and their gradient.
- `chunked`: ftui's `engine.train.loss.linear_cross_entropy`, one chunk of 2**25 logits at a time.

Peak bytes are counted tensor by tensor (tests/engine/hardware/allocations.py: every storage an op
creates, until it is freed), beside the estimator's figure for each (`engine.hardware.estimate.loss_bytes`).
A plain case the estimator puts over `--max-gib` is not run and says so.

    .venv/bin/python bench/loss_memory.py [--lengths 2048,8192] [--hidden 576] [--max-gib 16]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VOCABS = {"SmolLM2 49,152": 49152, "Llama 3 128,256": 128256}
MIB = 2**20


def measure(kind: str, tokens: int, vocab: int, hidden: int) -> tuple[int, float, float]:
    """(peak bytes, loss, seconds) of one forward and backward of the loss."""
    import torch
    import torch.nn.functional as F

    from engine.train.loss import linear_cross_entropy
    from tests.engine.hardware.allocations import PeakAllocated

    torch.manual_seed(0)
    weight = (torch.randn(vocab, hidden) * 0.02).to(torch.bfloat16)
    states = torch.randn(tokens, hidden, dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, vocab, (tokens,))
    began = time.monotonic()
    with PeakAllocated() as mem, torch.autocast("cpu", dtype=torch.bfloat16):
        if kind == "plain":
            loss = F.cross_entropy(F.linear(states, weight).float(), labels, reduction="sum")
        else:
            loss = linear_cross_entropy(states, weight, labels)
        loss.backward()
    return mem.peak, loss.item() / tokens, time.monotonic() - began


def predicted(kind: str, tokens: int, vocab: int, hidden: int) -> int:
    from engine.hardware.catalog import ModelSpec
    from engine.hardware.estimate import HF_PEFT, HF_PEFT_FULL_LOGITS, loss_bytes

    spec = ModelSpec("bench", "bench", "bench", "hub", 0, 1, hidden, 1, 1, hidden, vocab, False, tokens, "chatml", 16)
    peak, kept = loss_bytes(spec, tokens, HF_PEFT_FULL_LOGITS if kind == "plain" else HF_PEFT)
    return int(peak + kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="2048,8192")
    parser.add_argument("--hidden", type=int, default=576, help="SmolLM2-135M's; the logits do not depend on it")
    parser.add_argument("--max-gib", type=float, default=16.0, help="plain cases predicted above this are skipped")
    args = parser.parse_args()
    print(f"loss forward + backward, one sequence, every token trained, hidden {args.hidden}, bf16 autocast, CPU")
    print(f"{'vocabulary':16}{'tokens':>8}{'plain MiB':>11}{'(est.)':>9}{'chunked MiB':>13}{'(est.)':>9}"
          f"{'cut':>8}{'plain s':>9}{'chunked s':>11}{'loss diff':>11}")
    for name, vocab in VOCABS.items():
        for tokens in (int(x) for x in args.lengths.split(",")):
            est_plain, est_chunked = (predicted(k, tokens, vocab, args.hidden) for k in ("plain", "chunked"))
            chunked, loss_c, secs_c = measure("chunked", tokens, vocab, args.hidden)
            if est_plain / 2**30 > args.max_gib:
                print(f"{name:16}{tokens:>8}{'skipped':>11}{est_plain / MIB:>9.0f}{chunked / MIB:>13.1f}"
                      f"{est_chunked / MIB:>9.1f}{'':>8}{'':>9}{secs_c:>11.1f}   (plain over --max-gib)")
                continue
            plain, loss_p, secs_p = measure("plain", tokens, vocab, args.hidden)
            print(f"{name:16}{tokens:>8}{plain / MIB:>11.1f}{est_plain / MIB:>9.0f}{chunked / MIB:>13.1f}"
                  f"{est_chunked / MIB:>9.1f}{plain / chunked:>7.1f}x{secs_p:>9.1f}{secs_c:>11.1f}"
                  f"{abs(loss_p - loss_c):>11.1e}", flush=True)


if __name__ == "__main__":
    main()
