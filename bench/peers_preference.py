"""ftui's DPO and GRPO against TRL's DPOTrainer and GRPOTrainer: time per step, memory, what the steps learn.

Every variant trains the embedded SmolLM2-135M with the preset's LoRA (r16, alpha 32, no dropout,
ftui's default target modules), bf16 autocast where the CPU computes bf16 natively (ftui's choice
on this machine), each in its own process so its peak RSS is its own, the variants alternated
round by round so machine load falls on all alike:

- `ftui`: ftui's engine as shipped (`train()` on the dpo/grpo preset with the settings below).
- `trl-bf16`: TRL with the model loaded in bf16 (what an expert does on a bf16 CPU or any GPU); the
  reference of the ratios when it runs.
- `trl`: TRL with the model loaded in fp32 under bf16 autocast, as ftui keeps its frozen weights here.

dpo: presets/dpo.toml (beta 0.1, sigmoid loss, lr 2e-4, cosine with 5% warm-up, batch 8 pairs,
max length 256) for --steps steps on all 58 pairs of presets/data/docker_pref_train.jsonl (no
validation split), TRL's DPOTrainer on the same rows as prompt/chosen/rejected conversations (the
same chat template renders them). Then the parent scores each run's saved adapter on the held-out
pairs of docker_pref_eval.jsonl with bench/dpo_demo.py's `held_out` (one scorer for all): preference
accuracy (chosen reply's mean token log-probability above the rejected one's) and mean DPO margin
against the base.

grpo: presets/grpo.toml (group 8, 24 answer tokens, temperature 1, KL beta 0.04, clip 0.2, one update
per batch, lr 1e-4 constant, 4 prompts a step) on presets/data/docker_prompts.jsonl, from the base
model or, with `--model`, from another one (the SFT demo's merged model, as `ftui demo --rl` does); TRL's GRPOTrainer generates with transformers (`use_vllm` off: vLLM needs a GPU), "dapo" loss
normalisation (ftui's: per answer token of the step), group-scaled advantages, and ftui's own reward
functions (format regex + answer x2, built from the preset) wrapped as TRL reward functions, so the
scores are identical. Figure: the mean weighted reward of the sampled answers over the last
half of the steps.

Time per step is taken over the same span on every side: from the end of the first optimizer step to
the end of the last, divided by the steps between (TRL's train_runtime would include its setup and
the first step's allocations). TRL is a bench-only install (see bench/peers.py):

    .venv/bin/pip install --no-deps --target .bench-peers trl==1.16.0
    .venv/bin/python bench/peers_preference.py --task dpo --steps 10 [--rounds 2]
    .venv/bin/python bench/peers_preference.py --task grpo --steps 6 [--rounds 2]

Without TRL the TRL variants are skipped with a note; `--batch`, `--group`, `--eval-pairs` shrink a
run for a smoke test.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.peers import PEERS, variant_result, without_missing_trl  # noqa: E402

TRAIN_PAIRS = ROOT / "presets" / "data" / "docker_pref_train.jsonl"
EVAL_PAIRS = ROOT / "presets" / "data" / "docker_pref_eval.jsonl"
VARIANTS = ("ftui", "trl-bf16", "trl")
TASKS = {"dpo": "dpo", "grpo": "grpo"}
"""Task -> the ftui preset it runs."""


def preset_config(args: argparse.Namespace, workdir: Path):
    """The preset with this bench's changes: every side reads its settings from this one config."""
    from engine.config.presets import load_preset

    changes: dict = {"max_steps": args.steps, "output_dir": str(workdir / "runs"), "export_gguf": False,
                     "retention_mix": 0.0, "eval_interval": 10_000, "save_interval": 10_000, "val_split": 0.0,
                     "seed": args.seed, "name": f"bench-{args.task}"}
    if args.batch:
        changes["batch_size"] = args.batch
    if args.model:
        changes["model"] = args.model
    if args.task == "dpo":
        changes["dataset"] = str(TRAIN_PAIRS)
    elif args.group:
        changes["grpo_group_size"] = args.group
    return load_preset(TASKS[args.task]).apply().replace(**changes)


def run_ftui(config) -> dict:
    from engine.events import RewardLogged, StepLogged
    from engine.train import train

    ends: list[float] = []
    rewards: list[float] = []

    def on_event(event) -> None:
        if isinstance(event, StepLogged):
            ends.append(time.monotonic())
        elif isinstance(event, RewardLogged):
            rewards.append(event.reward)

    result = train(config, on_event, threading.Event())
    if not result.ok:
        raise SystemExit(f"ftui: {result.reason} {result.advice}")
    return {"ends": ends, "rewards": rewards, "adapter": str(Path(result.run_dir) / "adapter")}


