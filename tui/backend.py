"""The engine as the app sees it: one typed Protocol whose methods the screens call.

`Backend` calls engine/ for real; the TUI tests pass a `FakeBackend` that implements the same
Protocol with scripted events. Both speak the engine's own types (HardwareReport, DataReport,
RunInfo, EvalReport, ...), so there is no view-type copy to drift, and a test checks that the
two implementations keep the Protocol's signatures. Every heavy engine module is imported
inside the method that needs it, so the first screen paints before torch loads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from engine.config.presets import Preset
from engine.config.schema import RunConfig
from engine.events import Event, EventSink, ignore

if TYPE_CHECKING:
    from engine.data import DataReport
    from engine.eval.evaluate import EvalReport
    from engine.export import ExportResult
    from engine.hardware.doctor import DoctorReport
    from engine.hardware.estimate import MemoryEstimate
    from engine.hardware.probe import HardwareReport
    from engine.hardware.recommend import Recommendation
    from engine.runqueue.store import Entry, Queue
    from engine.runs import GpuHolder, RunInfo
    from engine.runs.curves import Curves
    from engine.runs.forecast import Forecast
    from engine.sweep import SweepResult, Variant
    from engine.train import RunResult


class ChatLike(Protocol):
    notes: tuple[str, ...]
    """What loading the model chose and why (the CPU when the GPU is full), for the user to read."""
    max_tokens: int
    cut_short: bool
    """The last reply ran into max_tokens instead of ending its turn."""

    def send(self, text: str) -> Iterator[str]: ...
    def reset(self) -> None: ...
    def close(self) -> None: ...


class EngineBackend(Protocol):
    """What the screens may ask of the engine. Methods that take `on_event` and `stop` run in workers."""

    def probe(self) -> HardwareReport: ...
    def recommend(self, report: HardwareReport, family: str = "llama", output_dir: str = "runs") -> Recommendation: ...
    def doctor(self, output_dir: str, decode: bool = False) -> DoctorReport: ...
    def estimate(self, config: RunConfig) -> MemoryEstimate | None: ...
    def forecast(self, config: RunConfig, device: str) -> Forecast: ...
    def context_length(self, model: str) -> int | None: ...
    def presets(self) -> list[Preset]: ...
    def save_preset(self, config: RunConfig, name: str, description: str) -> Path: ...
    def check_dataset(self, config: RunConfig, on_event: EventSink = ignore) -> DataReport: ...
    def train(self, config: RunConfig, on_event: EventSink, stop: threading.Event,
              resume: str | None = None, leave: threading.Event | None = None) -> RunResult | None: ...
    def attach(self, run_dir: str, on_event: EventSink, stop: threading.Event,
               leave: threading.Event | None = None,
               on_backlog: Callable[[list[Event]], None] | None = None) -> RunResult | None: ...
    def sweep(self, variants: list[Variant], on_event: EventSink, stop: threading.Event,
              measure_retention: bool = False, leave: threading.Event | None = None) -> SweepResult: ...
    def gpu_holders(self, output_dir: str) -> list[GpuHolder]: ...
    def export(self, run_dir: str, quants: tuple[str, ...], on_event: EventSink,
               stop: threading.Event) -> ExportResult: ...
    def open_chat(self, gguf_path: str, system_prompt: str = "") -> ChatLike: ...
    def base_gguf_like(self, run_dir: str | None, model: str, tuned_gguf: str,
                       on_event: EventSink = ignore) -> tuple[str, str]: ...
    def evaluate(self, run_dir: str, on_event: EventSink = ignore) -> EvalReport: ...
    def list_runs(self, output_dir: str = "runs") -> list[RunInfo]: ...
    def run_info(self, run_dir: str) -> RunInfo: ...
    def run_config(self, run_dir: str) -> RunConfig: ...
    def run_events(self, run_dir: str) -> list[Event]: ...
    def run_curves(self, run_dir: str) -> Curves: ...
    def delete_run(self, run_dir: str) -> None: ...
    def queue(self, output_dir: str) -> Queue: ...
    def queue_add(self, config: RunConfig) -> Entry: ...
    def queue_move(self, output_dir: str, entry_id: str, position: int) -> None: ...
    def queue_cancel(self, output_dir: str, entry_id: str) -> Entry: ...
    def queue_pause(self, output_dir: str) -> None: ...
    def queue_start(self, output_dir: str) -> int: ...


class Backend:
    """Calls engine/ for real."""

    def probe(self) -> HardwareReport:
        from engine.hardware.probe import probe

        return probe()

    def recommend(self, report: HardwareReport, family: str = "llama", output_dir: str = "runs") -> Recommendation:
        """The plan for this machine within `family`, checked against the peak its newest finished run in
        output_dir measured (engine.runs.memory)."""
        from engine.hardware.recommend import recommend
        from engine.runs.memory import measured_memory

        return recommend(report, family=family,
                         measured=measured_memory(output_dir, "cuda" if report.gpus else "cpu"))

    def doctor(self, output_dir: str, decode: bool = False) -> DoctorReport:
        """The install's checks (engine/hardware/doctor.py), the llama.cpp decode too with `decode`, in a
        child process: they import torch and bitsandbytes, which this process never needs (the
        first screen stays light), and a native crash there is an error with words, not ftui's end."""
        from engine.hardware.doctor import check_install
        from engine.native.child import run_native

        return run_native("checking this install", check_install, output_dir, decode, library="ftui doctor",
                          advice="run `ftui doctor` in a terminal to see which check crashed")

    def estimate(self, config: RunConfig) -> MemoryEstimate | None:
        """Peak memory for this config (as preflight computes it), or None outside the catalog."""
        from engine.hardware.estimate import estimate_for

        return estimate_for(config)

    def forecast(self, config: RunConfig, device: str) -> Forecast:
        """The form's time and memory prediction from this machine's earlier runs (engine/runs/forecast.py).
        The dataset's lengths are read once per dataset, model and length limit, not per keystroke."""
        from engine.runs.forecast import example_lengths, forecast

        key = (config.dataset, config.dataset_format, config.dataset_split, config.model, config.max_seq_len,
               config.train_on_responses_only, config.columns, config.roles, config.messages_field, _mtime(config.dataset))
        cache: dict[tuple[Any, ...], list[int] | None] = self.__dict__.setdefault("_lengths", {})
        if key not in cache:
            cache[key] = example_lengths(config)
        return forecast(config, cache[key], device)

    def context_length(self, model: str) -> int | None:
        from engine.hardware.catalog import find

        spec = find(model)
        return spec.context if spec else None

    def presets(self) -> list[Preset]:
        from engine.config.presets import list_presets

        return list_presets()

    def save_preset(self, config: RunConfig, name: str, description: str) -> Path:
        from engine.config.presets import save_preset

        return save_preset(config, name, description)

    def check_dataset(self, config: RunConfig, on_event: EventSink = ignore) -> DataReport:
        from engine.data import check
        from engine.data.mapping import DataMapping
        from engine.models import load_tokenizer, resolve_model

        tokenizer = load_tokenizer(resolve_model(config.model, on_event, config.trust_remote_code))
        return check(config.dataset, config.dataset_format, tokenizer, config.max_seq_len,
                     max_bad_share=config.max_bad_share, train_on_responses_only=config.train_on_responses_only,
                     mapping=DataMapping.from_config(config), split=config.dataset_split)

    def train(self, config: RunConfig, on_event: EventSink, stop: threading.Event,
              resume: str | None = None, leave: threading.Event | None = None) -> RunResult | None:
        """The run in a process of its own, which closing ftui or losing the terminal does not
        stop, followed until it ends (its RunResult) or until `leave` is set (None)."""
        return _launch_and_follow(config, resume, on_event, stop, leave)

    def attach(self, run_dir: str, on_event: EventSink, stop: threading.Event,
               leave: threading.Event | None = None,
               on_backlog: Callable[[list[Event]], None] | None = None) -> RunResult | None:
        """A run another process trains: its events so far (to `on_backlog` in one list), then
        each new one, live, until it ends or `leave` is set."""
        from engine.train.detached import attach

        return attach(run_dir, on_event, stop, leave, on_backlog=on_backlog)

    def sweep(self, variants: list[Variant], on_event: EventSink, stop: threading.Event,
              measure_retention: bool = False, leave: threading.Event | None = None) -> SweepResult:
        """The variants one after another in a new sweep folder, each trained in a process of its
        own as `train` does, and followed from here: the engine's sweep has no process of its own,
        so leaving ftui (`leave`) lets the variant in training finish and starts no more."""
        from engine.sweep import new_sweep_folder, run_sweep

        def trainer(config: RunConfig, on_event: EventSink, stop: threading.Event) -> RunResult | None:
            if leave is not None and leave.is_set():
                return None
            return _launch_and_follow(config, None, on_event, stop, leave)

        first = variants[0].config
        folder = new_sweep_folder(first.output_dir, first.name)
        return run_sweep(variants, folder, on_event, stop, measure_retention, trainer)

    def gpu_holders(self, output_dir: str) -> list[GpuHolder]:
        """The live runs in output_dir that hold memory on a GPU, as NVML sees them."""
        from engine.runs import gpu_holders, list_runs

        live = [r for r in list_runs(output_dir) if r.status == "running"]
        if not live:
            return []
        from engine.hardware.probe import probe

        return gpu_holders(live, probe())

    def export(self, run_dir: str, quants: tuple[str, ...], on_event: EventSink,
               stop: threading.Event) -> ExportResult:
        from engine.export import export

        return export(run_dir, quants=quants, on_event=on_event, stop=stop)

    def open_chat(self, gguf_path: str, system_prompt: str = "") -> ChatLike:
        from engine.infer.chat import ChatSession

        return ChatSession(gguf_path, system_prompt=system_prompt)

    def base_gguf_like(self, run_dir: str | None, model: str, tuned_gguf: str,
                       on_event: EventSink = ignore) -> tuple[str, str]:
        """The untuned base's GGUF at the tuned file's type, made and cached when absent, and that type."""
        from engine.infer.base_answers import base_gguf_like, base_ref_of

        path, quant = base_gguf_like(tuned_gguf, base_ref_of(run_dir, model), on_event)
        return str(path), quant

    def evaluate(self, run_dir: str, on_event: EventSink = ignore) -> EvalReport:
        from engine.eval.evaluate import evaluate

        return evaluate(run_dir, on_event)

    def list_runs(self, output_dir: str = "runs") -> list[RunInfo]:
        from engine.runs import list_runs

        return list_runs(output_dir)

    def run_info(self, run_dir: str) -> RunInfo:
        """One run as the runs screen lists it: its status and what it left (its GGUFs, whether verified)."""
        from engine.runs import read_run

        return read_run(run_dir)

    def run_config(self, run_dir: str) -> RunConfig:
        from engine.runs import read_config

        return read_config(run_dir)

    def run_events(self, run_dir: str) -> list[Event]:
        """The events a run logged, read back from metrics.jsonl, to redraw its charts."""
        from engine.runs import read_events

        return read_events(run_dir)

    def run_curves(self, run_dir: str) -> Curves:
        from engine.runs.curves import run_curves

        return run_curves(run_dir)

    def delete_run(self, run_dir: str) -> None:
        from engine.runs import delete_run

        delete_run(run_dir)

    def queue(self, output_dir: str) -> Queue:
        """The output folder's run queue (engine/runqueue): what waits, trains and ended."""
        from engine.runqueue.store import read_queue

        return read_queue(output_dir)

    def queue_add(self, config: RunConfig) -> Entry:
        """Queue the run at the end and start the queue's runner, a process that outlives ftui."""
        from engine.runqueue.runner import start_runner
        from engine.runqueue.store import add

        entry = add(config.output_dir, [(config.name, config)])[0]
        start_runner(config.output_dir)
        return entry

    def queue_move(self, output_dir: str, entry_id: str, position: int) -> None:
        from engine.runqueue.store import move

        move(output_dir, entry_id, position)

    def queue_cancel(self, output_dir: str, entry_id: str) -> Entry:
        from engine.runqueue.store import cancel

        return cancel(output_dir, entry_id)

    def queue_pause(self, output_dir: str) -> None:
        from engine.runqueue.store import pause

        pause(output_dir)

    def queue_start(self, output_dir: str) -> int:
        from engine.runqueue.runner import start_runner

        return start_runner(output_dir)


def _mtime(path: str) -> float | None:
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return None


def _launch_and_follow(config: RunConfig, resume: str | None, on_event: EventSink, stop: threading.Event,
                       leave: threading.Event | None) -> RunResult | None:
    from engine.events import TrainFailed
    from engine.train import RunResult
    from engine.train.detached import follow_launch, launch

    try:
        started = launch(config, resume)
    except OSError as exc:
        reason = f"could not start the training process: {exc.strerror or exc}"
        on_event(TrainFailed(reason, "check that output_dir is a folder you can write to"))
        return RunResult("failed", None, 0, None, None, None, reason)
    return follow_launch(started, on_event, stop, leave)
