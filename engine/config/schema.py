"""The run configuration: one frozen schema that presets, the form, the CLI and resume all share.

Checks say what is wrong and why, in the terms fine-tuners already use (seed guidance from
the LoRA and QLoRA literature and the common trainers' docs), so a bad value is caught in the
form as it is typed, not an hour into a run.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import itertools
import math
import re
import shlex
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args

from engine.config.aliases import did_you_mean, translate
from engine.config.ranges import RANGES

Method = Literal["lora", "qlora", "dora", "full"]
Scheduler = Literal["linear", "cosine", "constant"]
Optimizer = Literal["adamw", "adamw_8bit", "paged_adamw_8bit"]
Strategy = Literal["auto", "ddp", "fsdp"]
Compute = Literal["auto", "bf16", "fp32"]
Objective = Literal["sft", "dpo", "orpo", "grpo"]
DpoLoss = Literal["sigmoid", "ipo"]
PAIR_OBJECTIVES = ("dpo", "orpo")
"""Objectives that train on preference pairs: a chosen and a rejected reply to each prompt."""
DatasetFormat = Literal["auto", "alpaca", "sharegpt", "messages", "text", "prompt_completion", "preference"]
QUANT_TYPES = ("F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M")
MAX_CPU_PROCESSES = 64
MAX_NAME_BYTES = 200
"""A folder name holds 255 bytes; the run folder adds a date-time prefix and maybe a -N suffix."""
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
"""`report_to` names and the module each needs (ftui's `tensorboard`, `wandb` and `mlflow` extras)."""


class ConfigError(ValueError):
    """Raised with every problem found, one per line, so a form or CLI can show them all."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class Problem:
    field: str
    message: str
    level: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return f"{self.level}: {self.field}: {self.message}"




@dataclass(frozen=True)
class RunConfig:
    name: str = "run"
    """Short name used in the run directory, e.g. runs/2026-11-25-1530-<name>/."""
    model: str = "smollm2-135m"
    """Catalog id (see `ftui recommend`), a Hugging Face hub id, or a local model folder."""
    trust_remote_code: bool = False
    """Run Python code shipped with the model repository. Off: only enable for repos you trust."""
    dataset: str = "presets/data/docker_train.jsonl"
    """Path to a .jsonl/.json/.csv/.parquet file, or a hub dataset id."""
    dataset_split: str = ""
    """A hub dataset's split; empty picks `train`, or the one SFT split such as `train_sft`."""
    dataset_format: DatasetFormat = "auto"
    """Force alpaca/sharegpt/messages/text/prompt_completion/preference when auto-detection is ambiguous."""
    columns: tuple[str, ...] = ()
    """The file's columns under ftui's names, e.g. `columns = {output = "response", input = "context"}`
    (fields: instruction, input, output, system, messages, text, prompt, completion, chosen, role, content)."""
    roles: tuple[str, ...] = ()
    """The file's role names, e.g. `roles = {user = ["prompter"], assistant = ["bot"]}`."""
    messages_field: str = ""
    """The column holding the list of turns when it is not `messages` or `conversations`."""
    max_bad_share: float = 0.05
    """Refuse to train when more than this share of rows fail validation (bad rows are skipped)."""
    system_prompt: str = ""
    """Added as the system turn to conversations that have none; also written into the Modelfile."""
    method: Method = "lora"
    """lora: 16-bit base + adapters. qlora: 4-bit base, least memory. dora: LoRA with magnitude
    vectors, slightly better, slower. full: every weight trained, most memory."""
    objective: Objective = "sft"
    """What the run learns from. sft: imitate the replies. dpo: prefer each chosen reply over its rejected
    one, measured against the base model (preference data). orpo: SFT on the chosen reply plus an
    odds-ratio push away from the rejected one, no reference model. grpo: sample grpo_group_size answers
    per prompt, score them with `rewards`, and make the better-than-their-group ones likelier (prompt
    rows with an optional `expected` answer)."""
    dpo_beta: float = 0.1
    """DPO's beta: how far the trained model may move from the base to prefer the chosen replies;
    lower moves further (0.1 is typical, 0.01-0.5 is the range people use)."""
    dpo_loss: DpoLoss = "sigmoid"
    """DPO's loss: sigmoid (the DPO paper's) or ipo (a squared loss that stops pushing once the
    preference margin reaches 1/(2 x beta), against overfitting small preference sets)."""
    dpo_sft_weight: float = 0.0
    """DPO's weight of an SFT loss on the chosen reply (its mean token negative log-likelihood)
    added to each pair's loss, so the chosen replies' form is held while the pair is pushed apart
    (RPO, Pang et al. 2024; TRL's rpo_alpha, 1.0 in the paper). 0: plain DPO."""
    orpo_lambda: float = 0.1
    """ORPO's weight of the odds-ratio term beside the SFT loss on the chosen reply (0.1 as in the
    ORPO paper; TRL calls it beta)."""
    lora_r: int = 16
    """LoRA rank: higher learns more and uses more memory; 8-64 is typical."""
    lora_alpha: int = 32
    """LoRA scaling; alpha/rank between 0.5 and 2 is the usual range (2 is common)."""
    lora_dropout: float = 0.05
    """Dropout on the adapter inputs; raise towards 0.1 against overfitting on small data."""
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES
    """Layers that get adapters: all attention and MLP projections learn best."""
    learning_rate: float = 2e-4
    """Peak learning rate: 2e-4 is typical for LoRA, 2e-5 for full fine-tuning."""
    epochs: float = 1.0
    """Passes over the training data; 1-3 for most instruction sets, more overfits."""
    max_steps: int = 0
    """Stop after this many optimizer steps (0: run the epochs)."""
    max_time: str = ""
    """A time budget for each training session: "2h", "90m", "1h30m", "45s" or a number of seconds
    ("" none). When the next step would not end within it, the run stops with a checkpoint, as a
    stop request does, and says so in run.json; a resume gets the budget afresh."""
    batch_size: int = 4
    """Examples per forward pass: raises memory use roughly linearly."""
    grad_accum: int = 4
    """Batches per optimizer step: effective batch = batch_size x grad_accum, at no memory cost."""
    max_seq_len: int = 1024
    """Longest example in tokens; longer ones are truncated. Activation memory grows with it."""
    packing: bool = True
    """Padding-free batches: each forward runs its examples end to end in one row, each attending
    only to itself, so no compute or memory goes to padding (Llama-style models; others pad)."""
    warmup_ratio: float = 0.03
    """Share of steps spent ramping the learning rate up from 0 (ignored when warmup_steps > 0)."""
    warmup_steps: int = 0
    """Warm-up length in steps; overrides warmup_ratio when above 0."""
    scheduler: Scheduler = "cosine"
    """Learning-rate decay after warm-up: cosine or linear to 0, or constant."""
    optimizer: Optimizer = "adamw"
    """adamw: 32-bit states. adamw_8bit / paged_adamw_8bit (bitsandbytes, CUDA): 4x smaller states."""
    weight_decay: float = 0.0
    """L2-style regularisation; 0-0.1 is typical, raise against overfitting."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this norm; keeps spikes from wrecking the run."""
    seed: int = 42
    """Same seed, config and data give the same run (on CPU, bit for bit)."""
    val_split: float = 0.1
    """Share of examples held out for validation loss (0 turns evaluation off)."""
    eval_interval: int = 20
    """Optimizer steps between validation runs."""
    save_interval: int = 50
    """Optimizer steps between checkpoints (a checkpoint is also written on stop and at the end)."""
    keep_checkpoints: int = 3
    """Checkpoints kept on disk, newest first, older ones deleted after each save (0 keeps all);
    the one at the best evaluation is kept too."""
    early_stopping_patience: int = 0
    """Stop after this many evaluations without a better validation loss (0: never)."""
    train_on_responses_only: bool = True
    """Loss only on assistant replies (and their end-of-turn token); off trains on prompts too."""
    retention_mix: float = 0.25
    """Share of training examples that are general conversations answered by the base model
    itself (self-distillation replay), so the tuned model keeps what it knew; 0 turns it off."""
    retention_data: str = ""
    """Your own general conversations to replay instead of the base model's answers to ftui's
    built-in prompt pool (any dataset format ftui reads)."""
    retention_prompts: str = ""
    """Extra retention prompts (JSONL of messages, optional expected and kind) scored beside the
    built-in general set after training."""
    grpo_group_size: int = 4
    """grpo: answers sampled per prompt; their rewards are compared within the group, so 2 is the
    least and 4-16 is usual (more is steadier and slower)."""
    grpo_max_completion_tokens: int = 64
    """grpo: the longest sampled answer in tokens; sampling time grows with it."""
    grpo_temperature: float = 1.0
    """grpo: sampling temperature; lower answers alike (nothing to compare), higher answers at random."""
    grpo_kl_beta: float = 0.04
    """grpo: weight of the KL penalty that keeps the policy near the model without adapters (0 turns
    it off and saves a forward pass; needs adapters, so 0 for method = full)."""
    grpo_clip_epsilon: float = 0.2
    """grpo: the policy ratio is clipped to 1 +- this; it binds only when grpo_iterations > 1."""
    grpo_iterations: int = 1
    """grpo: optimizer updates on each batch of sampled answers (1: on-policy, the ratio is 1)."""
    grpo_guide: str = ""
    """grpo: a reference reply with {expected} in it, such as "Run: `{expected}`": where none of a
    prompt's sampled answers contains the row's expected answer, the last is replaced by this reply
    (guided GRPO), so the group has a right answer to learn from. Empty: off."""
    rewards: tuple[str, ...] = ("format", "answer")
    """grpo: reward functions, each `name` or `name:weight`: format (the answer matches
    reward_format), answer (contains the row's `expected`), exact (equals it), length (minus the
    share of grpo_max_completion_tokens used), code (the function in reward_file)."""
    reward_format: str = ""
    """grpo: the regular expression the whole answer must match for the format reward."""
    reward_file: str = ""
    """grpo: a Python file whose `reward(prompt, completion, expected)` returns a number, for the
    code reward (`file.py:name` for another function name). It runs as your code, with your rights."""
    precision: Compute = "auto"
    """auto: bf16 autocast where the hardware computes bf16 natively (GPUs since Ampere; CPUs with
    AVX512-BF16 or AMX, Arm CPUs with the BF16 extension), fp16 with loss scaling on older GPUs, fp32
    on other CPUs. bf16 or fp32 force it (fp32 only on the CPU: the memory estimate is for 16-bit GPU
    training)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: much less memory, about 30% slower."""
    oom_retry: bool = False
    """On CUDA out-of-memory, retry once at half the batch size with double accumulation."""
    gpus: str = ""
    """Devices, one training process each: "" one (the GPU with most free memory, else the CPU);
    "0,1" GPUs 0 and 1; "cpu:2" two CPU processes (checks a multi-GPU setup without GPUs).
    batch_size is per process: the effective batch is batch_size x grad_accum x processes."""
    strategy: Strategy = "auto"
    """With several processes: ddp keeps a full copy on each GPU (fastest, when it fits one card);
    fsdp shards weights, gradients and optimizer states across them (bigger models); auto picks."""
    export_gguf: bool = True
    """The run must end in a GGUF (for llama.cpp/Ollama): a model whose architecture ftui cannot write
    as GGUF yet (today all but Llama) is refused before training. false trains it anyway and keeps
    the Hugging Face weights (adapter and merged folder) without a GGUF."""
    export_quants: tuple[str, ...] = ("Q4_K_M",)
    """GGUF types to export: F16/BF16 (lossless), Q8_0 (near-lossless), Q6_K, Q5_K_M, Q4_K_M."""
    output_dir: str = "runs"
    """Where run directories are created."""
    report_to: tuple[str, ...] = ()
    """Experiment trackers fed the same steps and evaluations: tensorboard (RUN/tensorboard), wandb
    (offline unless WANDB_MODE=online), mlflow (OUTPUT_DIR/mlruns unless MLFLOW_TRACKING_URI)."""
    notify_url: str = ""
    """Where the run says it finished, stopped, failed or stalled: a webhook or an ntfy topic URL
    (https://ntfy.sh/your-topic) gets a POST of a JSON summary ("" uses FTUI_NOTIFY_URL, if set).
    Saved in the run's config.toml: an ntfy topic is as secret as its name."""
    notify_command: str = ""
    """A command run at the same moments, with the summary in FTUI_NOTIFY_* environment variables;
    split as a shell would and run directly, never through a shell (no pipes or $VARS)."""

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config", notes: list[Problem] | None = None) -> RunConfig:
        """Build from plain values (a preset, a form, --set), rejecting unknown keys and bad types.

        Other tools' keys (`engine.config.aliases`: num_train_epochs, cutoff_len, ...) are read as ftui's,
        a later one winning over an earlier; each adds a warning to `notes` naming ftui's key.
        """
        known = {f.name: f for f in fields(cls)}
        problems = []
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            translated = translate(key, value, known)
            if translated is None and key not in known:
                close = did_you_mean(key, known)
                hint = f" (did you mean {close!r}?)" if close else ""
                problems.append(Problem(key, f"unknown key in {source}{hint}"))
                continue
            if translated is not None:
                if translated.level == "error":
                    problems.append(Problem(key, translated.message))
                    continue
                if notes is not None:
                    notes.append(Problem(key, translated.message, "warning"))
                if translated.target is None:
                    continue
                key, value = translated.target, translated.value
            try:
                kwargs[key] = _coerce(known[key], value)
            except (TypeError, ValueError) as exc:
                problems.append(Problem(key, str(exc)))
        if problems:
            raise ConfigError(problems)
        return cls(**kwargs)

    def replace(self, **changes: Any) -> RunConfig:
        return RunConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def to_toml(self) -> str:
        lines = []
        for f in fields(self):
            value = getattr(self, f.name)
            lines.append(f"{f.name} = {_toml_table(value) if f.name in _PAIR_FIELDS else _toml_value(value)}")
        return "\n".join(lines) + "\n"

    @property
    def world_size(self) -> int:
        """Training processes: one per listed GPU, N for "cpu:N", else 1 (a bad `gpus` counts as 1)."""
        try:
            return len(parse_gpus(self.gpus)[1]) or 1
        except ValueError:
            return 1

    def check(self, context_length: int | None = None, total_steps: int | None = None) -> list[Problem]:
        """Range checks with reasons. Errors make the config unusable; warnings are advice."""
        # NaN fails every comparison, so a range check written as `x <= 0` lets it through: one
        # finiteness check for every float field comes first, and stands in for its range check.
        out = [Problem(f.name, f"{value} is not a finite number") for f in fields(self)
               if isinstance(value := getattr(self, f.name), float) and not math.isfinite(value)]
        not_finite = {p.field for p in out}
        rules = itertools.chain(
            self._range_problems(), self._source_problems(), self._method_problems(),
            self._training_problems(context_length, total_steps), self._process_problems(),
            self._data_problems(), self._notify_problems(), self._tracker_problems(),
            self._objective_problems(), self._export_problems(),
        )
        out.extend(p for p in rules if p.field not in not_finite)
        return out

    def _range_problems(self) -> Iterator[Problem]:
        """Each number and choice against its allowed range (engine.config.ranges)."""
        for name, allowed in RANGES.items():
            problem = allowed.problem(getattr(self, name))
            if problem:
                yield Problem(name, problem)

    def _source_problems(self) -> Iterator[Problem]:
        """The run's name, and the model, data and output paths it reads and writes."""
        name_problem = _name_problem(self.name)
        if name_problem:
            yield Problem("name", name_problem)
        if not self.model.strip():
            yield Problem("model", "is empty: give a catalog id, a hub id or a local folder")
        if not self.dataset.strip():
            yield Problem("dataset", "is empty: give a data file or a hub dataset id")
        for path_field in ("model", "dataset", "output_dir"):
            if "\x00" in getattr(self, path_field):
                yield Problem(path_field, "contains a NUL byte, which no file or folder name can hold")

    def _method_problems(self) -> Iterator[Problem]:
        """The learning rate for full fine-tuning, and the adapter's shape for the LoRA methods."""
        if self.method == "full" and self.learning_rate > 1e-4:
            yield Problem("learning_rate", f"{self.learning_rate:g} is high for full fine-tuning (2e-5 is typical)",
                          "warning")
        if self.method == "full":
            return
        if not 1 <= self.lora_r <= 1024:
            yield Problem("lora_r", f"{self.lora_r} is outside 1..1024 (8-64 is typical)")
        if self.lora_alpha <= 0:
            yield Problem("lora_alpha", "must be positive")
        elif self.lora_r > 0 and not 0.5 <= self.lora_alpha / self.lora_r <= 2:
            yield Problem("lora_alpha", f"alpha/rank = {self.lora_alpha / self.lora_r:g} is outside 0.5..2: "
                          "updates will be scaled unusually (alpha = 2 x rank is common)", "warning")
        if not self.target_modules:
            yield Problem("target_modules", "is empty: LoRA needs at least one layer to adapt")

    def _training_problems(self, context_length: int | None, total_steps: int | None) -> Iterator[Problem]:
        """How long the run lasts, what one sequence holds, warm-up, clipping and the checkpoints kept."""
        if self.epochs <= 0 and self.max_steps <= 0:
            yield Problem("epochs", "set epochs > 0 or max_steps > 0")
        if self.max_time:
            try:
                budget = parse_duration(self.max_time)
            except ValueError as exc:
                yield Problem("max_time", str(exc))
            else:
                if not 0 < budget <= MAX_TIME_S:
                    yield Problem("max_time", f"{self.max_time} is outside 1s..30 days (\"\" for no budget)")
        if self.max_seq_len < 16:
            yield Problem("max_seq_len", f"{self.max_seq_len} is too short to hold a prompt and a reply")
        elif context_length is not None and self.max_seq_len > context_length:
            yield Problem("max_seq_len", f"{self.max_seq_len} exceeds the model's context of {context_length} tokens")
        if self.warmup_steps >= 0 and total_steps and self.warmup_steps > 0.2 * total_steps:
            yield Problem("warmup_steps", f"{self.warmup_steps} is over 20% of the {total_steps} steps")
        if self.max_grad_norm <= 0:
            yield Problem("max_grad_norm", "must be positive (1.0 is typical)")
        if self.keep_checkpoints == 1:
            yield Problem("keep_checkpoints", "1 leaves nothing to fall back to if the newest checkpoint is damaged "
                          "(3 is the default)", "warning")

    def _process_problems(self) -> Iterator[Problem]:
        """The devices named in `gpus`, and what running several processes on them rules out."""
        try:
            parse_gpus(self.gpus)
        except ValueError as exc:
            yield Problem("gpus", str(exc))
            return
        if self.oom_retry and self.world_size > 1:
            yield Problem("oom_retry", "retries in one process only: with several, an out-of-memory fails the run "
                          "with the batch that failed", "warning")
        if self.world_size > 1:
            yield from self.strategy_problems(self.strategy)

    def _data_problems(self) -> Iterator[Problem]:
        """The validation split early stopping needs, and the column/role mapping onto ftui's rows."""
        if self.early_stopping_patience > 0 and self.val_split == 0:
            yield Problem("early_stopping_patience", "needs a validation split (val_split > 0)")
        if self.columns or self.roles or self.messages_field:
            from engine.data.mapping import DataMapping, MappingError

            try:
                DataMapping.parse(self.columns, self.roles, self.messages_field)
            except MappingError as exc:
                setting, _, message = str(exc).partition(": ")
                yield Problem(setting, message)

    def _notify_problems(self) -> Iterator[Problem]:
        """The webhook URL and the command run when the run ends."""
        if self.notify_url and not re.match(r"https?://[^/\s]+", self.notify_url):
            yield Problem("notify_url", f"{self.notify_url!r} is not an http:// or https:// URL (a webhook, or an "
                          "ntfy topic such as https://ntfy.sh/your-topic)")
        if self.notify_command:
            try:
                words = shlex.split(self.notify_command)
            except ValueError as exc:
                yield Problem("notify_command", f"cannot be split into words ({exc}); close its quotes")
            else:
                if not words:
                    yield Problem("notify_command", "is blank; leave it out for no command")

    def _tracker_problems(self) -> Iterator[Problem]:
        """Each `report_to` tracker is one ftui knows, and is installed."""
        for tracker in self.report_to:
            if tracker not in TRACKERS:
                close = difflib.get_close_matches(tracker, TRACKERS, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                yield Problem("report_to", f"unknown tracker {tracker!r}{hint}; choose from {', '.join(TRACKERS)}")
            elif TRACKERS[tracker] not in sys.modules and importlib.util.find_spec(TRACKERS[tracker]) is None:
                package = "mlflow-skinny" if tracker == "mlflow" else tracker
                yield Problem("report_to", f"{tracker} is not installed: pip install -e '.[{tracker}]' in ftui's "
                              f"folder (or pip install {package})")

    def _objective_problems(self) -> Iterator[Problem]:
        """What GRPO needs from the rest of the config (engine.config.grpo)."""
        if self.objective == "grpo":
            from engine.config.grpo import grpo_problems

            for setting, message in grpo_problems(self):
                yield Problem(setting, message)

    def _export_problems(self) -> Iterator[Problem]:
        unknown_quants = [q for q in self.export_quants if q not in QUANT_TYPES]
        if unknown_quants:
            yield Problem("export_quants",
                          f"unknown type(s) {', '.join(unknown_quants)}; choose from {', '.join(QUANT_TYPES)}")

    def strategy_problems(self, strategy: str) -> list[Problem]:
        """What this method and optimizer cannot do under `strategy` ("ddp", "fsdp", "auto"; "" for one
        process). `auto` never picks fsdp for QLoRA (engine.train.launch.choose_strategy)."""
        if strategy != "fsdp":
            return []
        out = []
        if self.method == "qlora":
            out.append(Problem("strategy", "fsdp cannot train method = qlora: sharding turns bitsandbytes' 4-bit "
                               "weights into plain tensors without their quantisation state, so the model trains on "
                               "wrong weights (on the CPU the demo's validation loss after one step was 15.9 against DDP's 2.3); "
                               "use strategy = ddp, where each GPU holds the whole 4-bit model"))
        if self.optimizer != "adamw":
            out.append(Problem("optimizer", f"{self.optimizer} cannot update the sharded parameters of fsdp "
                               "(bitsandbytes has no DTensor support): the run uses 32-bit AdamW, 4x the optimizer "
                               "memory; use strategy = ddp to keep the 8-bit optimizer", "warning"))
        return out

    def validate(self, context_length: int | None = None) -> list[Problem]:
        """Raise ConfigError on errors; return the warnings."""
        problems = self.check(context_length)
        errors = [p for p in problems if p.level == "error"]
        if errors:
            raise ConfigError(errors)
        return problems


NAME_PUNCTUATION = ".-_+"
"""Besides letters and digits: nothing a shell reads as syntax, so a pasted command means what it says."""


def _name_problem(name: str) -> str:
    """Why `name` cannot be part of a run folder's name, or "" when it can."""
    if not name.strip():
        return "is empty: give a short name for the run folder"
    bad = sorted({c for c in name if c in "/\\" or ord(c) < 32 or ord(c) == 127})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return f"contains {shown}: it names a folder, so no path separators or control characters"
    unsafe = sorted({c for c in name if not (c.isalnum() or c in NAME_PUNCTUATION)})
    if unsafe:
        shown = " ".join(repr(c) for c in unsafe)
        return (f"contains {shown}: a run name holds letters, digits and {' '.join(NAME_PUNCTUATION)} only, "
                "since it is part of the folder names ftui prints in commands to paste")
    if name.strip(".") == "":
        return f"{name!r} reads as a path part, not a folder name"
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:
        return f"is {size} bytes long: the run folder's name holds at most {MAX_NAME_BYTES}"
    return ""


def parse_gpus(gpus: str) -> tuple[str, tuple[int, ...]]:
    """("cuda", GPU indices), ("cpu", process numbers) or ("", ()) for one device; ValueError says
    what is wrong with the text."""
    text = gpus.strip().replace(" ", "")
    if not text:
        return "", ()
    if text.startswith("cpu:"):
        count = text[4:]
        if not count.isdigit() or not 1 <= int(count) <= MAX_CPU_PROCESSES:
            raise ValueError(f"{gpus!r}: cpu:N takes a process count from 1 to {MAX_CPU_PROCESSES}")
        return "cpu", tuple(range(int(count)))
    items = text.split(",")
    if not all(item.isdigit() for item in items):
        raise ValueError(f"{gpus!r} is not a list of GPU numbers such as 0,1 (or cpu:N, or empty for one device)")
    ids = tuple(int(item) for item in items)
    if len(set(ids)) != len(ids):
        raise ValueError(f"{gpus!r} names a GPU twice: one process per GPU")
    return "cuda", ids


def load_toml(path: Path) -> dict[str, Any]:
    """Plain values of a preset or config file, without its `description`. A YAML file (another
    trainer's config) is refused with its settings written out in ftui's TOML keys."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() in (".yaml", ".yml"):
            raise ConfigError([Problem(str(path), yaml_as_toml(path, text))])
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError([Problem(str(path), "file does not exist")]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        if isinstance(exc, tomllib.TOMLDecodeError) and _YAML_LINE.search(text) and not _TOML_LINE.search(text):
            raise ConfigError([Problem(str(path), yaml_as_toml(path, text))]) from None
        raise ConfigError([Problem(str(path), f"is not valid TOML: {exc}")]) from None
    data.pop("description", None)
    return data


_YAML_LINE = re.compile(r"^[A-Za-z_][\w.-]*:(\s|$)", re.M)
_TOML_LINE = re.compile(r"^[A-Za-z_][\w.-]*\s*=", re.M)


def yaml_as_toml(path: Path, text: str) -> str:
    """Why a YAML config is refused, with its settings as the TOML lines ftui would read."""
    import yaml  # type: ignore[import-untyped]  # PyYAML, a dependency of transformers and datasets

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    head = "is YAML; ftui reads TOML config files (key = value)"
    if not isinstance(data, dict):
        return f"{head}: see `ftui presets balanced` for one"
    known = {f.name for f in fields(RunConfig)}
    lines, left_out = [], []
    for key, value in data.items():
        key = str(key)
        translated = translate(key, value, known)
        target = translated.target if translated else key if key in known else None
        if translated is not None and (target is None or translated.level == "error"):
            left_out.append(f"{key} ({translated.message})")
            continue
        if target is None:
            close = did_you_mean(key, known)
            left_out.append(f"{key} (unknown{f', did you mean {close!r}?' if close else ''})")
            continue
        value = translated.value if translated else value
        if value is None:
            left_out.append(f"{key} (empty)")
            continue
        shown = _toml_table(_pairs(target, value)) if target in _PAIR_FIELDS else _toml_value(value)
        lines.append(f"{target} = {shown}" + (f"  # {key}" if target != key else ""))
    body = "\n".join(f"    {line}" for line in lines) or "    (no setting ftui knows)"
    out = f"{head}. In ftui's keys its settings are:\n{body}\n"
    if left_out:
        out += "  left out: " + "; ".join(left_out) + "\n"
    return out + f"  save the lines above as {path.with_suffix('.toml').name} and pass that file"


MAX_TIME_S = 30 * 86400
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?")


def parse_duration(text: str) -> float:
    """Seconds in "2h", "90m", "1h30m", "45s", "1.5h", "1d" or a plain number of seconds; ValueError
    saying how to write one otherwise."""
    compact = text.strip().lower().replace(" ", "")
    match = _DURATION.fullmatch(compact)
    if not compact or match is None or not any(match.groups()):
        raise ValueError(f"{text!r} is not a time; write it as 2h, 90m, 1h30m, 45s or a number of seconds")
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def parse_set(items: list[str]) -> dict[str, Any]:
    """`--set key=value` pairs; values are read as TOML so numbers, bools and lists work."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError([Problem(item, "expected key=value")])
        try:
            out[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = raw
    return out


def _coerce(f: dataclasses.Field[Any], value: Any) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    default = f.default if f.default is not dataclasses.MISSING else None
    choices = _literal_choices(f.name)
    if f.name in _PAIR_FIELDS:
        return _pairs(f.name, value)
    if f.name == "max_time" and not isinstance(value, bool) and isinstance(value, (int, float)):
        value = f"{value:g}"  # max_time = 5400 or --set max_time=5400: seconds
    if f.name == "gpus" and not isinstance(value, bool) and isinstance(value, (int, list)):
        value = ",".join(str(v) for v in (value if isinstance(value, list) else [value]))  # gpus = [0, 1] or --set gpus=0
    if choices is not None:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise TypeError(f"expected a whole number, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"expected a number, got {value!r}")
        try:
            return float(value)
        except OverflowError:
            raise ValueError(f"{value} is too large to be a number here") from None
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise TypeError(f"expected a list of names, got {value!r}")
        return tuple(value)
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {value!r} ({kind})")
    return value


_LITERALS = {"method": Method, "objective": Objective, "dpo_loss": DpoLoss, "scheduler": Scheduler, "optimizer": Optimizer, "dataset_format": DatasetFormat,
             "strategy": Strategy, "precision": Compute}


_PAIR_FIELDS = ("columns", "roles")
"""Tables of names in TOML (`{output = "response"}`, `{user = ["prompter"]}`), held as "key=name"
entries so the form and `--set` can write them as `output=response, input=context`."""


def _pairs(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, dict):
        entries = []
        for key, names in value.items():
            for item in names if isinstance(names, list) else [names]:
                if not isinstance(item, str):
                    raise TypeError(f"expected names as text, got {item!r} for {key!r}")
                entries.append(f"{key}={item}")
        return tuple(entries)
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and "=" in v for v in value):
        example = '{output = "response"}' if name == "columns" else '{user = ["prompter"]}'
        raise TypeError(f"expected a table such as {example} or key=name entries, got {value!r}")
    return tuple(v.strip() for v in value)


def _toml_table(entries: tuple[str, ...]) -> str:
    grouped: dict[str, list[str]] = {}
    for entry in entries:
        key, _, name = entry.partition("=")
        grouped.setdefault(key.strip(), []).append(name.strip())
    items = [f"{k if k.replace('_', '').isalnum() and k.isascii() else _toml_value(k)} = "
             f"{_toml_value(v if len(v) > 1 else v[0])}" for k, v in grouped.items()]
    return "{" + ", ".join(items) + "}"


def _literal_choices(name: str) -> tuple[str, ...] | None:
    literal = _LITERALS.get(name)
    return get_args(literal) if literal is not None else None


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def field_docs() -> dict[str, str]:
    """Each field's docstring, for form hints and `--help`."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(RunConfig))
    docs: dict[str, str] = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, nxt in itertools.pairwise(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs


__all__ = ["RunConfig", "ConfigError", "Problem", "QUANT_TYPES", "load_toml", "parse_gpus", "parse_set", "field_docs"]
