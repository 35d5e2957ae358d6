"""A scripted engine for the TUI tests: it implements tui.backend.EngineBackend, emitting the
engine's real event types, with switches for the failures a user can meet (OOM, bad data,
stop, resume). Every result is the engine's own dataclass (HardwareReport, DataReport, RunInfo,
EvalReport, ...), and tests/tui/test_backend_protocol.py fails when a signature drifts."""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from engine.config.presets import Preset, list_presets, save_preset
from engine.config.schema import RunConfig
from engine.data import DataReport, Segment
from engine.data.check import _percentiles
from engine.data.types import DataProblem
from engine.errors import ActionableError
from engine.eval.evaluate import EvalItem, EvalReport, RetentionReport
from engine.eval.retention import ExactRetention, RetentionFinding
from engine.events import (
    CheckpointSaved,
    Diagnosis,
    EvalLogged,
    Event,
    EventSink,
    ExportFileWritten,
    ExportFinished,
    ExportVerified,
    Progress,
    RewardLogged,
    StepLogged,
    TrainFailed,
    TrainFinished,
    TrainStarted,
    ignore,
)
from engine.export import ExportResult
from engine.hardware.catalog import find
from engine.hardware.doctor import Check, DoctorReport
from engine.hardware.estimate import MemoryEstimate
from engine.hardware.probe import GpuInfo, GpuProcess, HardwareReport, _cpu_report
from engine.hardware.recommend import Recommendation
from engine.native.child import NativeCrash
from engine.runqueue.store import Entry, add
from engine.runs import GpuHolder, RunInfo
from engine.runs.curves import Curves, curves_of
from engine.runs.forecast import Forecast, forecast
from engine.sweep import SweepResult, Variant, run_sweep
from engine.train import RunResult
from tui.backend import Backend, EngineBackend

RTX_4070 = GpuInfo(0, "NVIDIA GeForce RTX 4070", 12.0, 10.5, 1.5, (8, 9), True,
                   (GpuProcess(1234, "Xorg", 0.4),))
BASE_GIB = {"smollm2-135m": 0.3, "llama-3.2-1b": 2.5, "llama-3.2-3b": 6.5, "llama-3.1-8b": 16.0}
METHOD_SHARE = {"lora": 1.0, "dora": 1.1, "qlora": 0.35, "full": 4.0}


