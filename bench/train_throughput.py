"""Training throughput: ftui's engine, with each of its levers undone in turn, against the common Hugging Face recipe.

All train the embedded SmolLM2-135M with the same LoRA settings, batch size, learning rate
and examples: a length-varied set (lengths spread from ~20 to ~500 tokens) or the Docker demo
data (`--data demo`, 20-80 tokens). `ftui` runs each batch as one packed row (the default),
`padded` pads it (`packing = false`), `unfused` runs peft's own LoRA forward (one A matmul and dropout mask per
adapter instead of one per shared input, engine/train/shared_input_lora.py), `torch-dropout`
draws the dropout masks with torch's own dropout instead of packed bits (engine/train/dropout.py),
`fp32-frozen` keeps the frozen weights in fp32 under CPU autocast
(`engine.train.methods.store_frozen_weights_for_autocast`). The recipe is the one people write: `Trainer` +
`DataCollatorForLanguageModeling(mlm=False)` on chat-template text, random batches. Each variant
runs in its own subprocess so its peak RSS (ru_maxrss) is its own; with `--rounds N` the variants
take turns N times, so machine load falls on all alike.

    .venv/bin/python bench/train_throughput.py [--examples 96] [--batch-size 4] [--data varied|demo]
        [--variants ftui,padded,unfused,torch-dropout,fp32-frozen,recipe] [--rounds 1]

Prints non-pad tokens/s (training loop only), wall time, peak RSS, and the ratios of each variant
to the first (medians over rounds).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = ("container image volume network port build run exec logs compose service restart detach "
         "registry push pull tag layer cache mount bind env variable health check prune stop kill").split()
LORA = {"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def write_dataset(path: Path, n: int, seed: int = 0) -> None:
    """Conversations whose rendered lengths spread evenly from ~20 to ~500 tokens."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            words = int(6 + (i / max(n - 1, 1)) * 330)
            prompt = max(3, words // 4)
            q = " ".join(rng.choice(WORDS) for _ in range(prompt))
            a = " ".join(rng.choice(WORDS) for _ in range(words - prompt))
            fh.write(json.dumps({"messages": [{"role": "user", "content": f"How do I {q}?"},
                                              {"role": "assistant", "content": f"Run: `docker {a}`"}]}) + "\n")


def run_ftui(data: Path, args: argparse.Namespace, packing: bool, fused: bool = True, packed_bits: bool = True,
             bf16_frozen: bool = True) -> dict:
    from engine.config.schema import RunConfig
    from engine.events import StepLogged
    from engine.train import setup, train

    if not fused:
        setup.fuse_shared_input_adapters = lambda model: 0
    if not packed_bits:
        setup.use_packed_bits_dropout = lambda model, device: 0
    if not bf16_frozen:
        setup.store_frozen_weights_for_autocast = lambda model, precision: 0

    config = RunConfig.from_dict({
        "name": "bench", "model": "smollm2-135m", "dataset": str(data), "method": "lora", **LORA,
        "target_modules": TARGETS, "learning_rate": 2e-4, "epochs": 1.0, "batch_size": args.batch_size,
        "grad_accum": 1, "max_seq_len": 1024, "val_split": 0.0, "save_interval": 10_000,
        "output_dir": str(Path(args.workdir) / "runs"), "warmup_steps": 0, "scheduler": "linear",
        "retention_mix": 0.0, "packing": packing,
    })
    steps: list = []
    result = train(config, lambda e: steps.append(e) if isinstance(e, StepLogged) else None, threading.Event())
    assert result.ok, result.reason
    # tokens_per_s x step time summed = non-pad tokens; elapsed of the last step = loop time.
    loop_s = steps[-1].elapsed_s
    tokens = dataset_tokens(data)
    return {"tokens": tokens, "train_s": loop_s, "final_loss": steps[-1].loss, "steps": len(steps)}


def run_recipe(data: Path, args: argparse.Namespace) -> dict:
    import torch
    from datasets import load_dataset
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    from engine.models import load_tokenizer, resolve_model

    resolved = resolve_model("smollm2-135m")
    tokenizer = load_tokenizer(resolved)
    model = AutoModelForCausalLM.from_pretrained(resolved.ref, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=LORA["lora_r"], lora_alpha=LORA["lora_alpha"],
                                             lora_dropout=LORA["lora_dropout"], target_modules=TARGETS,
                                             task_type="CAUSAL_LM"))
    ds = load_dataset("json", data_files=str(data), split="train")
    ds = ds.map(lambda row: tokenizer(tokenizer.apply_chat_template(row["messages"], tokenize=False),
                                      truncation=True, max_length=1024), remove_columns=ds.column_names)
    trainer = Trainer(
        model=model,
        args=TrainingArguments(output_dir=str(Path(args.workdir) / "recipe"), per_device_train_batch_size=args.batch_size,
                               learning_rate=2e-4, num_train_epochs=1, lr_scheduler_type="linear", logging_steps=1,
                               save_strategy="no", report_to=[], use_cpu=True, seed=42),
        train_dataset=ds,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )
    out = trainer.train()
    tokens = sum(len(x) for x in ds["input_ids"])
    return {"tokens": tokens, "train_s": out.metrics["train_runtime"], "final_loss": out.training_loss,
            "steps": out.global_step}


