"""The training loop: a lean loop from library parts, fed prepared data and a model builder.

Measured on 2 CPU cores with SmolLM2-135M, a plain loop beat transformers.Trainer and TRL's
SFTTrainer per step, so the loop is ours and the parts are the libraries': peft adapters,
`transformers.get_scheduler`, `torch.autocast` + `GradScaler`, torch or bitsandbytes AdamW.

Split as torchtune's recipes are: `engine.train.setup` builds the parts, `engine.train.resume`
restores a checkpoint's counters, `engine.train.step` does one optimizer step and the held-out
loss; this module runs the steps, evaluates, saves, and turns every outcome (an OOM retry
included) into events and a RunResult.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import resource
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from shlex import quote
from typing import Any

from engine.config.schema import RunConfig, parse_duration
from engine.data.rl_prompts import RlPrompt
from engine.data.types import PreparedData, TokenizedExample
from engine.errors import ActionableError
from engine.events import (
    CheckpointSaved,
    Diagnosis,
    EvalLogged,
    Progress,
    StepLogged,
    TrainFailed,
    TrainFinished,
    TrainStarted,
)
from engine.files.control import UnsafeFile
from engine.files.disk_full import is_disk_full
from engine.hardware.catalog import ModelSpec
from engine.hardware.sampler import GpuSample, GpuSampler
from engine.runs import RunDir, complete_checkpoints, tokenizer_dir
from engine.runs.live import RunBusy
from engine.runs.speed import Prediction, predict
from engine.runs.writer import PeerRun
from engine.train.checkpoint import (
    CheckpointChoice,
    CheckpointError,
    choose_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    save_tokenizer,
    save_weights,
)
from engine.train.devices import cuda_uuids
from engine.train.grpo import GrpoRun
from engine.train.methods import Precision, choose_precision
from engine.train.notify import notifying
from engine.train.objectives import step_units
from engine.train.parallel import SINGLE, Ranks, whole_optimizer, whole_weights
from engine.train.preflight import PreflightError, suggest_smaller
from engine.train.resume import Counters, restore
from engine.train.rewards import RewardError
from engine.train.sampling import generator_state, set_generator_state
from engine.train.setup import TrainingSetup, set_up
from engine.train.step import OutOfMemory, StepStats, evaluate_held_out, optimizer_step
from engine.train.tracking import TrackerError, tracking


@dataclass(frozen=True)
class RunResult:
    status: str
    """"finished", "stopped" or "failed"."""
    run_dir: str | None
    steps: int
    final_loss: float | None
    best_val_loss: float | None
    adapter_dir: str | None
    reason: str
    advice: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "failed"


def result_of(end: TrainFinished | TrainFailed | None, run_dir: str | None) -> RunResult | None:
    """The RunResult a followed run's last event describes."""
    if isinstance(end, TrainFinished):
        return RunResult("stopped" if end.stopped else "finished", end.run_dir, end.steps, end.final_loss,
                         end.best_val_loss, end.adapter_dir, end.reason)
    if isinstance(end, TrainFailed):
        return RunResult("failed", run_dir, end.step or 0, None, None, None, end.reason, end.advice)
    return None


@dataclass(frozen=True)
class Loaded:
    """What the loop needs once models and data are resolved, so tests can hand it tiny ones."""

    build_model: Callable[[RunConfig, Precision], Any]
    """A fresh base model on the device, before the method is applied (called again on an OOM retry)."""
    tokenizer: Any
    data: PreparedData
    model_ref: str
    base_model_ref: str | None = None
    spec: ModelSpec | None = None
    rl_prompts: tuple[RlPrompt, ...] = ()
    """GRPO's prompt rows, in the order of `data.train` (engine.data.rl_prompts)."""


class Failure(ActionableError):
    """Ends the run with TrainFailed(reason, advice) at `step`."""

    def __init__(self, reason: str, advice: str, step: int | None = None):
        super().__init__(reason, advice)
        self.step = step


