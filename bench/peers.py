"""ftui against the trainers experts use: throughput, memory and what the same steps learn.

Every variant trains the embedded SmolLM2-135M with LoRA r16 (alpha 32, dropout 0.05) on all
seven projections, the loss on replies only, at the precision ftui picks on this machine (bf16
autocast where the CPU computes bf16 natively, else fp32), each in its own process so its peak
RSS is its own, the variants alternated round by round so machine load falls on all alike:

- `ftui`: ftui's engine as shipped.
- `trl`: TRL's SFTTrainer on prompt/completion conversations (completion-only loss), padded batches.
- `trl-padfree`: the same with `padding_free=True` (each batch one row, position ids per example).
- `trl-bf16`: `trl-padfree` with the model loaded in bf16 (what an expert does on a bf16 CPU or any
  GPU), the peer at its best: the reference of the ratios, listed first by default.
- `llamafactory`: LLaMA-Factory 0.9.5's own SFT entry point (`llamafactory.train.tuner.run_exp`) on
  the same jsonl registered through a `dataset_info.json` (sharegpt formatting, OpenAI-style
  `messages` tags), template `smollm2` with its default system prompt set to the one SmolLM2's own
  chat template inserts, so the rendering is the tokenizer's token for token (LLaMA-Factory's
  `smollm2` default ends in a period the tokenizer's does not; `chatml` adds no system turn).
  Replies only (`train_on_prompt` false; LLaMA-Factory also trains the newline after `<|im_end|>`,
  ftui does not: one token per example), padded batches (`packing` false), gradient checkpointing
  off (LLaMA-Factory turns it on by default; the others do not checkpoint), bf16 autocast via
  `bf16` + `use_cpu` (frozen weights stay fp32, as in the TRL variants; LoRA weights fp32).
  No CPU speed option of LLaMA-Factory's is used: `neat_packing` keeps examples apart only by
  padding every packed row to `cutoff_len` + 1 tokens with a 4D block-diagonal mask (without
  flash-attention), and it changes the batches and so the step count; Liger kernels and Unsloth
  need a GPU.

TRL and LLaMA-Factory are bench-only installs, never part of the test command; the variants they
need are skipped with a note when they are missing. TRL goes into .bench-peers; LLaMA-Factory pins
older transformers/peft/datasets/trl than ftui's venv, so it gets a venv of its own, and its child
process runs under that venv's python:

    .venv/bin/pip install --no-deps --target .bench-peers trl==1.16.0
    python3 -m venv .bench-llamafactory
    .bench-llamafactory/bin/pip install torch==2.13.0
    .bench-llamafactory/bin/pip install --no-deps llamafactory==0.9.5
    .bench-llamafactory/bin/pip install torch==2.13.0 "transformers>=4.55.0,<=5.6.0,!=4.57.0" \
        "datasets>=2.16.0,<=4.0.0" "accelerate>=1.3.0,<=1.11.0" "peft>=0.18.0,<=0.18.1" \
        "trl>=0.18.0,<=0.24.0" "tyro<0.9.0" einops fire matplotlib numpy omegaconf packaging pandas \
        protobuf pydantic pyyaml safetensors scipy sentencepiece tiktoken platformdirs
    .venv/bin/python bench/peers.py --data varied [--rounds 2]   # throughput and peak RSS
    .venv/bin/python bench/peers.py --data demo [--rounds 3]     # held-out loss after 10 steps

LLaMA-Factory's training path needs none of its other requirements (gradio, fastapi, uvicorn,
sse-starlette, modelscope, hf-transfer, av, torchdata, torchvision, torchaudio); platformdirs is for
ftui's own model lookup and held-out loss, which its child runs too. It does import torchaudio
unconditionally, for audio inputs only, and PyPI's torchaudio is a CUDA build that does not load
beside CPU torch, so its child puts an empty stand-in module in torchaudio's place.

`varied`: 96 conversations of ~20-500 tokens, batch 4, lr 2e-4, one epoch; non-pad tokens/s over
the training loop. Every side is timed over the same span, from the end of its first optimizer step
to the end of its last (TRL's and LLaMA-Factory's `train_runtime` includes their setup; ftui's first
step pays for its first allocations as theirs does), and tokens/s counts the tokens of the steps in
that span: the set's tokens x (steps - 1) / steps (the batches are shuffled per variant and seed, so
the first batch's share of the tokens varies by a few percent from run to run; rounds even it out). `demo`: presets/data/docker_train.jsonl, batch 8, lr 1e-3, 10 steps (seed =
round), then the loss of `Run: `<expected>`` on the 43 prompts of docker_eval.jsonl, which no
variant trains on. Prints each run, the medians and each variant's ratios to the first.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PEERS = ROOT / ".bench-peers"
LLAMAFACTORY_PYTHON = ROOT / ".bench-llamafactory" / "bin" / "python"
SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
"""The system turn SmolLM2's chat template inserts when a conversation has none (as here)."""

