"""The engine as the app sees it: one object whose methods the screens call.

Every heavy engine module is imported inside the method that needs it, so the first screen
paints before torch loads. Tests pass a `FakeBackend` with the same methods that emits
scripted events, which is how every screen is exercised without a GPU or a model.
Where the engine returns a loosely specified report (dataset check, runs, evaluation), it
is turned here into the small view types below, so the screens depend on one shape only.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from engine.config import RunConfig, load_toml
from engine.events import ignore
from engine.presets import Preset

EventSink = Callable[[Any], None]


@dataclass(frozen=True)
class DatasetSummary:
    """What the dataset screen shows about one file."""

    path: str
    format: str
    rows: int
    usable_rows: int
    problems: tuple[str, ...]
    """One line each, starting with file:line so the user can find the row."""
    lengths: tuple[int, ...]
    """Token length of each usable example (empty without a tokenizer)."""
    max_seq_len: int
    over_length: int
    sample: tuple[tuple[str, bool], ...]
    """The first example rendered with the chat template: (text, trained) spans."""
    refusal: str | None = None
    """Why training would refuse this file (too many bad rows, nothing usable); None if usable."""


@dataclass(frozen=True)
class RunSummary:
    """One row of the runs screen."""

    path: str
    name: str
    status: str
    """running, finished, stopped or failed."""
    step: int
    total_steps: int
    best_val_loss: float | None
    method: str
    model: str
    created: str
    artifacts: tuple[str, ...]
    """Folder or file names a user can act on: adapter, model, export, *.gguf."""
    ggufs: tuple[str, ...]

    @property
    def resumable(self) -> bool:
        return self.status in ("stopped", "failed", "interrupted") and self.step < self.total_steps

    @property
    def trained(self) -> bool:
        return any(a in ("adapter", "model") for a in self.artifacts)


@dataclass(frozen=True)
class EvalTable:
    """The held-out evaluation as a table: one row per prompt, plus a one-line summary."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    summary: str


class ChatLike(Protocol):
    def send(self, text: str) -> Iterator[str]: ...
    def reset(self) -> None: ...
    def close(self) -> None: ...


class Backend:
    """Calls engine/ for real. Methods that take `on_event` and `stop` run in worker threads."""

    def probe(self) -> Any:
        from engine.hardware import probe

        return probe()

    def recommend(self, report: Any) -> Any:
        from engine.recommend import recommend

        return recommend(report)

    def estimate(self, config: RunConfig) -> Any | None:
        """Peak memory for this config, or None when the model is not in the catalog."""
        from engine.catalog import find

        spec = find(config.model)
        if spec is None:
            return None
        from engine.estimate import estimate

        return estimate(
            spec, config.method, config.batch_size, config.max_seq_len,
            grad_checkpointing=config.gradient_checkpointing, optimizer=config.optimizer,
            lora_r=config.lora_r, target_modules=config.target_modules,
        )

    def context_length(self, model: str) -> int | None:
        from engine.catalog import find

        spec = find(model)
        return spec.context if spec else None

    def presets(self) -> list[Preset]:
        from engine.presets import list_presets

        return list_presets()

    def save_preset(self, config: RunConfig, name: str, description: str) -> Path:
        from engine.presets import save_preset

        return save_preset(config, name, description)

    def check_dataset(self, config: RunConfig, on_event: EventSink = ignore) -> DatasetSummary:
        from engine.data import check
        from engine.models import load_tokenizer, resolve_model

        tokenizer = load_tokenizer(resolve_model(config.model, on_event, config.trust_remote_code))
        report = check(config.dataset, config.dataset_format, tokenizer, config.max_seq_len,
                       max_bad_share=config.max_bad_share, train_on_responses_only=config.train_on_responses_only)
        return summarize_data_report(report, config.max_seq_len)

    def train(self, config: RunConfig, on_event: EventSink, stop: threading.Event, resume: str | None = None) -> Any:
        from engine.train import train

        return train(config, on_event, stop, resume=resume)

    def export(self, run_dir: str, quants: tuple[str, ...], on_event: EventSink, stop: threading.Event) -> Any:
        from engine.export import export

        return export(run_dir, quants=quants, on_event=on_event, stop=stop)

    def open_chat(self, gguf_path: str, system_prompt: str = "") -> ChatLike:
        from engine.chat import ChatSession

        return ChatSession(gguf_path, system_prompt=system_prompt)

    def base_gguf(self, model: str) -> str | None:
        """A GGUF of the untuned base for compare mode; only the embedded model ships one."""
        from engine.catalog import find

        spec = find(model)
        if spec is None or spec.source != "embedded":
            return None
        from engine.embedded import embedded_gguf_path

        return str(embedded_gguf_path())

    def evaluate(self, run_dir: str, on_event: EventSink = ignore) -> EvalTable:
        from engine.evaluate import evaluate

        return summarize_eval_report(evaluate(run_dir, on_event))

    def list_runs(self, output_dir: str = "runs") -> list[RunSummary]:
        from engine.runs import list_runs

        return [summarize_run(info) for info in list_runs(output_dir)]

    def run_config(self, run_dir: str) -> RunConfig:
        return RunConfig.from_dict(load_toml(Path(run_dir) / "config.toml"), source=f"{run_dir}/config.toml")

    def run_events(self, run_dir: str) -> list[Any]:
        """The events a run logged, read back from metrics.jsonl, to redraw its charts."""
        from engine.runs import read_events

        return read_events(run_dir)

    def delete_run(self, run_dir: str) -> None:
        path = Path(run_dir)
        if not (path / "run.json").exists():
            raise ValueError(f"{run_dir} has no run.json: not deleting a folder that is not a run")
        shutil.rmtree(path)