def run_loaded(config: RunConfig, loaded: Loaded, on_event: Callable[[Any], None], stop: threading.Event,
               resume: str | None = None, precision: Precision | None = None, ranks: Ranks = SINGLE) -> RunResult:
    """Train on already loaded data; every outcome is an event and a RunResult, never an exception.

    On several processes (`ranks`) each one calls this; rank 0 creates or reopens the run directory
    and the others learn its path from it (engine.train.parallel).
    """
    precision = precision or choose_precision(config.method, precision=config.precision)
    checkpoint = None
    if resume:
        choice = choose_checkpoint(Path(resume))
        checkpoint = choice.path
        if checkpoint is None:
            return _fail_early(on_event, Failure(*choice.refusal(resume)), ranks)
    if not ranks.main:
        run: RunDir = PeerRun(Path(ranks.share("")), config)
    elif checkpoint is not None:
        try:
            run = RunDir.reopen(checkpoint.parent.parent, config)
        except (RunBusy, UnsafeFile) as busy:  # before truncate_metrics: the other writer's lines stay
            return _fail_early(on_event, Failure(busy.reason, busy.advice), ranks)
        run.truncate_metrics(int(checkpoint.name.split("-")[1]))
        _report_skipped(run, on_event, choice)
        ranks.share(str(run.path))
    else:
        run = RunDir.create(config, loaded.model_ref, loaded.base_model_ref)
        ranks.share(str(run.path))
    with run.live(stop), contextlib.ExitStack() as trackers:
        if ranks.main:  # one message per run, from the process that writes run.json
            notifier = trackers.enter_context(notifying(config, run.path))
            on_event = notifier.feeding(on_event) if notifier is not None else on_event
        try:
            track = trackers.enter_context(tracking(config if ranks.main else config.replace(report_to=()), run.path))
        except TrackerError as exc:
            return _failed(run, on_event, Failure(
                f"report_to: {exc}", "fix the tracker's setup (WANDB_MODE, MLFLOW_TRACKING_URI, ...) or take it out of "
                "report_to; metrics.jsonl records the same figures"), ranks)
        # Trackers are one more consumer of the run's events (engine/train/tracking.py).
        return _attempts(config, loaded, run, track.feeding(on_event), stop, checkpoint, precision, ranks)