def trl_common(config, variant: str, workdir: Path):
    """(model, peft config, TrainingArguments keywords, clock callback, step end times) shared by both trainers."""
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, TrainerCallback

    from engine.models import resolve_model
    from engine.train.methods import choose_precision, warmup_steps

    ends: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            ends.append(time.monotonic())

    precision = choose_precision("lora")
    dtype = torch.bfloat16 if variant == "trl-bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(resolve_model(config.model).ref, dtype=dtype)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.target_modules), task_type="CAUSAL_LM")
    common = {
        "output_dir": str(workdir / variant), "learning_rate": config.learning_rate, "max_steps": config.max_steps,
        "lr_scheduler_type": config.scheduler, "warmup_steps": warmup_steps(config, config.max_steps),
        "weight_decay": config.weight_decay, "max_grad_norm": config.max_grad_norm,
        "gradient_accumulation_steps": config.grad_accum, "logging_steps": 1, "save_strategy": "no",
        "report_to": [], "use_cpu": True, "bf16": precision.autocast_dtype is not None, "seed": config.seed,
        "gradient_checkpointing": False, "dataloader_num_workers": 0,
    }
    return model, lora, common, Clock(), ends


def run_trl_dpo(config, variant: str, workdir: Path) -> dict:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from engine.models import load_tokenizer, resolve_model

    model, lora, common, clock, ends = trl_common(config, variant, workdir)
    rows = [json.loads(line) for line in TRAIN_PAIRS.read_text(encoding="utf-8").splitlines() if line.strip()]
    dataset = Dataset.from_list([{
        "prompt": [{"role": "user", "content": r["prompt"]}],
        "chosen": [{"role": "assistant", "content": r["chosen"]}],
        "rejected": [{"role": "assistant", "content": r["rejected"]}],
    } for r in rows])
    args = DPOConfig(**common, per_device_train_batch_size=config.batch_size, beta=config.dpo_beta,
                     loss_type=[config.dpo_loss], max_length=config.max_seq_len)
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset,
                         processing_class=load_tokenizer(resolve_model(config.model)), peft_config=lora,
                         callbacks=[clock])
    trainer.train()
    adapter = workdir / f"{variant}-adapter"
    trainer.save_model(str(adapter))
    return {"ends": ends, "rewards": [], "adapter": str(adapter)}


def run_trl_grpo(config, variant: str, workdir: Path) -> dict:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from engine.models import load_tokenizer, resolve_model
    from engine.train.rewards import Answer, build_rewards

    model, lora, common, clock, ends = trl_common(config, variant, workdir)
    rows = [json.loads(line) for line in Path(config.dataset).read_text(encoding="utf-8").splitlines() if line.strip()]
    dataset = Dataset.from_list([{"prompt": r["messages"], "expected": r.get("expected")} for r in rows])
    rewards = build_rewards(config, config.grpo_max_completion_tokens)

    def wrapped(reward):
        def score(prompts, completions, expected, completion_ids=None, **kwargs):
            return [reward.score(Answer(prompt=p[-1]["content"], completion=c[0]["content"], expected=e,
                                        tokens=len(ids) if ids is not None else 0, where=config.dataset))
                    for p, c, e, ids in zip(prompts, completions, expected,
                                            completion_ids or [None] * len(prompts), strict=True)]

        score.__name__ = reward.name
        return score

    args = GRPOConfig(
        **common, per_device_train_batch_size=config.batch_size * config.grpo_group_size,
        num_generations=config.grpo_group_size, max_completion_length=config.grpo_max_completion_tokens,
        temperature=config.grpo_temperature, top_p=1.0, top_k=0, beta=config.grpo_kl_beta,
        epsilon=config.grpo_clip_epsilon, num_iterations=config.grpo_iterations, loss_type="dapo",
        reward_weights=[r.weight for r in rewards], use_vllm=False,
    )
    logs: list[dict] = []
    trainer = GRPOTrainer(model=model, args=args, train_dataset=dataset, reward_funcs=[wrapped(r) for r in rewards],
                          processing_class=load_tokenizer(resolve_model(config.model)), peft_config=lora,
                          callbacks=[clock])
    trainer.train()
    logs = trainer.state.log_history
    return {"ends": ends, "rewards": [x["reward"] for x in logs if "reward" in x], "adapter": None}