from bench.train_throughput import LORA, TARGETS, dataset_tokens, write_dataset  # noqa: E402

VARIANTS = ("trl-bf16", "ftui", "trl", "trl-padfree", "llamafactory")
SETTINGS = {
    "varied": {"batch_size": 4, "learning_rate": 2e-4, "max_steps": 0},
    "demo": {"batch_size": 8, "learning_rate": 1e-3, "max_steps": 10},
}


def run_ftui(data: Path, workdir: Path, settings: dict, seed: int, evals) -> dict:
    import threading

    from engine.config.schema import RunConfig
    from engine.events import StepLogged
    from engine.models import load_causal_lm, load_tokenizer, resolve_model
    from engine.train import Loaded, run_loaded
    from engine.train.devices import training_environment
    from engine.train.methods import choose_precision
    from engine.train.step import evaluate_loss

    training_environment()  # as every ftui training process starts (engine/train/load.py)

    config = RunConfig.from_dict({
        "name": "bench", "model": "smollm2-135m", "dataset": str(data), "method": "lora", **LORA,
        "target_modules": TARGETS, "learning_rate": settings["learning_rate"], "epochs": 1.0,
        "max_steps": settings["max_steps"], "batch_size": settings["batch_size"], "grad_accum": 1,
        "max_seq_len": 1024, "val_split": 0.0, "save_interval": 10_000, "eval_interval": 10_000,
        "output_dir": str(workdir / "runs"), "warmup_steps": 0, "scheduler": "linear", "retention_mix": 0.0,
        "seed": seed,
    })
    resolved = resolve_model("smollm2-135m")
    tokenizer = load_tokenizer(resolved)
    from engine.data import prepare

    prepared = prepare(config, tokenizer)
    model: list = []

    def build(cfg, precision):
        # peft adds the adapters to this object, so evaluating it afterwards evaluates the tuned model.
        model.append(load_causal_lm(resolved, dtype=precision.load_dtype, device=precision.device))
        return model[0]

    steps: list = []
    ends: list[float] = []

    def on_event(event) -> None:
        if isinstance(event, StepLogged):
            steps.append(event)
            ends.append(time.monotonic())

    result = run_loaded(config, Loaded(build, tokenizer, prepared, resolved.ref), on_event, threading.Event())
    assert result.ok, result.reason
    out = {"ends": ends, "final_loss": steps[-1].loss, "steps": len(steps)}
    if evals is not None:
        out["heldout"] = evaluate_loss(model[0], evals(tokenizer), 8, tokenizer.pad_token_id,
                                       choose_precision("lora"), True)
    return out


