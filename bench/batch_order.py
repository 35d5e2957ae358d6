"""Batch order against learning: held-out loss on the Docker eval prompts after equal tokens.

The demo preset (SmolLM2-135M, LoRA r16, batch 8, lr 1e-3, cosine over 2 epochs) trains on
presets/data/docker_train.jsonl with ftui's order (a seeded shuffle) and with the length-grouped
order it replaced (shuffled windows of 64 batches sorted by length, the longest batch first),
same seeds, same examples. After step 10 and after the first epoch (every example seen once, so
both orders have trained the same tokens) the loss of the answer `Run: `<expected>`` is measured
on the 43 prompts of presets/data/docker_eval.jsonl, and the base model's loss beside them.

    .venv/bin/python bench/batch_order.py [--seeds 1,2,3] [--set lora_dropout=0.05,0]

With `--set KEY=A,B,...` the variants are instead ftui's order at each value of one setting, to
check that a faster setting learns as much from the same tokens. Prints, per seed and variant,
the two losses, the trained tokens behind them, the padding share and non-pad tokens/s; then the
means and the ratio of each variant to the first.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GROUPED_WINDOW = 64
"""Batches per sorted window in the order before the fix."""


def length_grouped(lengths, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The order before the fix, kept here as the baseline."""
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * GROUPED_WINDOW
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i], reverse=True)
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    longest = max(range(len(batches)), key=lambda b: max(lengths[i] for i in batches[b]))
    batches.insert(0, batches.pop(longest))
    return batches


def eval_examples(tokenizer, config, workdir: Path):
    """The eval prompts with the answer in the training data's form, as tokenized examples."""
    from engine.data import prepare

    path = workdir / "eval.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for line in open(ROOT / "presets" / "data" / "docker_eval.jsonl", encoding="utf-8"):
            row = json.loads(line)
            reply = {"role": "assistant", "content": f"Run: `{row['expected']}`"}
            fh.write(json.dumps({"messages": [*row["messages"], reply]}) + "\n")
    return prepare(config.replace(dataset=str(path), val_split=0.0), tokenizer).train


def train_once(config, tokenizer, data, resolved, evals, at: tuple[int, ...]) -> dict:
    from engine.events import StepLogged, TrainStarted
    from engine.models import load_causal_lm
    from engine.train import Loaded, run_loaded
    from engine.train.step import evaluate_loss

    model: list = []

    def build(cfg, precision):
        # peft injects the adapters into this object, so evaluating it evaluates the tuned model.
        model.append(load_causal_lm(resolved, dtype=precision.load_dtype, device=precision.device))
        return model[0]

    stop = threading.Event()
    out: dict = {"eval_s": 0.0}

    def on_event(event) -> None:
        if isinstance(event, TrainStarted):
            out["pad_share"] = event.pad_share
        if isinstance(event, StepLogged):
            if event.step == max(at):
                out["loop_s"] = event.elapsed_s - out["eval_s"]
            if event.step in at:
                from engine.train.methods import choose_precision

                began = time.monotonic()
                out[event.step] = evaluate_loss(model[0], evals, 8, tokenizer.pad_token_id,
                                                choose_precision("lora"), True)
                model[0].train()
                out["eval_s"] += time.monotonic() - began
                if event.step == max(at):
                    stop.set()

    result = run_loaded(config, Loaded(build, tokenizer, data, resolved.ref), on_event, stop)
    assert result.ok, result.reason
    return out


def trained_tokens(schedule, data, step: int) -> int:
    return sum(sum(1 for label in data.train[i].labels[1:] if label != -100)
               for s in range(1, step + 1) for batch in schedule.step_batches(s) for i in batch)