def child(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    config = preset_config(args, workdir)
    if args.variant.startswith("trl"):
        sys.path.insert(0, str(PEERS))
    if args.variant == "ftui":
        out = run_ftui(config)
    elif args.task == "dpo":
        out = run_trl_dpo(config, args.variant, workdir)
    else:
        out = run_trl_grpo(config, args.variant, workdir)
    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print("RESULT " + json.dumps(out), flush=True)


def summarise(out: dict, args: argparse.Namespace, eval_file: Path) -> dict:
    ends = out["ends"]
    r = {"steps": len(ends), "peak_rss_gib": out["peak_rss_gib"],
         "s_per_step": (ends[-1] - ends[0]) / (len(ends) - 1) if len(ends) > 1 else float("nan")}
    if args.task == "dpo":
        from bench.dpo_demo import held_out

        scored = held_out(out["adapter"], preset_beta(), str(eval_file))
        r |= {"accuracy": scored["accuracy"], "margin": scored["margin"]}
    else:
        last = out["rewards"][len(out["rewards"]) // 2:]
        r |= {"reward": statistics.mean(last) if last else float("nan")}
    return r


def preset_beta() -> float:
    from engine.config.presets import load_preset

    return load_preset("dpo").apply().dpo_beta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="dpo")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated; ratios are to trl-bf16")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--batch", type=int, default=0, help="pairs (dpo) or prompts (grpo) per step; 0: the preset's")
    parser.add_argument("--group", type=int, default=0, help="grpo answers per prompt; 0: the preset's")
    parser.add_argument("--eval-pairs", type=int, default=0, help="score only the first N held-out pairs; 0: all")
    parser.add_argument("--model", default="", help="grpo: start from this model (a folder, such as an SFT "
                                                    "run's export/merged); default: the preset's")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model and args.task == "dpo":
        parser.error("--model is for --task grpo: the DPO scorer measures margins against the embedded base")
    if args.variant:
        child(args)
        return
    variants = without_missing_trl(args.variants.split(","), PEERS)
    if not variants:
        sys.exit("nothing to run: every variant asked for is skipped above")
    results: dict[str, list[dict]] = {v: [] for v in variants}
    columns = ("accuracy", "margin") if args.task == "dpo" else ("reward",)
    header = f"{'variant':10}{'round':>6}{'s/step':>8}{'peak RSS GiB':>14}{'steps':>6}" + "".join(
        f"{c:>10}" for c in columns)
    with tempfile.TemporaryDirectory(prefix="ftui-peers-pref-") as workdir:
        eval_file = Path(workdir) / "eval.jsonl"
        lines = EVAL_PAIRS.read_text(encoding="utf-8").splitlines()
        eval_file.write_text("\n".join(lines[:args.eval_pairs] if args.eval_pairs else lines) + "\n", encoding="utf-8")
        print(header)
        for round_ in range(1, args.rounds + 1):
            for variant in variants:
                cmd = [sys.executable, __file__, "--variant", variant, "--workdir", workdir, "--task", args.task,
                       "--steps", str(args.steps), "--batch", str(args.batch), "--group", str(args.group),
                       "--seed", str(round_), "--model", args.model]
                r = summarise(variant_result(cmd, variant), args, eval_file)
                results[variant].append(r)
                print(_row(variant, str(round_), r, columns), flush=True)
    print(f"\n{args.model or 'SmolLM2-135M'} LoRA r16, {args.task}, {args.steps} steps; medians of {args.rounds} round(s)")
    print(header)
    keys = ("s_per_step", "peak_rss_gib", "steps", *columns)
    med = {v: {k: statistics.median(r[k] for r in rs) for k in keys} for v, rs in results.items()}
    for name, r in med.items():
        print(_row(name, "", r, columns))
    base = "trl-bf16" if "trl-bf16" in med else variants[0]
    for name in (v for v in variants if v != base):
        b, h = med[base], med[name]
        print(f"{name} against {base}: {b['s_per_step'] / h['s_per_step']:.2f}x the speed, "
              f"{h['peak_rss_gib'] / b['peak_rss_gib']:.2f}x the peak RSS")
    if args.task == "dpo":
        print("accuracy: share of held-out pairs whose chosen reply scores higher; margin: mean DPO margin vs the base")
    else:
        print("reward: mean weighted reward (format + 2 x answer) of the answers sampled over the last half of the steps")


def _row(name: str, round_: str, r: dict, columns: tuple[str, ...]) -> str:
    return (f"{name:10}{round_:>6}{r['s_per_step']:>8.2f}{r['peak_rss_gib']:>14.2f}{r['steps']:>6.0f}"
            + "".join(f"{r[c]:>10.3f}" for c in columns))


if __name__ == "__main__":
    main()