def dataset_tokens(data: Path) -> int:
    from engine.config.schema import RunConfig
    from engine.data import prepare
    from engine.models import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model("smollm2-135m"))
    prepared = prepare(RunConfig(dataset=str(data), max_seq_len=1024, val_split=0.0), tokenizer)
    return sum(len(e.input_ids) for e in prepared.train)


def child(args: argparse.Namespace) -> None:
    data = Path(args.workdir) / "data.jsonl"
    began = time.monotonic()
    if args.variant == "recipe":
        stats = run_recipe(data, args)
    else:
        stats = run_ftui(data, args, packing=args.variant != "padded", fused=args.variant != "unfused",
                         packed_bits=args.variant != "torch-dropout", bf16_frozen=args.variant != "fp32-frozen")
    stats["wall_s"] = time.monotonic() - began
    stats["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    stats["tokens_per_s"] = stats["tokens"] / stats["train_s"]
    print("RESULT " + json.dumps(stats), flush=True)


VARIANTS = ("ftui", "padded", "unfused", "torch-dropout", "fp32-frozen", "recipe")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=96, help="24 steps at batch 4; at 12 steps the ratio is noisy")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--data", choices=["varied", "demo"], default="varied")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="the first is the baseline of the ratios")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        child(args)
        return
    variants = args.variants.split(",")
    results: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="ftui-bench-") as workdir:
        data = Path(workdir) / "data.jsonl"
        if args.data == "demo":
            shutil.copy(ROOT / "presets" / "data" / "docker_train.jsonl", data)
        else:
            write_dataset(data, args.examples)
        for _ in range(args.rounds):
            for variant in variants:
                cmd = [sys.executable, __file__, "--variant", variant, "--workdir", workdir,
                       "--examples", str(args.examples), "--batch-size", str(args.batch_size)]
                out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
                if line is None:
                    sys.exit(f"{variant} failed:\n{out.stderr[-3000:]}")
                results[variant].append(json.loads(line[len("RESULT "):]))
                r = results[variant][-1]
                print(f"{variant:8}{r['tokens_per_s']:>10.1f}{r['train_s']:>10.1f}{r['wall_s']:>10.1f}"
                      f"{r['peak_rss_gib']:>14.2f}{r['steps']:>7}{r['final_loss']:>12.4f}", flush=True)
    what = "the Docker demo data (20-80 tokens)" if args.data == "demo" else f"{args.examples} examples of ~20-500 tokens"
    print(f"SmolLM2-135M LoRA r16, {what}, batch {args.batch_size}, 1 epoch, CPU; medians of {args.rounds} round(s)")
    print(f"{'':8}{'tokens/s':>10}{'train s':>10}{'wall s':>10}{'peak RSS GiB':>14}{'steps':>7}{'final loss':>12}")
    med = {v: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for v, rs in results.items()}
    for name, r in med.items():
        print(f"{name:8}{r['tokens_per_s']:>10.1f}{r['train_s']:>10.1f}{r['wall_s']:>10.1f}"
              f"{r['peak_rss_gib']:>14.2f}{r['steps']:>7.0f}{r['final_loss']:>12.4f}")
    base = variants[0]
    for name in variants[1:]:
        f, h = med[name], med[base]
        print(f"ratio {name}/{base}: tokens/s {f['tokens_per_s'] / h['tokens_per_s']:.2f}x, "
              f"peak RSS {f['peak_rss_gib'] / h['peak_rss_gib']:.2f}x, train time {f['train_s'] / h['train_s']:.2f}x")
    if "recipe" in variants:
        print("(ftui's loss is on responses only, the recipe's on every token, so final losses differ.)")


if __name__ == "__main__":
    main()