class StepClock:
    """A TrainerCallback's hook that records when each optimizer step ends."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.monotonic())


def run_trl(data: Path, workdir: Path, settings: dict, seed: int, evals, padding_free: bool, dtype: str) -> dict:
    sys.path.insert(0, str(PEERS))
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from engine.models import load_tokenizer, resolve_model
    from engine.train.methods import choose_precision
    from engine.train.step import evaluate_loss

    resolved = resolve_model("smollm2-135m")
    tokenizer = load_tokenizer(resolved)
    rows = [json.loads(line)["messages"] for line in data.read_text(encoding="utf-8").splitlines() if line.strip()]
    dataset = Dataset.from_list([{"prompt": m[:-1], "completion": m[-1:]} for m in rows])
    precision = choose_precision("lora")
    model = AutoModelForCausalLM.from_pretrained(resolved.ref, dtype=getattr(torch, dtype))
    clock = type("Clock", (StepClock, TrainerCallback), {})()
    args = SFTConfig(
        output_dir=str(workdir / "trl"), per_device_train_batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"], num_train_epochs=1, max_steps=settings["max_steps"] or -1,
        lr_scheduler_type="linear", warmup_steps=0, logging_steps=1, save_strategy="no", report_to=[],
        use_cpu=True, bf16=precision.autocast_dtype is not None, seed=seed,
        max_length=None if padding_free else 1024,  # every example is under 1024 tokens; TRL wants None here
        completion_only_loss=True, padding_free=padding_free, gradient_checkpointing=False,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=LoraConfig(r=LORA["lora_r"], lora_alpha=LORA["lora_alpha"],
                                                lora_dropout=LORA["lora_dropout"], target_modules=TARGETS,
                                                task_type="CAUSAL_LM"), callbacks=[clock])
    metrics = trainer.train()
    out = {"ends": clock.ends, "final_loss": trainer.state.log_history[-2].get("loss", 0.0),
           "steps": metrics.global_step}
    if evals is not None:
        out["heldout"] = evaluate_loss(trainer.model, evals(tokenizer), 8, tokenizer.pad_token_id, precision, True)
    return out


def run_llamafactory(data: Path, workdir: Path, settings: dict, seed: int, evals) -> dict:
    """LLaMA-Factory's SFT entry point; runs under .bench-llamafactory/bin/python (see the module docstring)."""
    import os
    import types

    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_CACHE"] = str(workdir / "hf-datasets")  # its tokenized copy stays in the workdir
    import transformers  # it checks for torchaudio once (cached): this must run before the stand-in is in place

    transformers.utils.import_utils.is_torchaudio_available()
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))  # see the module docstring
    from llamafactory.train.tuner import run_exp

    from engine.models import load_tokenizer, resolve_model
    from engine.train.methods import choose_precision
    from engine.train.step import evaluate_loss

    logs: list[dict] = []
    end: dict = {}

    class Collect(StepClock, transformers.TrainerCallback):
        def on_train_end(self, args, state, control, model=None, **kwargs):
            logs.extend(state.log_history)
            end.update(steps=state.global_step, model=model)

    (workdir / "dataset_info.json").write_text(json.dumps({"bench": {
        "file_name": data.name, "formatting": "sharegpt", "columns": {"messages": "messages"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                 "system_tag": "system"},
    }}), encoding="utf-8")
    resolved = resolve_model("smollm2-135m")
    precision = choose_precision("lora")
    run_exp(args={
        "model_name_or_path": resolved.ref, "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "lora_rank": LORA["lora_r"], "lora_alpha": LORA["lora_alpha"], "lora_dropout": LORA["lora_dropout"],
        "lora_target": ",".join(TARGETS), "dataset": "bench", "dataset_dir": str(data.parent),
        "template": "smollm2", "default_system": SMOLLM2_SYSTEM, "cutoff_len": 1024, "train_on_prompt": False,
        "packing": False, "neat_packing": False, "disable_gradient_checkpointing": True,
        "per_device_train_batch_size": settings["batch_size"], "gradient_accumulation_steps": 1,
        "learning_rate": settings["learning_rate"], "lr_scheduler_type": "linear", "warmup_steps": 0,
        "num_train_epochs": 1.0, "max_steps": settings["max_steps"] or -1,
        "bf16": precision.autocast_dtype is not None, "use_cpu": True, "seed": seed,
        "output_dir": tempfile.mkdtemp(prefix="llamafactory-", dir=workdir), "save_strategy": "no",
        "report_to": "none", "logging_steps": 1, "plot_loss": False,
    }, callbacks=[collect := Collect()])
    out = {"ends": collect.ends,
           "final_loss": next(x["loss"] for x in reversed(logs) if "loss" in x), "steps": end["steps"]}
    if evals is not None:
        tokenizer = load_tokenizer(resolved)
        out["heldout"] = evaluate_loss(end["model"], evals(tokenizer), 8, tokenizer.pad_token_id, precision, True)
    return out


def docker_evals(workdir: Path):
    def tokenized(tokenizer):
        from bench.batch_order import eval_examples
        from engine.config.build import build_config

        return eval_examples(tokenizer, build_config("demo", sets=["retention_mix=0"]), workdir)

    return tokenized