class FakeChat:
    def __init__(self, path: str, system_prompt: str) -> None:
        self.path = path
        self.system_prompt = system_prompt
        self.history: list[str] = []
        self.closed = False
        self.notes: tuple[str, ...] = ("the GPU could not hold it, so it runs on the CPU",) if "busy" in path else ()
        self.max_tokens = 256
        self.cut_short = False

    def send(self, text: str) -> Iterator[str]:
        self.history.append(text)
        self.cut_short = "long" in text  # a question that asks for more than max_tokens
        tag = "base" if "base" in self.path else "tuned"
        if "think" in text:  # a thinking model (Qwen3): its reasoning first, the tags split over pieces
            yield from ["<think>\nThe user wants", " a docker command.\n</th", "ink>\n\n"]
        for word in f"[{tag}] Run: `docker {text}` ({len(self.history)})".split(" "):
            yield word + " "

    def reset(self) -> None:
        self.history.clear()

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeBackend:
    runs_dir: Path
    gpu: bool = False
    scenario: str = "ok"
    """ok, oom (fails at step 3), bad_dataset (check finds bad rows, training refuses). A dataset
    file whose name starts with "bad" is refused in any scenario."""
    steps: int = 12
    step_delay: float = 0.0
    hold_at: int | None = None
    """Wait at this step until stop is set (for deterministic stop tests)."""
    calls: list[tuple] = field(default_factory=list)
    holders: list[GpuHolder] = field(default_factory=list)
    """What gpu_holders answers: live runs on the GPU."""
    runs: dict[str, RunInfo] = field(default_factory=dict)
    events: dict[str, list] = field(default_factory=dict)
    chats: list[FakeChat] = field(default_factory=list)
    install: str = "ok"
    """What the doctor finds: ok, warn (a CPU-only torch on the GPU), or crash (its process dies)."""
    doctor_gate: threading.Event | None = None
    """When set, doctor() waits for it: a slow check that must not hold the first paint."""
    doctor_calls: list[tuple[str, bool]] = field(default_factory=list)
    base_calls: list[tuple[str | None, str, str]] = field(default_factory=list)
    """(run_dir, model, tuned GGUF) of each base_gguf_like() call."""
    trained_datasets: list[str] = field(default_factory=list)
    """The dataset of each train() call."""
    eval_gate: threading.Event | None = None
    """When set, evaluate() waits for it after its first progress event: an evaluation still running."""
    """(output_dir, decode) of each doctor() call; kept out of `calls`, whose last entry tests read."""
    example_lengths: list[int] | None = field(default_factory=lambda: [40] * 100)
    """The dataset's token lengths as the form's forecast reads them."""
    forecasts: list[RunConfig] = field(default_factory=list)
    """The config of each forecast() call (the form asks once the user pauses typing)."""

    def probe(self) -> HardwareReport:
        if not self.gpu:
            # The engine's own CPU report, so its note reads as on a machine without a driver.
            return _cpu_report(2, 24.0, "no NVIDIA driver found (the NVML library is missing)")
        return HardwareReport((RTX_4070,), 16, 64.0, "550.54",
                              f"{RTX_4070.name} (GPU 0) has the most free memory: {RTX_4070.free_gib:.1f} GiB")

    def recommend(self, report: HardwareReport, family: str = "llama", output_dir: str = "runs") -> Recommendation:
        if report.gpus and family != "llama":  # the engine's own plan: arithmetic over the catalog
            from engine.hardware.recommend import recommend

            return recommend(report, family=family)
        if report.gpus:
            return Recommendation("llama-3.1-8b-4bit", "qlora", 2, 8, 2048, 8.9, 10.5,
                                  "the largest catalog model whose QLoRA peak fits 10.5 GiB free", True)
        return Recommendation("smollm2-135m", "lora", 8, 1, 256, 0.9, 24.0,
                              "no GPU: the embedded 135M model trains on a CPU in minutes", True)

    def doctor(self, output_dir: str, decode: bool = False) -> DoctorReport:
        self.doctor_calls.append((output_dir, decode))
        if self.doctor_gate is not None:
            self.doctor_gate.wait(10)
        if self.install == "crash":
            raise NativeCrash("ftui doctor crashed (SIGSEGV, signal 11) while checking this install; the log of that "
                              "process is /tmp/ftui-native-x.log.", "run `ftui doctor` in a terminal")
        torch = Check("torch", "torch", "ok", "torch 2.13.0+cu128, CUDA 12.8 build, CUDA usable")
        if self.install == "warn":
            torch = Check("torch", "torch", "warn", "torch 2.13.0+cpu, CPU-only build on a machine with an NVIDIA "
                          "GeForce RTX 4070: training runs on the CPU", 'install a CUDA build of torch: make run '
                          'TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"')
        checks = [
            Check("nvml", "NVIDIA driver", "ok", f"driver 550.54 (CUDA 12.8); 1 GPU: {RTX_4070.name}" if self.gpu
                  else "no NVIDIA driver and no NVIDIA GPU: CPU mode"),
            torch,
            Check("bitsandbytes", "bitsandbytes", "ok", "not needed here: QLoRA needs an NVIDIA GPU"),
            Check("llama_build", "llama.cpp build", "ok", "llama-cpp-python 0.3.36, CPU only (no GPU offload)"),
            Check("disk", "disk space", "ok", f"76.7 GiB free for runs {output_dir}"),
            Check("write", "write access", "ok", f"can write to runs {output_dir}"),
            Check("hub", "hub", "ok", "online; no hub token"),
        ]
        if decode:
            checks.append(Check("llama_decode", "llama.cpp decode", "ok", "32 tokens greedily on the CPU: 120 tokens/s",
                                figures={"tokens_per_s": 120.0}))
        return DoctorReport(tuple(checks))

    def estimate(self, config: RunConfig) -> MemoryEstimate | None:
        spec = find(config.model)
        if spec is None:
            return None
        base_id = spec.base_16bit or spec.id
        weights = BASE_GIB.get(base_id, 1.0) * METHOD_SHARE[config.method]
        activations = config.batch_size * config.max_seq_len / 4096 * (0.15 if config.gradient_checkpointing else 0.6)
        # The engine's parts include the CUDA context and allocator slack (MemoryEstimate.tensors_gib).
        parts = {"weights": weights, "activations": activations, "cuda_context": 0.5, "allocator": 0.1}
        return MemoryEstimate(round(sum(parts.values()), 2), parts)

    def forecast(self, config: RunConfig, device: str) -> Forecast:
        """The engine's own forecast over the runs in the config's output folder, for a dataset of
        `example_lengths` (None: one that cannot be read). A relative folder (the presets' "runs")
        is taken inside runs_dir: the runs a developer trained in the checkout must not change what
        a test sees."""
        self.forecasts.append(config)
        if not Path(config.output_dir).is_absolute():
            config = config.replace(output_dir=str(self.runs_dir / config.output_dir))
        return forecast(config, self.example_lengths, device)

    def context_length(self, model: str) -> int | None:
        spec = find(model)
        return spec.context if spec else None

    def presets(self) -> list[Preset]:
        saved = self.runs_dir / "saved-presets"
        return list_presets() + (list_presets(saved) if saved.exists() else [])

    def save_preset(self, config: RunConfig, name: str, description: str) -> Path:
        folder = self.runs_dir / "saved-presets"
        folder.mkdir(exist_ok=True)
        return save_preset(config, name, description, folder)

    def check_dataset(self, config: RunConfig, on_event: EventSink = ignore) -> DataReport:
        on_event(Progress("tokenizer", 1, 1, "", "loaded"))
        sample = (Segment("<|im_start|>user\nlist running containers<|im_end|>\n", False),
                  Segment("<|im_start|>assistant\nRun: `docker ps`<|im_end|>", True))
        if self._bad(config):
            problems = (DataProblem(config.dataset, 3, "messages", "no assistant turn"),
                        DataProblem(config.dataset, 7, "messages[1].role", "'bot' is not user/assistant/system"),
                        DataProblem(config.dataset, 8, None, "not valid JSON: Expecting ',' at column 41"),
                        DataProblem(config.dataset, 9, "messages", "empty content"))
            lengths: tuple[int, ...] = (40, 52, 61, 70, 75, 90)
            return DataReport(config.dataset, "messages", 10, 6, problems,
                              "4 of 10 rows (40%) fail validation; max_bad_share allows 5%", lengths,
                              _percentiles(list(lengths)), config.max_seq_len, 0, 0, sample, 1)
        lengths = tuple(40 + (i * 37) % 300 for i in range(60))
        return DataReport(config.dataset, "messages", 60, 60, (), None, lengths, _percentiles(list(lengths)),
                          config.max_seq_len, sum(n > config.max_seq_len for n in lengths), 0, sample, 1)

    def _bad(self, config: RunConfig) -> bool:
        return self.scenario == "bad_dataset" or Path(config.dataset).name.startswith("bad")

    def train(self, config: RunConfig, on_event: EventSink, stop: threading.Event,
              resume: str | None = None, leave: threading.Event | None = None) -> RunResult | None:
        self.calls.append(("train", config.name, resume))
        self.trained_datasets.append(config.dataset)
        run_dir = resume or str(self.runs_dir / f"2026-01-01-120{len(self.runs)}-{config.name}")
        log = self.events.setdefault(run_dir, [])

        def emit(event) -> None:
            log.append(event)
            on_event(event)

        emit(Progress("tokenize", 60, 60, "examples"))
        if self._bad(config):
            emit(TrainFailed("4 of 10 rows (40%) failed validation, above max_bad_share 5%",
                             "Fix the rows listed on the dataset screen or raise max_bad_share."))
            return RunResult("failed", None, 0, None, None, None, "bad dataset")
        start = self.runs[run_dir].step if resume and run_dir in self.runs else 0
        emit(TrainStarted(run_dir, self.steps, config.epochs, 54, 6, 921_600, 135_436_608, "cpu", 0.12, start))
        return self._steps(run_dir, config, start, emit, stop, leave)

    def attach(self, run_dir: str, on_event: EventSink, stop: threading.Event,
               leave: threading.Event | None = None,
               on_backlog: Callable[[list[Event]], None] | None = None) -> RunResult | None:
        """A run "trained by another process": what it logged so far, then the rest of its steps."""
        self.calls.append(("attach", run_dir))
        log = self.events.setdefault(run_dir, [])
        if on_backlog is not None:
            on_backlog(list(log))
        else:
            for event in list(log):
                on_event(event)

        def emit(event) -> None:
            log.append(event)
            on_event(event)

        run = self.runs[run_dir]
        if run.status != "running":
            return None
        return self._steps(run_dir, self._configs[run_dir], run.step, emit, stop, leave)

    def sweep(self, variants: list[Variant], on_event: EventSink, stop: threading.Event,
              measure_retention: bool = False, leave: threading.Event | None = None) -> SweepResult:
        """The engine's own sweep over scripted variants whose validation loss is lowest at a
        learning rate of 2.5e-4 (the middle of the demo's suggested rates)."""
        self.calls.append(("sweep", tuple(v.label for v in variants), measure_retention))
        folder = self.runs_dir / f"2026-01-01-1300-sweep-{variants[0].config.name}"
        folder.mkdir()

        def trainer(config: RunConfig, on_event: EventSink, stop: threading.Event) -> RunResult | None:
            run_dir = str(folder / f"2026-01-01-1300-{config.name}")
            log = self.events.setdefault(run_dir, [])

            def emit(event) -> None:
                log.append(event)
                on_event(event)

            emit(TrainStarted(run_dir, self.steps, config.epochs, 54, 6, 921_600, 135_436_608, "cpu", 0.12, 0))
            result = self._steps(run_dir, config, 0, emit, stop, leave,
                                 val_offset=abs(math.log10(config.learning_rate / 2.5e-4)) / 4)
            self.runs[run_dir] = dataclasses.replace(self.runs[run_dir], group=folder.name)
            return result

        return run_sweep(variants, folder, on_event, stop, trainer=trainer)

    def gpu_holders(self, output_dir: str) -> list[GpuHolder]:
        return list(self.holders)

    def _steps(self, run_dir, config, start, emit, stop, leave, val_offset=0.0) -> RunResult | None:
        total = self.steps
        self._record(run_dir, config, "running", start, total, None)
        best = None
        for step in range(start + 1, total + 1):
            if self.hold_at is not None and step == self.hold_at:
                for _ in range(100):
                    if stop.wait(0.1) or (leave is not None and leave.is_set()):
                        break
            if leave is not None and leave.is_set():
                return None  # the "process" trains on; this follower is gone
            if stop.is_set():
                emit(CheckpointSaved(step - 1, f"{run_dir}/checkpoints/step-{step - 1}", "stop"))
                emit(TrainFinished(run_dir, step - 1, 2.0, best, f"{run_dir}/adapter", True, "stopped on request"))
                self._record(run_dir, config, "stopped", step - 1, total, best)
                return RunResult("stopped", run_dir, step - 1, 2.0, best, f"{run_dir}/adapter", "stopped on request")
            if self.scenario == "oom" and step == 3:
                emit(TrainFailed("CUDA out of memory while allocating 2.1 GiB (step 3)",
                                 "Lower batch_size or max_seq_len, turn on gradient_checkpointing, or use qlora.",
                                 step))
                self._record(run_dir, config, "failed", step - 1, total, best)
                return RunResult("failed", run_dir, step - 1, None, best, None, "out of memory")
            time.sleep(self.step_delay)
            loss = 3.0 / (1 + 0.25 * step)
            # A preference run logs its rewards as the engine does (engine.train.preference.PAIR_METRICS).
            figures = ({"reward_chosen": 0.02 * step, "reward_rejected": -0.01 * step, "margin": 0.03 * step,
                        "accuracy": min(1.0, 0.5 + 0.05 * step)} if config.objective in ("dpo", "orpo") else {})
            # On the GPU, what a sampler reads from NVML at the step: the card fills, the GPU is busy.
            used, busy = (round(9.0 + 0.05 * step, 2), 80 + step % 10) if self.gpu else (None, None)
            emit(StepLogged(step, total, step / total * config.epochs, loss, config.learning_rate, 1.1,
                            1500.0, step * 0.5, (total - step) * 0.5, 0.42, gpu_used_gib=used, gpu_util=busy,
                            metrics=figures))
            if config.objective == "grpo":  # rewards that climb as a GRPO run's would
                emit(RewardLogged(step, 0.1 * step, {"format": min(1.0, 0.2 * step), "answer": 0.05 * step}, 0.001 * step,
                                  6.0, "How do I list containers?", f"Run: `docker ps` #{step}", 0.1 * step))
            self._record(run_dir, config, "running", step, total, best)
            if step % 4 == 0:
                val = loss + 0.1 + val_offset
                best = val if best is None else min(best, val)
                emit(EvalLogged(step, val, best))
            if step == 8:
                emit(Diagnosis(step, "overfitting", "validation loss rose while training loss fell.",
                               "Use fewer epochs, more data or a higher lora_dropout."))
        emit(CheckpointSaved(total, f"{run_dir}/adapter", "final"))
        emit(TrainFinished(run_dir, total, 3.0 / (1 + 0.25 * total), best, f"{run_dir}/adapter", False, "finished"))
        self._record(run_dir, config, "finished", total, total, best, artifacts=("adapter",))
        return RunResult("finished", run_dir, total, 3.0 / (1 + 0.25 * total), best, f"{run_dir}/adapter", "finished")

    def _record(self, run_dir, config, status, step, total, best, artifacts=()) -> None:
        # The engine's RunInfo.name is the config's name: runs of one config share it.
        self.runs[run_dir] = RunInfo(run_dir, config.name, status, step, total, best, config.model,
                                     config.model, config.model, config.method, "2026-01-01T12:00",
                                     "2026-01-01T12:00", (), artifacts)
        self._configs = getattr(self, "_configs", {})
        self._configs[run_dir] = config

    def export(self, run_dir: str, quants: tuple[str, ...], on_event: EventSink,
               stop: threading.Event) -> ExportResult:
        self.calls.append(("export", run_dir, tuple(quants)))
        out = f"{run_dir}/export"
        on_event(Progress("merge", 1, 1, "", "adapter merged"))
        on_event(ExportFileWritten(f"{out}/merged", "merged", 270_000_000))
        on_event(Progress("convert", 1, 1, "", "F16 written"))
        files = []
        for quant in quants:
            on_event(Progress(f"quantize {quant}", 1, 1))
            path = f"{out}/model-{quant}.gguf"
            on_event(ExportFileWritten(path, "gguf", 145_000_000, quant))
            on_event(ExportVerified(path, quant, True, 0.98, 0.21, True, True))
            files.append(path)
        on_event(ExportFileWritten(f"{out}/Modelfile", "modelfile", 420))
        on_event(ExportFinished(out, (*files, f"{out}/Modelfile")))
        if run_dir in self.runs:
            self.runs[run_dir] = dataclasses.replace(self.runs[run_dir], artifacts=(*self.runs[run_dir].artifacts,
                                                     "export"), ggufs=tuple(files))
        return ExportResult(out, f"{out}/merged", tuple(files), (f"{out}/Modelfile",), (), True)

    def open_chat(self, gguf_path: str, system_prompt: str = "") -> FakeChat:
        chat = FakeChat(gguf_path, system_prompt)
        self.chats.append(chat)
        return chat

    def base_gguf_like(self, run_dir: str | None, model: str, tuned_gguf: str,
                       on_event: EventSink = ignore) -> tuple[str, str]:
        """As the engine: the base at the tuned file's type (by its name), under a long cache folder."""
        quant = Path(tuned_gguf).stem.removeprefix("model-")
        self.base_calls.append((run_dir, model, tuned_gguf))
        if quant not in ("F16", "Q8_0", "Q4_K_M"):
            raise ActionableError(f"{Path(tuned_gguf).name} is of type {quant}, which ftui cannot make a base "
                                  "model file of", "give the base GGUF yourself")
        on_event(Progress("eval", 0, None, "", f"exporting the base model as {quant} (cached)"))
        return f"/home/user/.cache/ftui/base-gguf/0123456789abcdef/model-{quant}.gguf", quant

    def evaluate(self, run_dir: str, on_event: EventSink = ignore) -> EvalReport:
        items = (EvalItem("list containers", "docker ps", "ls", "docker ps", False, True),
                 EvalItem("stop web", "docker stop web", "kill web", "docker stop web", False, True))
        on_event(Progress("eval", 1, len(items), "prompts", "base answers"))
        if self.eval_gate is not None:
            self.eval_gate.wait(10)
        on_event(Progress("eval", len(items), len(items), "prompts", "tuned answers"))
        retention = RetentionReport(10, ("general.jsonl",), ExactRetention(10, 8, 5, 5, 5 / 8), 0.0, 0.3, 0.2,
                                    (RetentionFinding("forgetting", "kept 5 of the 8 general answers the base "
                                                      "model got right (62%)", "lower learning_rate"),), ())
        return EvalReport(run_dir, "eval.jsonl", "Q8_0", items, 0.0, 1.0, None, None, 0, retention=retention)

    def list_runs(self, output_dir: str = "runs") -> list[RunInfo]:
        return sorted(self.runs.values(), key=lambda r: r.path, reverse=True)

    def run_info(self, run_dir: str) -> RunInfo:
        if run_dir not in self.runs:
            raise ValueError(f"{run_dir} is not a run directory (no run.json)")
        return self.runs[run_dir]

    def run_config(self, run_dir: str) -> RunConfig:
        return self._configs[run_dir]

    def run_events(self, run_dir: str) -> list[Event]:
        return list(self.events.get(run_dir, []))

    def run_curves(self, run_dir: str) -> Curves:
        return curves_of(Path(run_dir).name, self.events.get(run_dir, []))

    def delete_run(self, run_dir: str) -> None:
        del self.runs[run_dir]

    # The queue is the engine's own file in the test's folder, read and changed as Backend does;
    # only the runner process is not started.
    queue = Backend.queue
    queue_move = Backend.queue_move
    queue_cancel = Backend.queue_cancel
    queue_pause = Backend.queue_pause

    def queue_add(self, config: RunConfig) -> Entry:
        self.calls.append(("queue_add", config.name))
        return add(config.output_dir, [(config.name, config)])[0]

    def queue_start(self, output_dir: str) -> int:
        self.calls.append(("queue_start", output_dir))
        return 4321


def _conforms(fake: FakeBackend) -> EngineBackend:
    """mypy (in `make test`) fails here when the fake drifts from the Protocol the screens use."""
    return fake
