"""`train()`: everything before the loop, in the order that fails cheapest first.

Config checks, disk space, model resolution (gated, missing, offline), the GPU memory
estimate and dataset validation all run before the weights load, and each failure becomes a
TrainFailed with what to change instead of an exception.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.config.schema import ConfigError, RunConfig
from engine.data.types import PreparedData
from engine.events import Progress, TrainFailed
from engine.runs import read_config
from engine.train.checkpoint import choose_checkpoint
from engine.train.devices import select_gpu, training_environment
from engine.train.loop import Failure, Loaded, RunResult, run_loaded
from engine.train.methods import Precision, choose_precision
from engine.train.parallel import SINGLE, Ranks
from engine.train.preflight import PreflightError, check_fits, check_free_space, free_gpu_gib, planned_trainable
from engine.train.replay import replays

SHOWN_PROBLEMS = 5


def train_here(config: RunConfig, on_event: Callable[[Any], None], stop: threading.Event,
               resume: str | None = None, gpus: str | None = None, ranks: Ranks = SINGLE) -> RunResult:
    """Fine-tune in this process as `config` says, reporting through `on_event`; `stop.set()` ends
    it with a checkpoint. `engine.train.train` calls it, or starts one process per device that each do.

    With `resume` (a run directory or one of its checkpoints) the run continues in its own
    directory with the config saved there, so the numbers match an uninterrupted run; `gpus`
    moves it to other devices (`on_devices`).
    """
    report = ranks.report or on_event
    training_environment()
    try:
        if resume:
            config = saved_config(Path(resume), gpus)
        config.validate()
        # The strategy the processes run under, which `auto`, a resumed checkpoint or torchrun's
        # --strategy settled, is checked again: the config may not name it.
        refused = [p for p in config.strategy_problems(ranks.strategy) if p.level == "error"]
        if refused:
            raise ConfigError(refused)
        loaded, precision = _load(config, on_event, ranks)
    except Failure as failure:
        return refuse(report, failure.reason, failure.advice)
    except PreflightError as failure:
        return refuse(report, failure.reason, failure.advice)
    except ConfigError as exc:
        return refuse(report, f"the config has problems:\n{exc}", "fix the fields named above")
    return run_loaded(config, loaded, on_event, stop, resume=resume, precision=precision, ranks=ranks)


def saved_config(resume: Path, gpus: str | None = None) -> RunConfig:
    """The config of the checkpoint resume will use (the newest one that loads), on `gpus` when given."""
    choice = choose_checkpoint(resume)
    if choice.path is None:
        raise Failure(*choice.refusal(resume))
    config = read_config(choice.path)
    return config if gpus is None or gpus == config.gpus else on_devices(config, gpus)


def on_devices(config: RunConfig, gpus: str) -> RunConfig:
    """A checkpointed run moved to other devices, seeing the same examples at every step.

    A checkpoint of one process or of DDP holds whole weights and the optimizer state every one of
    them had, so any number of processes can take it up, as long as each step's batches split
    evenly: batch_size changes so that batch_size x processes stays what it was.
    """
    moved = config.replace(gpus=gpus)
    moved.validate()
    examples = config.batch_size * config.world_size
    if examples % moved.world_size:
        fitting = ", ".join(str(n) for n in range(1, examples + 1) if examples % n == 0)
        raise Failure(
            f"this run takes {examples} examples per forward pass ({config.batch_size} on each of "
            f"{config.world_size} process(es)), which do not split evenly across {moved.world_size}",
            f"resume on {fitting} process(es), so each step sees the same examples as before")
    return moved.replace(batch_size=examples // moved.world_size)


def _load(config: RunConfig, on_event: Callable[[Any], None], ranks: Ranks) -> tuple[Loaded, Precision]:
    from engine.models import ModelLoadError, load_causal_lm

    check_free_space(Path(config.output_dir), 0, config.method, 0)
    from engine.hardware.catalog import find

    listed = find(config.model)
    if listed is not None:  # before any download
        check_exportable(config, listed.architecture)
    resolved = _resolve(config, on_event)
    check_exportable(config, _model_type(Path(resolved.ref)))
    if resolved.spec is not None:
        trainable = planned_trainable(resolved.spec, config)
        check_free_space(Path(config.output_dir), trainable, config.method, resolved.spec.params)
        config.validate(context_length=resolved.spec.context)
    if resolved.prequantized_4bit and config.method != "qlora":
        base = resolved.spec.base_16bit if resolved.spec else None
        raise Failure(f"{config.model} holds 4-bit weights, which only method = qlora can train",
                      "set method = qlora" + (f", or model = {base!r} for {config.method}" if base else ""))
    precision = choose_precision(config.method, precision=config.precision)
    check_family_precision(resolved.spec.architecture if resolved.spec else _model_type(Path(resolved.ref)), precision)
    if ranks.strategy == "fsdp" and precision.loss_scaling:
        raise Failure("fsdp on GPUs without native bf16 trains in fp16 with loss scaling, and each process would "
                      "check only its own gradient shard for overflow, so the processes could skip different steps",
                      "use strategy = ddp, or GPUs with native bf16 (compute capability 8.0+)")
    if precision.device == "cuda" and ranks.world == 1:
        # Before the memory check, which asks the current GPU; several processes each see their own.
        on_event(Progress("gpu", 1, 1, message=select_gpu(config.gpus)))
    if precision.device == "cuda":
        check_fits(config.replace(strategy=ranks.strategy) if ranks.world > 1 else config, resolved.spec,
                   free_gpu_gib())
    tokenizer = _tokenizer(resolved)
    rl_prompts: tuple[Any, ...] = ()
    if config.objective == "grpo":  # answers are sampled from the policy itself: nothing to replay
        data, rl_prompts = _rl_data(config, tokenizer)
    else:
        data = _task_data(config, tokenizer, on_event)
        if replays(config):
            data = _with_replay(config, tokenizer, resolved.base_16bit_ref or resolved.ref, data, on_event)
        elif config.retention_mix > 0:
            on_event(Progress("data", 1, 1, message=f"retention_mix is not used by {config.objective}: a replayed "
                                                    "conversation has no rejected reply to pair with"))
    replayed = f" (+{data.replayed} replayed general conversations)" if data.replayed else ""
    on_event(Progress("data", 1, 1, message=f"{len(data.train) - data.replayed} training{replayed} and "
                                            f"{len(data.val)} validation examples"))

    def build_model(cfg: RunConfig, prec: Precision) -> Any:
        try:
            return load_causal_lm(resolved, load_in_4bit=cfg.method == "qlora", dtype=prec.load_dtype,
                                  device=prec.device, on_event=on_event)
        except ModelLoadError as exc:
            raise Failure(exc.reason, exc.advice) from None

    loaded = Loaded(build_model, tokenizer, data, resolved.ref, resolved.base_16bit_ref, resolved.spec, rl_prompts)
    return loaded, precision


def check_exportable(config: RunConfig, model_type: str | None) -> None:
    """Refuse, before training, a model no GGUF converter of ftui's handles, unless export_gguf = false."""
    from engine.export.to_gguf import exportable_model_types

    supported = exportable_model_types()
    if not config.export_gguf or model_type is None or model_type in supported:
        return
    raise Failure(f"GGUF export of {model_type} models is not supported (ftui exports {', '.join(supported)}), "
                  f"so {config.model} would train and then fail at export",
                  "set export_gguf = false to train and keep the HF weights (adapter and merged folder), "
                  "or pick a model of a supported architecture (`ftui models` lists the catalog's)")