def _attempts(config: RunConfig, loaded: Loaded, run: RunDir, on_event: Callable[[Any], None],
              stop: threading.Event, checkpoint: Path | None, precision: Precision, ranks: Ranks) -> RunResult:
    """The run, retried once at half the batch after an out-of-memory error when oom_retry is on."""

    def emit(event: Any) -> None:
        try:
            run.append_event(event)
        finally:
            on_event(event)  # shown even when a full disk keeps it out of metrics.jsonl

    attempt = config
    while True:
        try:
            result = _fit(attempt, loaded, run, emit, stop, checkpoint, precision, ranks)
        except OutOfMemory as oom:
            # The traceback holds the failed attempt's frames, and with them its model and gradients.
            oom.__traceback__ = oom.__context__ = None
            gc.collect()
            _empty_cuda_cache()
            # One process alone can retry: the others would wait for it inside the step.
            # A smaller batch leaves the optimizer's states as large as they were: no retry for those.
            if (config.oom_retry and attempt is config and attempt.batch_size > 1 and ranks.world == 1
                    and oom.where != "optimizer"):
                attempt = attempt.replace(batch_size=attempt.batch_size // 2, grad_accum=attempt.grad_accum * 2)
                emit(Progress("oom-retry", 0, None, message=(
                    f"out of memory at batch_size {oom.batch_size}, sequence length {oom.seq_len}; "
                    f"retrying with batch_size {attempt.batch_size} and grad_accum {attempt.grad_accum}")))
                run.truncate_metrics(int(checkpoint.name.split("-")[1]) if checkpoint else 0)
                run.write_config(attempt)
                continue
            result = _failed(run, emit, _oom_failure(attempt, loaded.spec, oom), ranks)
        except Failure as failure:
            result = _failed(run, emit, failure, ranks)
        except (PreflightError, CheckpointError) as failure:
            result = _failed(run, emit, Failure(failure.reason, failure.advice), ranks)
        except Exception as exc:  # noqa: BLE001 - the worker thread must report, not die
            if is_disk_full(exc):
                return _failed(run, emit, _disk_full(run, None), ranks)
            if _is_cuda_oom(exc):
                exc.__traceback__ = None  # it holds the attempt's frames, and with them its tensors
                return _failed(run, emit, _oom_outside_a_step(), ranks)
            log = run.path / ("error.log" if ranks.main else f"error.rank{ranks.rank}.log")
            log.write_text(traceback.format_exc(), encoding="utf-8")
            result = _failed(run, emit, Failure(
                f"unexpected error: {type(exc).__name__}: {exc}", f"the traceback is in {log}; please report it"), ranks)
        return result


def _fit(config: RunConfig, loaded: Loaded, run: RunDir, emit: Callable[[Any], None], stop: threading.Event,
         checkpoint: Path | None, precision: Precision, ranks: Ranks) -> RunResult:
    """One attempt: set up, then train; what the setup changed in the process is put back however it ends."""
    parts = set_up(config, loaded.build_model, loaded.data.train, loaded.tokenizer, run.path, precision, emit, ranks,
                   loaded.data.val)
    gpu = open_run_gpu(precision.device)
    try:
        return _train(config, loaded, parts, run, emit, stop, checkpoint, ranks, gpu)
    finally:
        if gpu is not None:
            gpu.close()
        parts.release()


def _train(config: RunConfig, loaded: Loaded, parts: TrainingSetup, run: RunDir, emit: Callable[[Any], None],
           stop: threading.Event, checkpoint: Path | None, ranks: Ranks, gpu: GpuSampler | None = None) -> RunResult:
    """Restore, then step, evaluate and save until done, stopped or failed."""
    train_set, val_set = loaded.data.train, loaded.data.val
    precision = parts.precision
    counters, grpo = _begin(config, loaded, parts, run, emit, checkpoint, ranks)
    schedule, start = parts.schedule, counters.start
    total_steps = schedule.total_steps

    parts.model.train()
    began = time.monotonic()
    budget = parse_duration(config.max_time) if config.max_time else None
    loss = float("nan")
    stopped_reason = ""
    step = start
    for step in range(start + 1, total_steps + 1):
        t0 = time.monotonic()
        out_of_time = step < total_steps and _out_of_time(budget, t0 - began, step - 1 - start)
        stats, asked, rewarded = _take_step(config, parts, train_set, grpo, counters, ranks, step,
                                            stop.is_set() or out_of_time)
        loss = stats.loss
        diagnosis = parts.diagnoser.on_step(step, loss)
        if diagnosis is not None:
            emit(diagnosis)
            raise Failure(diagnosis.message, diagnosis.advice, step)
        now = time.monotonic()
        elapsed = now - began
        sample = gpu.sample() if gpu is not None else GpuSample(None, None)
        emit(StepLogged(
            step=step, total_steps=total_steps, epoch=round(schedule.epoch_at(step), 4), loss=loss, lr=stats.lr,
            grad_norm=stats.grad_norm, tokens_per_s=stats.tokens / max(now - t0, 1e-9), elapsed_s=elapsed,
            eta_s=elapsed / (step - start) * (total_steps - step), peak_mem_gib=_peak_mem_gib(precision.device),
            gpu_used_gib=sample.used_gib, gpu_util=sample.util_percent, metrics=stats.metrics,
        ))
        if rewarded is not None:
            emit(rewarded)

        # GRPO has no held-out loss: its rewards are what it learns, and its loss hovers near 0 by design.
        stopped_reason = _evaluate(config, parts, counters, run, emit, step, val_set) if grpo is None else ""
        if ((stop.is_set() or out_of_time) if asked is None else asked) and not stopped_reason:
            stopped_reason = (f"the {config.max_time} time budget was spent at step {step}" if out_of_time
                              else f"stopped on request at step {step}")
        run.write_status(step=step, best_val_loss=counters.best)
        if stopped_reason:
            _save(run, parts, counters, emit, step, "stop")
            break
        if step % config.save_interval == 0 and step != total_steps:
            _save(run, parts, counters, emit, step, "interval")
    else:
        if step > start:
            _save(run, parts, counters, emit, step, "final")
    return _finish(config, parts, counters, run, emit, step, loss, stopped_reason)


def _begin(config: RunConfig, loaded: Loaded, parts: TrainingSetup, run: RunDir, emit: Callable[[Any], None],
           checkpoint: Path | None, ranks: Ranks) -> tuple[Counters, GrpoRun | None]:
    """Restore the checkpoint's counters, keep the tokenizer beside the run and announce it (TrainStarted):
    its size, its device and how long it is predicted to take."""
    counters = restore(checkpoint, parts) if checkpoint is not None else Counters()
    schedule, start = parts.schedule, counters.start
    total_steps = schedule.total_steps
    if ranks.main and not tokenizer_dir(run.path).exists():
        save_tokenizer(run, loaded.tokenizer)
    run.write_status(total_steps=total_steps, step=start)
    grpo = _grpo_run(config, loaded, parts, counters)
    device = _device_label(parts.precision, ranks)
    planned = sum(schedule.lengths[i] for step in range(start + 1, total_steps + 1) for i in schedule.step_examples(step))
    predicted = (Prediction(None, "no time prediction for grpo: its steps are mostly sampling, unlike the runs "
                              "speeds are measured from") if grpo is not None
                 else predict(config.output_dir, config.model, config.method, device, planned) if ranks.main
                 else Prediction(None, ""))
    emit(TrainStarted(
        run_dir=str(run.path), total_steps=total_steps, epochs=schedule.epoch_at(total_steps),
        train_examples=len(loaded.data.train), val_examples=len(loaded.data.val), trainable_params=parts.trainable,
        total_params=parts.total, device=device, pad_share=schedule.planned_pad_share(), start_step=start,
        planned_tokens=planned, predicted_s=predicted.seconds, prediction=predicted.text,
    ))
    return counters, grpo


def _take_step(config: RunConfig, parts: TrainingSetup, train_set: tuple[TokenizedExample, ...], grpo: GrpoRun | None,
               counters: Counters, ranks: Ranks, step: int, stopping: bool) -> tuple[StepStats, bool | None, Any]:
    """One optimizer step as the objective takes it: GRPO samples and scores, one process trains its micro-batches,
    several share the step. Returns its stats, whether any process was asked to stop (None when there is only
    this one) and GRPO's rewards event (None for the other objectives)."""
    if grpo is not None:
        stats, rewarded = _grpo_step(grpo, parts, train_set, step, config.max_grad_norm)
        counters.sampling_rng = generator_state(grpo.generator)
        return stats, None, rewarded
    if ranks.world == 1:
        micro = [[train_set[i] for i in b] for b in parts.schedule.step_batches(step)]
        return (parts.objective.step or optimizer_step)(parts, micro, step, config.max_grad_norm), None, None
    stats, asked = _shared_step(parts, train_set, step, config.max_grad_norm, stopping)
    return stats, asked, None


def _grpo_run(config: RunConfig, loaded: Loaded, parts: TrainingSetup, counters: Counters) -> GrpoRun | None:
    """GRPO's rewards (a reward_file is imported now) and sampling stream, continued from a checkpoint's."""
    if config.objective != "grpo":
        return None
    try:
        grpo = GrpoRun.start(config, loaded.rl_prompts, loaded.tokenizer, parts.model)
    except RewardError as exc:
        raise Failure(exc.reason, exc.advice) from None
    if counters.sampling_rng is not None:
        set_generator_state(grpo.generator, counters.sampling_rng)
    return grpo


def _grpo_step(grpo: GrpoRun, parts: TrainingSetup, train_set: tuple[TokenizedExample, ...], step: int,
               max_grad_norm: float) -> tuple[StepStats, Any]:
    try:
        return grpo.step(parts, parts.schedule.step_batches(step), train_set, step, max_grad_norm)
    except RewardError as exc:
        raise Failure(exc.reason, exc.advice, step) from None


def _out_of_time(budget: float | None, elapsed: float, steps_done: int) -> bool:
    """Whether the step about to start should be this session's last: at the pace so far
    (evaluations and checkpoints included), the one after it would end past the budget. Decided
    before the step so that several processes agree on it with the stop request."""
    if budget is None or steps_done < 1:
        return False
    return elapsed + 2 * elapsed / steps_done > budget


def _shared_step(parts: TrainingSetup, train_set: tuple[TokenizedExample, ...], step: int, max_grad_norm: float,
                 stop: bool) -> tuple[StepStats, bool]:
    """This process's share of the step, then the step's loss and tokens over every process and
    whether any was asked to stop."""
    schedule, ranks = parts.schedule, parts.ranks
    mine = schedule.step_batches(step, ranks.rank)
    everyone = schedule.step_examples(step)
    n_trained = step_units(parts.objective, [train_set[i] for i in everyone])
    # Every FSDP forward gathers weights from all processes, so all run as many as the busiest; a
    # DDP process syncs once per step and needs one backward even with no example of its own.
    passes = (max(len(schedule.step_batches(step, r)) for r in range(ranks.world)) if ranks.strategy == "fsdp"
              else max(1, len(mine)))
    micro = [[train_set[i] for i in b] for b in mine] + [[train_set[everyone[0]]]] * (passes - len(mine))
    stats = optimizer_step(parts, micro, step, max_grad_norm, n_trained, padding=passes - len(mine))
    units = max(n_trained, 1)
    loss_sum, tokens, asked, sums = ranks.agree(stats.loss * units, stats.tokens, stop,
                                                tuple(v * units for v in stats.metrics.values()))
    metrics = {name: value / units for name, value in zip(stats.metrics, sums, strict=True)}
    return dataclasses.replace(stats, loss=loss_sum / units, tokens=tokens, metrics=metrics), asked


def _evaluate(config: RunConfig, parts: TrainingSetup, counters: Counters, run: RunDir,
              emit: Callable[[Any], None], step: int, val_set: tuple[TokenizedExample, ...]) -> str:
    """At an eval step: the held-out loss, the best weights kept, and why to stop early ("" to go on).

    Without a validation split, only the flat-loss diagnosis runs at the same interval.
    """
    diagnoser, total_steps = parts.diagnoser, parts.schedule.total_steps
    if not val_set:
        diagnosis = diagnoser.check_flat(step) if step % config.eval_interval == 0 else None
        if diagnosis is not None:
            emit(diagnosis)
        return ""
    if not (step % config.eval_interval == 0 or step == total_steps):
        return ""
    model = parts.model
    try:
        val_loss, val_metrics = evaluate_held_out(model, val_set, config.batch_size, parts.pad_id, parts.precision,
                                                  parts.fast, parts.loss, parts.objective)
    except OutOfMemory as oom:
        oom.step = step
        raise
    val_loss = parts.ranks.same(val_loss)
    model.train()
    if counters.best is None or val_loss < counters.best:
        counters.best, counters.bad_evals, counters.best_step = val_loss, 0, step
        path = _save_weights(run, parts, config.method, step)
        emit(EvalLogged(step, val_loss, counters.best, val_metrics))
        emit(CheckpointSaved(step, str(path), "best"))
    else:
        counters.bad_evals += 1
        emit(EvalLogged(step, val_loss, counters.best, val_metrics))
    diagnosis = diagnoser.on_eval(step, val_loss)
    if diagnosis is not None:
        emit(diagnosis)
    if config.early_stopping_patience and counters.bad_evals >= config.early_stopping_patience:
        return (f"early stopping: no better validation loss in {counters.bad_evals} evaluations; "
                f"adapter kept from step {counters.best_step} (val loss {counters.best:.4f})")
    return ""


def _save(run: RunDir, parts: TrainingSetup, counters: Counters, emit: Callable[[Any], None], step: int,
          reason: str) -> None:
    """A resumable checkpoint of step `step`: trainable weights, optimizer, scheduler, RNG and counters."""
    ranks = parts.ranks
    weights, optimizer = whole_weights(parts.model, ranks), whole_optimizer(parts.model, parts.optimizer, ranks)
    if weights is None or optimizer is None:
        return  # not rank 0
    state = {**counters.to_state(parts.diagnoser), "processes": ranks.world, "strategy": ranks.strategy}
    path = _writing(step, run, lambda: save_checkpoint(run, step, weights, optimizer, parts.scheduler, parts.scaler,
                                                       state))
    emit(CheckpointSaved(step, str(path), reason))
    prune_checkpoints(run.path, run.config.keep_checkpoints, protect=counters.best_step)


def _finish(config: RunConfig, parts: TrainingSetup, counters: Counters, run: RunDir, emit: Callable[[Any], None],
            step: int, loss: float, stopped_reason: str) -> RunResult:
    """The final weights (unless the best evaluation already wrote them), the run status and TrainFinished."""
    weights = run.path / ("model" if config.method == "full" else "adapter")
    # Rank 0's view of the folder decides, since under FSDP every process must join the gathering.
    if parts.ranks.same(float(counters.best is None or not weights.exists())):
        path = _save_weights(run, parts, config.method, step)
        emit(CheckpointSaved(step, str(path), "final"))
    adapter_dir = str(weights)
    status = "stopped" if stopped_reason else "finished"
    reason = stopped_reason or f"finished {step} steps"
    best = counters.best
    run.write_status(status=status, step=step, best_val_loss=best, reason=reason)
    emit(TrainFinished(str(run.path), step, loss, best, adapter_dir, bool(stopped_reason), reason))
    return RunResult(status, str(run.path), step, loss, best, adapter_dir, reason)


def _save_weights(run: RunDir, parts: TrainingSetup, method: str, step: int) -> Path:
    """The adapter (or model) of rank 0; under FSDP gathered from every process first."""
    whole = whole_weights(parts.model, parts.ranks) if parts.ranks.strategy == "fsdp" else None
    if not parts.ranks.main:
        return run.path
    return _writing(step, run, lambda: save_weights(run, parts.model, method, whole))


def _device_label(precision: Precision, ranks: Ranks) -> str:
    if ranks.world == 1:
        return precision.label
    return f"{precision.label}, {ranks.world} processes ({ranks.strategy.upper()})"


def open_run_gpu(device: str) -> GpuSampler | None:
    """NVML's view of the GPU this process computes on (torch's current device), or None on the CPU."""
    if device != "cuda":
        return None
    import torch

    uuids = cuda_uuids()
    index = torch.cuda.current_device()
    return GpuSampler.open(f"GPU-{uuids[index]}") if index < len(uuids) else None


def _peak_mem_gib(device: str) -> float:
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _writing(step: int, run: RunDir, write: Callable[[], Path]) -> Path:
    try:
        return write()
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        raise _disk_full(run, step) from None


def _disk_full(run: RunDir, step: int | None) -> Failure:
    """What a full disk cost: where the write went, and the checkpoint a resume starts from."""
    last = complete_checkpoints(run.path)
    kept = f"; the last complete checkpoint is {last[-1]}" if last else "; no checkpoint was complete yet"
    what = f"writing step {step}" if step is not None else "writing"
    then = f"then resume with `ftui train --resume {quote(str(run.path))}`" if last else "then train again"
    return Failure(f"the disk is full: {what} to {run.path} failed{kept}",
                   f"free disk space there (or set output_dir elsewhere), {then}; a larger "
                   "save_interval writes fewer checkpoints", step)


def _oom_failure(config: RunConfig, spec: ModelSpec | None, oom: OutOfMemory) -> Failure:
    if oom.where == "optimizer":
        smaller = [] if config.optimizer != "adamw" else ["optimizer = adamw_8bit (a quarter of AdamW's states)"]
        smaller.append("method = lora instead of full fine-tuning" if config.method == "full" else
                       f"a lower lora_r (now {config.lora_r}) or fewer target_modules")
        return Failure(
            f"the GPU ran out of memory at step {oom.step} in the optimizer step (clipping the gradients and "
            "updating the weights), after every forward and backward of the step fit; AdamW creates its two states "
            "per trained weight at the first step",
            f"train with smaller optimizer states: {' or '.join(smaller)}, or free GPU memory (`ftui hardware` "
            "lists what holds it); a smaller batch does not shrink them", oom.step)
    suggestion = suggest_smaller(config, spec, oom.batch_size, oom.seq_len, _free_gpu_after_oom())
    retry = "" if config.oom_retry else " (or set oom_retry = true to retry once at half the batch automatically)"
    if oom.where == "evaluation":
        return Failure(
            f"the GPU ran out of memory evaluating at step {oom.step}: a validation batch of {oom.batch_size} "
            f"examples padded to {oom.seq_len} tokens (validation runs at batch_size, max_seq_len "
            f"{config.max_seq_len})", suggestion + retry, oom.step)
    return Failure(
        f"the GPU ran out of memory at step {oom.step} with batch_size {oom.batch_size} and a "
        f"{oom.seq_len}-token sequence (max_seq_len {config.max_seq_len})",
        suggestion + retry, oom.step)


def _is_cuda_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError)


