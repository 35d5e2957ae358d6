"""Other tools' config keys (HF TrainingArguments, TRL, Axolotl, LLaMA-Factory, peft) in ftui's terms.

People arrive with a config from the trainer they used last. A key that means the same as one of
ftui's is read as ftui's key, with a note naming it, so the next config is written in ftui's
words; a key ftui has no use for (precision flags, logging cadence) is passed over with a note
saying why; a key that asks for something ftui does not do (multi-GPU sharding) is an error that
says so. `did_you_mean` looks through these names too, so a typo of another tool's key still
lands on ftui's.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

HF = "HF TrainingArguments"
AXOLOTL = "Axolotl"
FACTORY = "LLaMA-Factory"
TRL = "TRL"
PEFT = "peft LoraConfig"


@dataclass(frozen=True)
class Alias:
    key: str | None
    """ftui's key; None when the setting has no use in ftui (`why` says so)."""
    tools: str
    convert: Callable[[Any], Any] | None = None
    """Value in the other tool's terms -> ftui's; raises ValueError with a reason when it cannot."""
    why: str = ""
    """For a key with no ftui equivalent: why it is not needed (a note) or not possible (an error)."""
    error: bool = False


def _share(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 1:
        raise ValueError(f"{value} is a count of examples; ftui's val_split is a share of them (0.05-0.1 is typical)")
    return value


KEEP_DEFAULT = object()
"""A converted value meaning "ftui's default already does this"."""


def _targets(value: Any) -> Any:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if value in (["all"], ["all-linear"]):
        return KEEP_DEFAULT
    return value


def _choice(table: dict[str, str], setting: str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if value in table:
            return table[value]
        raise ValueError(f"{value!r} has no ftui {setting}; choose from {', '.join(sorted(set(table.values())))}")
    return convert


def _when_true(method: str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if value is True:
            return method
        raise ValueError(f"only true has a meaning in ftui (method = {method!r}); leave it out otherwise")
    return convert


def _one_dataset(value: Any) -> Any:
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict) and "path" in value[0]:
        return value[0]["path"]
    if isinstance(value, list):
        raise ValueError("ftui trains on one dataset: set dataset to its file or hub id")
    return value


_OPTIMIZERS = {"adamw_torch": "adamw", "adamw_torch_fused": "adamw", "adamw_hf": "adamw", "adamw": "adamw",
               "adamw_bnb_8bit": "adamw_8bit", "adamw_8bit": "adamw_8bit", "paged_adamw_8bit": "paged_adamw_8bit",
               "paged_adamw_bnb_8bit": "paged_adamw_8bit"}
_SCHEDULERS = {"cosine": "cosine", "linear": "linear", "constant": "constant", "constant_with_warmup": "constant"}
VALUES = {"optimizer": _OPTIMIZERS, "scheduler": _SCHEDULERS}
"""Other tools' values for ftui's own keys (Axolotl's `optimizer: adamw_bnb_8bit`)."""
_PRECISION = "ftui picks bf16 where the GPU has it, else fp16 with loss scaling (fp32 on CPU)"
_NOT_HERE = "ftui trains on one GPU"

ALIASES: dict[str, Alias] = {
    "num_train_epochs": Alias("epochs", f"{HF} / {FACTORY}"),
    "num_epochs": Alias("epochs", AXOLOTL),
    "gradient_accumulation_steps": Alias("grad_accum", f"{HF} / {AXOLOTL} / {FACTORY}"),
    "per_device_train_batch_size": Alias("batch_size", f"{HF} / {FACTORY}"),
    "micro_batch_size": Alias("batch_size", AXOLOTL),
    "cutoff_len": Alias("max_seq_len", FACTORY),
    "sequence_len": Alias("max_seq_len", AXOLOTL),
    "max_seq_length": Alias("max_seq_len", TRL),
    "max_length": Alias("max_seq_len", TRL),
    "lr": Alias("learning_rate", "shorthand"),
    "learningrate": Alias("learning_rate", "spelling"),
    "base_lr": Alias("learning_rate", "shorthand"),
    "peak_lr": Alias("learning_rate", "shorthand"),
    "max_lr": Alias("learning_rate", "shorthand"),
    "eval_steps": Alias("eval_interval", f"{HF} / {AXOLOTL} / {FACTORY}"),
    "save_steps": Alias("save_interval", f"{HF} / {AXOLOTL} / {FACTORY}"),
    "val_set_size": Alias("val_split", AXOLOTL, _share),
    "val_size": Alias("val_split", FACTORY, _share),
    "lora_target": Alias("target_modules", FACTORY, _targets),
    "lora_target_modules": Alias("target_modules", AXOLOTL, _targets),
    "lora_rank": Alias("lora_r", FACTORY),
    "r": Alias("lora_r", PEFT),
    "lr_scheduler_type": Alias("scheduler", HF, _choice(_SCHEDULERS, "scheduler")),
    "lr_scheduler": Alias("scheduler", AXOLOTL, _choice(_SCHEDULERS, "scheduler")),
    "optim": Alias("optimizer", HF, _choice(_OPTIMIZERS, "optimizer")),
    "base_model": Alias("model", AXOLOTL),
    "model_name_or_path": Alias("model", f"{HF} / {FACTORY}"),
    "finetuning_type": Alias("method", FACTORY, _choice({"lora": "lora", "full": "full"}, "method")),
    "adapter": Alias("method", AXOLOTL, _choice({"lora": "lora", "qlora": "qlora"}, "method")),
    "use_dora": Alias("method", f"{PEFT} / {FACTORY}", _when_true("dora")),
    "peft_use_dora": Alias("method", AXOLOTL, _when_true("dora")),
    "load_in_4bit": Alias("method", AXOLOTL, _when_true("qlora")),
    "train_on_inputs": Alias("train_on_responses_only", AXOLOTL, lambda v: not v if isinstance(v, bool) else v),
    "datasets": Alias("dataset", AXOLOTL, _one_dataset),
    "dataset_dir": Alias(None, FACTORY, why="give the file's path (or a hub id) in dataset"),
    "lora_target_linear": Alias(None, AXOLOTL, why="ftui's default target_modules already adapt every linear projection"),
    "bf16": Alias(None, f"{HF} / {AXOLOTL} / {FACTORY}", why=_PRECISION),
    "fp16": Alias(None, f"{HF} / {AXOLOTL} / {FACTORY}", why=_PRECISION),
    "tf32": Alias(None, f"{HF} / {AXOLOTL}", why=_PRECISION),
    "logging_steps": Alias(None, f"{HF} / {AXOLOTL} / {FACTORY}", why="ftui logs every optimizer step"),
    "eval_strategy": Alias(None, HF, why="ftui evaluates every eval_interval steps"),
    "evaluation_strategy": Alias(None, HF, why="ftui evaluates every eval_interval steps"),
    "save_strategy": Alias(None, HF, why="ftui saves every save_interval steps, on stop and at the end"),
    "template": Alias(None, FACTORY, why="ftui renders with the model's own chat template"),
    "chat_template": Alias(None, AXOLOTL, why="ftui renders with the model's own chat template"),
    "stage": Alias(None, FACTORY, why="ftui does supervised fine-tuning (sft)"),
    "do_train": Alias(None, FACTORY, why="`ftui train` trains"),
    "output_dir_overwrite": Alias(None, FACTORY, why="every run gets its own folder under output_dir"),
    "overwrite_output_dir": Alias(None, f"{HF} / {FACTORY}", why="every run gets its own folder under output_dir"),
    "push_to_hub": Alias(None, HF, why="upload a finished run with `ftui push RUN --repo user/name`"),
    "hub_model_id": Alias(None, f"{HF} / {AXOLOTL}", why="upload a finished run with `ftui push RUN --repo user/name`"),
    "deepspeed": Alias(None, f"{HF} / {AXOLOTL} / {FACTORY}", why=_NOT_HERE, error=True),
    "fsdp": Alias(None, f"{HF} / {AXOLOTL}", why=_NOT_HERE, error=True),
}


@dataclass(frozen=True)
class Translated:
    key: str
    """The key as the user wrote it."""
    target: str | None
    """ftui's key, or None when the setting is passed over or refused."""
    value: Any
    message: str
    level: str
    """"warning" (read as ftui's key, or passed over) or "error"."""


def normal(key: str) -> str:
    return key.strip().lower().replace("-", "_")


def translate(key: str, value: Any, known: Iterable[str]) -> Translated | None:
    """What another tool's `key` means in ftui, or None when it is not one ftui knows of."""
    name = normal(key)
    known = set(known)
    if name in known:
        table = VALUES.get(name, {})
        if isinstance(value, str) and value in table and table[value] != value:
            return Translated(key, name, table[value], f"{value!r} read as ftui's {name} {table[value]!r}", "warning")
        return None if name == key else Translated(key, name, value, f"read as {name}", "warning")
    alias = ALIASES.get(name)
    if alias is None:
        return None
    if alias.key is None:
        level = "error" if alias.error else "warning"
        verb = "not supported" if alias.error else "not used"
        return Translated(key, None, value, f"{alias.tools} key, {verb}: {alias.why}", level)
    try:
        converted = alias.convert(value) if alias.convert else value
    except ValueError as exc:
        return Translated(key, alias.key, value, f"{alias.tools} key for ftui's {alias.key}, but {exc}", "error")
    if converted is KEEP_DEFAULT:
        return Translated(key, None, value, f"{alias.tools} key for ftui's {alias.key}; {value!r} is already ftui's "
                                            "default (every attention and MLP projection)", "warning")
    return Translated(key, alias.key, converted, f"{alias.tools} key, read as ftui's {alias.key}", "warning")


def did_you_mean(key: str, known: Iterable[str]) -> str | None:
    """ftui's key closest to `key`, looking through other tools' names as well as ftui's."""
    known = list(known)
    close = difflib.get_close_matches(normal(key), known + list(ALIASES), n=1)
    if not close:
        return None
    alias = ALIASES.get(close[0])
    return close[0] if alias is None else alias.key
