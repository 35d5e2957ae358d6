"""DPO and ORPO on the embedded SmolLM2-135M against SFT on the same chosen replies: held-out
preference before and after, and the time per step.

Trains the `dpo` and `orpo` presets for --steps steps on presets/data/docker_pref_train.jsonl
(bench/make_preference_demo.py: the demo answer chosen, the base model's own answer rejected),
and SFT on the same file's chosen replies at the same batch, then scores the 43 held-out prompts'
pairs (docker_pref_eval.jsonl) with the base and with each trained adapter:

- preference accuracy: the share of pairs whose chosen reply gets the higher mean token
  log-probability (the base's figure is "before");
- DPO margin: beta x (chosen log-ratio - rejected log-ratio) against the base, mean over pairs
  (0 for the base by definition).

Time per step is the mean wall time of steps 2..N as the run's events report it (step 1 pays for
the first allocations); the CPU is shared, so compare the figures of one run of this script.

    python bench/dpo_demo.py [--steps 20] [--objectives sft,dpo,orpo]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EVAL = "presets/data/docker_pref_eval.jsonl"
TRAIN = "presets/data/docker_pref_train.jsonl"


def train_run(preset: str, steps: int, out: str, **changes: object) -> tuple[str, float]:
    """(run dir, mean seconds per step over steps 2..N)."""
    from engine.config.presets import load_preset
    from engine.events import StepLogged
    from engine.train import train

    config = load_preset(preset).apply().replace(max_steps=steps, output_dir=out, export_gguf=False,
                                                 retention_mix=0.0, eval_interval=10_000, **changes)
    steps_seen: list[StepLogged] = []
    result = train(config, lambda e: steps_seen.append(e) if isinstance(e, StepLogged) else None, threading.Event())
    if not result.ok:
        raise SystemExit(f"{preset}: {result.reason} {result.advice}")
    per_step = (steps_seen[-1].elapsed_s - steps_seen[0].elapsed_s) / max(len(steps_seen) - 1, 1)
    return str(result.run_dir), per_step


def held_out(adapter: str | None, beta: float, eval_file: str = EVAL) -> dict[str, float]:
    import torch
    from transformers import AutoModelForCausalLM

    from engine.config.schema import RunConfig
    from engine.data.prepare import prepare
    from engine.models import load_tokenizer, resolve_model
    from engine.train.preference import collate_pairs, sequence_logps

    base_ref = resolve_model("smollm2-135m").ref
    tokenizer = load_tokenizer(resolve_model("smollm2-135m"))
    pairs = prepare(RunConfig(dataset=eval_file, objective="dpo", val_split=0, max_seq_len=256), tokenizer).train
    base = AutoModelForCausalLM.from_pretrained(base_ref, dtype=torch.float32).eval()
    model = base
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(base, adapter).eval()
    chosen_wins, margins = 0, []
    with torch.no_grad():
        for start in range(0, len(pairs), 8):
            chunk = list(pairs[start:start + 8])
            batch = collate_pairs(chunk, tokenizer.pad_token_id or 0)
            policy, counts = sequence_logps(model, batch, True)
            if adapter:
                with model.disable_adapter():
                    reference, _ = sequence_logps(model, batch, True)
            else:
                reference = policy
            n = len(chunk)
            mean = policy / counts
            chosen_wins += int((mean[:n] > mean[n:]).sum())
            ratio = policy - reference
            margins += (beta * (ratio[:n] - ratio[n:])).tolist()
    return {"pairs": len(pairs), "accuracy": chosen_wins / len(pairs), "margin": sum(margins) / len(margins)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--objectives", default="sft,dpo,orpo", help="which runs to train, comma-separated")
    parser.add_argument("--train", default=TRAIN, help="preference rows to train on")
    parser.add_argument("--eval", default=EVAL, help="held-out preference rows to score")
    args = parser.parse_args()
    out = tempfile.mkdtemp(prefix="ftui-dpo-bench-")
    figures: dict[str, dict[str, float]] = {"base": held_out(None, 0.1, args.eval)}
    print("base", json.dumps(figures["base"]), flush=True)
    runs = {
        "sft": ("dpo", {"objective": "sft"}),
        "dpo": ("dpo", {}),
        "orpo": ("orpo", {}),
    }
    for name, (preset, changes) in runs.items():
        if name not in args.objectives.split(","):
            continue
        run_dir, per_step = train_run(preset, args.steps, out, name=f"bench-{name}", dataset=args.train, **changes)
        figures[name] = {**held_out(str(Path(run_dir) / "adapter"), 0.1, args.eval), "s_per_step": per_step}
        print(name, json.dumps(figures[name]), flush=True)
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