def summarize_data_report(report: Any, max_seq_len: int) -> DatasetSummary:
    """engine.data.DataReport as the dataset screen shows it."""
    return DatasetSummary(
        path=report.path,
        format=report.format,
        rows=report.rows,
        usable_rows=report.usable_rows,
        problems=tuple(str(p) for p in report.problems),
        lengths=tuple(report.lengths),
        max_seq_len=report.max_seq_len or max_seq_len,
        over_length=report.over_length,
        sample=tuple((segment.text, segment.trained) for segment in report.sample),
        refusal=report.refusal,
    )


def summarize_run(info: Any) -> RunSummary:
    """engine.runs.RunInfo plus the GGUF files its export folder holds."""
    export_dir = Path(info.path) / "export"
    ggufs = tuple(sorted(str(p) for p in export_dir.glob("*.gguf"))) if export_dir.exists() else ()
    return RunSummary(
        path=info.path,
        name=info.name,
        status=info.status,
        step=info.step,
        total_steps=info.total_steps,
        best_val_loss=info.best_val_loss,
        method=info.method,
        model=info.model,
        created=info.created,
        artifacts=tuple(a for a in info.artifacts if a != "tokenizer") + tuple(Path(g).name for g in ggufs),
        ggufs=ggufs,
    )


def summarize_eval_report(report: Any) -> EvalTable:
    """engine.evaluate.EvalReport: one row per held-out prompt, scores and losses in the summary."""
    rows = tuple((item.prompt, item.expected, _mark(item.base_reply, item.base_hit),
                  _mark(item.tuned_reply, item.tuned_hit)) for item in report.items)
    parts = []
    if report.tuned_score is not None:
        base = f"{report.base_score:.0%}" if report.base_score is not None else "-"
        parts.append(f"expected answer found: tuned {report.tuned_score:.0%}, base {base}")
    if report.tuned_val_loss is not None:
        base_loss = f"{report.base_val_loss:.3f}" if report.base_val_loss is not None else "-"
        parts.append(f"validation loss: tuned {report.tuned_val_loss:.3f}, base {base_loss} "
                     f"({report.val_examples} examples)")
    return EvalTable(("prompt", "expected", "base", "tuned"), rows, "; ".join(parts))


def _mark(reply: str, hit: bool) -> str:
    return f"{'✓' if hit else '✗'} {reply.strip()}"