FP16_OVERFLOWS = ("gemma3", "gemma3_text")
"""Families whose activations overflow fp16 (Gemma 3 was trained in bf16 and its hidden states pass
65504, fp16's largest value): loss scaling cannot help, the forward pass itself gives inf."""


def check_family_precision(model_type: str | None, precision: Precision) -> None:
    """Refuse fp16 training of a family that overflows it (on GPUs without bf16) before any weights load."""
    import torch

    if model_type in FP16_OVERFLOWS and precision.autocast_dtype == torch.float16:
        raise Failure(f"{model_type} models overflow fp16 (their activations pass its largest value, 65504), and "
                      "this GPU has no native bf16, so ftui would train in fp16",
                      "train on a GPU with bf16 (compute capability 8.0+: A100, L4, RTX 30xx or newer), or pick "
                      "another family, e.g. qwen3 or llama, which train in fp16 with loss scaling")


def _model_type(folder: Path) -> str | None:
    import json

    from engine.hardware.architectures import model_type_of

    try:
        return model_type_of(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def prepare_replay_once(config: RunConfig, on_event: Callable[[Any], None]) -> None:
    """Before several processes start: the base model's replay answers made once, here, and cached
    (engine/infer/base_answers.py), so no process exports the base GGUF and asks it again, and none
    waits for that while the others wait for it at their first collective. Raises Failure as
    train_here would."""
    if not replays(config) or config.retention_data:
        return
    resolved = _resolve(config, on_event)
    tokenizer = _tokenizer(resolved)
    _with_replay(config, tokenizer, resolved.base_16bit_ref or resolved.ref, _task_data(config, tokenizer, on_event),
                 on_event)


def _resolve(config: RunConfig, on_event: Callable[[Any], None]) -> Any:
    from engine.models import ModelLoadError, resolve_model

    try:
        return resolve_model(config.model, on_event=on_event, trust_remote_code=config.trust_remote_code)
    except ModelLoadError as exc:
        raise Failure(exc.reason, exc.advice) from None


def _tokenizer(resolved: Any) -> Any:
    from engine.models import ModelLoadError, load_tokenizer

    try:
        return load_tokenizer(resolved)
    except ModelLoadError as exc:
        raise Failure(exc.reason, exc.advice) from None


def _task_data(config: RunConfig, tokenizer: Any, on_event: Callable[[Any], None]) -> PreparedData:
    """The run's own examples, tokenized and split; the refusal names the rows to fix."""
    from engine.data import DatasetError, prepare

    try:
        data = prepare(config, tokenizer, on_event=on_event)
    except DatasetError as exc:
        problems = list(getattr(exc, "problems", []))
        shown = "\n".join(f"  {p}" for p in problems[:SHOWN_PROBLEMS])
        more = f"\n  ... and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
        summary = getattr(exc, "summary", "") or "it failed validation"
        raise Failure(f"the dataset cannot be used: {summary}\n{shown}{more}".rstrip(),
                      f"fix the rows named above (see `ftui data check {config.dataset}`), or raise "
                      f"max_bad_share (now {config.max_bad_share:g}) to skip them") from None
    if not data.train:
        raise Failure(f"the dataset {config.dataset} left no training examples",
                      "add rows, or lower val_split so some remain for training")
    return data


def _rl_data(config: RunConfig, tokenizer: Any) -> tuple[PreparedData, tuple[Any, ...]]:
    """GRPO's prompt rows; the refusal names the file and the rows to fix."""
    from engine.data import DatasetError
    from engine.data.rl_prompts import read_rl_prompts

    try:
        rl = read_rl_prompts(config, tokenizer)
    except DatasetError as exc:
        problems = list(getattr(exc, "problems", []))
        shown = "\n".join(f"  {p}" for p in problems[:SHOWN_PROBLEMS])
        summary = getattr(exc, "summary", "") or "it failed validation"
        raise Failure(f"the dataset cannot feed grpo: {summary}\n{shown}".rstrip(),
                      "give grpo a file of prompt rows ({\"prompt\": ...} or messages ending with a user turn, with an "
                      "optional \"expected\" answer), or train it with objective = sft") from None
    return rl.data, rl.prompts


def _with_replay(config: RunConfig, tokenizer: Any, base_ref: str, data: PreparedData,
                 on_event: Callable[[Any], None]) -> PreparedData:
    """The task's training examples plus the replayed general ones (validation stays the task's)."""
    from engine.data import DatasetError
    from engine.errors import ActionableError
    from engine.native.child import NativeCrash
    from engine.train.replay import replay_examples

    try:
        replay = replay_examples(config, tokenizer, base_ref, len(data.train), on_event)
    except NativeCrash as exc:
        raise Failure(f"the replay data for retention_mix = {config.retention_mix:g} cannot be made: {exc.reason}",
                      f"{exc.advice}; or set retention_mix = 0 to train without replay") from None
    except (DatasetError, ActionableError, OSError, ValueError) as exc:
        raise Failure(f"the replay data for retention_mix = {config.retention_mix:g} cannot be made: {exc}",
                      "fix retention_data, or set retention_mix = 0 to train without replay") from None
    if not replay.examples:
        return data
    return dataclasses.replace(data, train=data.train + replay.examples, replayed=len(replay.examples))


def refuse(on_event: Callable[[Any], None], reason: str, advice: str) -> RunResult:
    on_event(TrainFailed(reason, advice))
    return RunResult("failed", None, 0, None, None, None, reason, advice)