def non_pad_tokens(schedule, data, step: int) -> int:
    return sum(len(data.train[i].input_ids) for s in range(1, step + 1) for batch in schedule.step_batches(s)
               for i in batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--set", default="", help="KEY=A,B: compare values of one setting instead of orders")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]

    from engine.config.build import build_config
    from engine.data import prepare
    from engine.models import load_causal_lm, load_tokenizer, resolve_model
    from engine.train import batching
    from engine.train.batching import Schedule
    from engine.train.methods import choose_precision
    from engine.train.step import evaluate_loss

    variants: dict[str, tuple] = {"shuffled": (batching.epoch_batches, []), "grouped": (length_grouped, [])}
    if args.set:
        key, values = args.set.split("=", 1)
        variants = {f"{key}={v}": (batching.epoch_batches, [f"{key}={v}"]) for v in values.split(",")}
    workdir = Path(tempfile.mkdtemp(prefix="ftui-order-"))
    resolved = resolve_model("smollm2-135m")
    tokenizer = load_tokenizer(resolved)
    base_sets = [f"output_dir={workdir / 'runs'}", "retention_mix=0", "eval_interval=1000"]
    base = build_config("demo", sets=base_sets)
    data = prepare(base, tokenizer)
    evals = eval_examples(tokenizer, base, workdir)
    precision = choose_precision("lora")
    base_loss = evaluate_loss(load_causal_lm(resolved, dtype=precision.load_dtype), evals, 8,
                              tokenizer.pad_token_id, precision, True)
    epoch = Schedule(tuple(len(e.input_ids) for e in data.train), base.batch_size, 1, 0, 1.0, 0).batches_per_epoch
    at = (10, epoch)
    print(f"demo preset, {len(data.train)} training examples, {len(evals)} eval prompts; base loss {base_loss:.3f}")
    width = max(9, *(len(v) for v in variants))
    print(f"{'seed':>4} {'variant':>{width}} {f'loss@{at[0]}':>9} {'tokens':>7} {f'loss@{at[1]}':>9} {'tokens':>7}"
          f" {'pad':>6} {'tok/s':>7}")
    rows: dict[str, list[dict]] = {name: [] for name in variants}
    for seed in seeds:
        for name, (order, sets) in variants.items():  # alternated, so machine load falls on all alike
            batching.epoch_batches = order
            config = build_config("demo", sets=[*base_sets, *sets, f"seed={seed}"])
            schedule = Schedule(tuple(len(e.input_ids) for e in data.train), config.batch_size, 1, seed,
                                config.epochs, 0)
            began = time.monotonic()
            r = train_once(config, tokenizer, data, resolved, evals, at)
            r["wall_s"] = time.monotonic() - began
            r["tokens"] = [trained_tokens(schedule, data, s) for s in at]
            r["tok_s"] = non_pad_tokens(schedule, data, at[1]) / r["loop_s"]
            rows[name].append(r)
            print(f"{seed:>4} {name:>{width}} {r[at[0]]:>9.3f} {r['tokens'][0]:>7} {r[at[1]]:>9.3f} {r['tokens'][1]:>7}"
                  f" {r['pad_share']:>6.1%} {r['tok_s']:>7.1f}", flush=True)
    print("means over seeds")
    for name, rs in rows.items():
        print(f"{'':>4} {name:>{width}} {statistics.mean(r[at[0]] for r in rs):>9.3f} {'':>7}"
              f" {statistics.mean(r[at[1]] for r in rs):>9.3f} {'':>7}"
              f" {statistics.mean(r['pad_share'] for r in rs):>6.1%} {statistics.mean(r['tok_s'] for r in rs):>7.1f}")
    first, *others = rows
    for name in others:
        mine, ref = rows[name], rows[first]
        losses = ", ".join(f"loss@{step} {statistics.mean(r[step] for r in mine) / statistics.mean(r[step] for r in ref):.2f}"
                           for step in at)
        speed = statistics.mean(r["tok_s"] for r in mine) / statistics.mean(r["tok_s"] for r in ref)
        print(f"{name}/{first}: {losses}, tokens/s {speed:.2f}")


if __name__ == "__main__":
    main()