def child(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    data = workdir / "data.jsonl"
    settings = SETTINGS[args.data] | ({"max_steps": args.steps} if args.steps else {})
    evals = docker_evals(workdir) if args.data == "demo" else None
    began = time.monotonic()
    if args.variant == "ftui":
        stats = run_ftui(data, workdir, settings, args.seed, evals)
    elif args.variant == "llamafactory":
        stats = run_llamafactory(data, workdir, settings, args.seed, evals)
    else:
        stats = run_trl(data, workdir, settings, args.seed, evals, padding_free=args.variant != "trl",
                        dtype="bfloat16" if args.variant == "trl-bf16" else "float32")
    stats["wall_s"] = time.monotonic() - began
    stats["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print("RESULT " + json.dumps(stats), flush=True)


def without_missing_trl(variants: list[str], peers: Path) -> list[str]:
    """The variants that can run here: TRL's are left out, with a note, when it is not installed in `peers`."""
    if (peers / "trl").is_dir():
        return variants
    missing = [v for v in variants if v.startswith("trl")]
    if missing:
        print(f"skipping {', '.join(missing)}: TRL is not installed in {peers} (see this script's docstring)")
    return [v for v in variants if v not in missing]


def variant_result(cmd: list[str], variant: str) -> dict:
    """What a variant's own process printed on its RESULT line; the script ends with its stderr if none."""
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"{variant} failed:\n{out.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(SETTINGS), default="varied")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="the first is the baseline of the ratios")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=0, help="stop every variant after this many steps (a quick check)")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        child(args)
        return
    variants = without_missing_trl(args.variants.split(","), PEERS)
    if "llamafactory" in variants and not LLAMAFACTORY_PYTHON.exists():
        print(f"skipping llamafactory: its venv is missing ({LLAMAFACTORY_PYTHON}; see this script's docstring)")
        variants.remove("llamafactory")
    if not variants:
        sys.exit("nothing to run: every variant asked for is skipped above")
    results: dict[str, list[dict]] = {v: [] for v in variants}
    header = f"{'variant':12}{'seed':>5}{'tokens/s':>10}{'span s':>9}{'peak RSS GiB':>14}{'steps':>6}{'held-out':>10}"
    with tempfile.TemporaryDirectory(prefix="ftui-peers-") as workdir:
        data = Path(workdir) / "data.jsonl"
        if args.data == "demo":
            data.write_bytes((ROOT / "presets" / "data" / "docker_train.jsonl").read_bytes())
        else:
            write_dataset(data, 96)
        tokens = dataset_tokens(data)
        print(header)
        for round_ in range(1, args.rounds + 1):
            for variant in variants:
                python = str(LLAMAFACTORY_PYTHON) if variant == "llamafactory" else sys.executable
                cmd = [python, __file__, "--variant", variant, "--workdir", workdir, "--data", args.data,
                       "--seed", str(round_), "--steps", str(args.steps)]
                r = variant_result(cmd, variant)
                ends = r.pop("ends")
                r["train_s"] = ends[-1] - ends[0]
                r["tokens_per_s"] = (tokens * (len(ends) - 1) / len(ends) / r["train_s"] if args.data == "varied"
                                     and not args.steps else float("nan"))  # --steps stops mid-epoch
                results[variant].append(r)
                print(_row(variant, str(round_), r), flush=True)
    what = ("96 conversations of ~20-500 tokens, batch 4, 1 epoch" if args.data == "varied"
            else f"the Docker demo data, batch 8, {args.steps or SETTINGS['demo']['max_steps']} steps")
    print(f"\nSmolLM2-135M LoRA r16, {what}; medians of {args.rounds} round(s)")
    print(header)
    med = {v: {k: statistics.median(r[k] for r in rs) for k in ("tokens_per_s", "train_s", "peak_rss_gib", "steps")}
           | {"heldout": statistics.mean(r.get("heldout", float("nan")) for r in rs)} for v, rs in results.items()}
    for name, r in med.items():
        print(_row(name, "", r))
    base = variants[0]
    for name in variants[1:]:
        f, h = med[base], med[name]
        print(f"{name} against {base}: {f['train_s'] / h['train_s']:.2f}x the speed, "
              f"{h['peak_rss_gib'] / f['peak_rss_gib']:.2f}x the peak RSS")
    if args.data == "demo":
        print("held-out: mean loss of the eval answers over rounds (lower learned more)")


def _row(name: str, seed: str, r: dict) -> str:
    held = r.get("heldout")
    return (f"{name:12}{seed:>5}{r['tokens_per_s']:>10.1f}{r['train_s']:>9.1f}{r['peak_rss_gib']:>14.2f}"
            f"{r['steps']:>6.0f}{held if held is not None else float('nan'):>10.3f}")


if __name__ == "__main__":
    main()