def _oom_outside_a_step() -> Failure:
    """CUDA out of memory while the run sets itself up: the adapters or optimizer on the GPU, the
    sharding, a checkpoint's state (the model's own move is the loader's ModelLoadError)."""
    free = _free_gpu_after_oom()
    held = f"; {free:.1f} GiB of the GPU is free now" if free is not None else ""
    return Failure(
        "the GPU ran out of memory before the first step, while the run set up its adapters, optimizer or "
        f"checkpoint state on it{held}",
        "free GPU memory (`ftui hardware` lists what holds it), or train a smaller setting: method = qlora, a "
        "smaller model, or a lower lora_r")


def _free_gpu_after_oom() -> float | None:
    """Free memory once this run's tensors are gone: the whole card minus what others hold."""
    from engine.train.preflight import free_gpu_gib

    _empty_cuda_cache()
    return free_gpu_gib()


def _failed(run: RunDir, emit: Callable[[Any], None], failure: Failure, ranks: Ranks = SINGLE) -> RunResult:
    if ranks.report is not None:
        # The launcher writes the failure of whichever process failed first: the others' follow from it.
        ranks.report(TrainFailed(failure.reason, failure.advice, failure.step))
    else:
        # On a full disk run.json or metrics.jsonl may not take the failure; emit shows it regardless.
        with contextlib.suppress(OSError):
            run.write_status(status="failed", reason=failure.reason)
        with contextlib.suppress(OSError):
            emit(TrainFailed(failure.reason, failure.advice, failure.step))
    return RunResult("failed", str(run.path), failure.step or 0, None, run.record.best_val_loss,
                     None, failure.reason, failure.advice)


def _fail_early(on_event: Callable[[Any], None], failure: Failure, ranks: Ranks = SINGLE) -> RunResult:
    (ranks.report or on_event)(TrainFailed(failure.reason, failure.advice, failure.step))
    return RunResult("failed", None, 0, None, None, None, failure.reason, failure.advice)


def _report_skipped(run: RunDir, on_event: Callable[[Any], None], choice: CheckpointChoice) -> None:
    """Name each damaged newer checkpoint resume passed over, in the run's log and to the watcher."""
    if choice.path is None:
        return
    step = int(choice.path.name.split("-")[1])
    for skipped, why in choice.skipped:
        notice = Diagnosis(step, "checkpoint", f"skipped checkpoints/{skipped.name}: {why}; resuming from step {step}",
                           f"the steps after {step} are trained again; {skipped.name} is replaced when the run "
                           "saves that step")
        run.append_event(notice)
        on_event(notice)
