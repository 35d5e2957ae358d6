"""The engine as the app sees it: one object whose methods the screens call.

Every heavy engine module is imported inside the method that needs it, so the first screen
paints before torch loads. Tests pass a `FakeBackend` with the same methods that emits
scripted events, which is how every screen is exercised without a GPU or a model.
Where the engine returns a loosely specified report (dataset check, runs, evaluation), it
is turned here into the small view types below, so the screens depend on one shape only.
"""

from __future__ import annotations

import json
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
        return self.status in ("stopped", "failed", "running") and self.step < self.total_steps

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
        report = check(config.dataset, config.dataset_format, tokenizer, config.max_seq_len)
        return summarize_data_report(report, config.dataset, config.max_seq_len)

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
        import engine.events as events

        out = []
        path = Path(run_dir) / "metrics.jsonl"
        if not path.exists():
            return out
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
                kind = getattr(events, record.pop("event"))
                out.append(kind(**record))
            except (ValueError, KeyError, AttributeError, TypeError):
                continue
        return out

    def delete_run(self, run_dir: str) -> None:
        path = Path(run_dir)
        if not (path / "run.json").exists():
            raise ValueError(f"{run_dir} has no run.json: not deleting a folder that is not a run")
        shutil.rmtree(path)


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    """The first attribute (or key) of `names` that the engine's report has."""
    for name in names:
        if isinstance(obj, dict) and name in obj:
            return obj[name]
        if hasattr(obj, name):
            return getattr(obj, name)
    return default


def summarize_data_report(report: Any, path: str, max_seq_len: int) -> DatasetSummary:
    sample = _get(report, "sample", "sample_spans", default=()) or ()
    spans = tuple((str(_get(s, "text", default=s[0] if isinstance(s, tuple) else s)),
                   bool(_get(s, "trained", default=s[1] if isinstance(s, tuple) else False))) for s in sample)
    return DatasetSummary(
        path=path,
        format=str(_get(report, "format", default="?")),
        rows=int(_get(report, "rows", default=0)),
        usable_rows=int(_get(report, "usable_rows", default=0)),
        problems=tuple(str(p) for p in _get(report, "problems", default=())),
        lengths=tuple(int(n) for n in _get(report, "lengths", "token_lengths", default=()) or ()),
        max_seq_len=max_seq_len,
        over_length=int(_get(report, "over_length", default=0) or 0),
        sample=spans,
    )


def summarize_run(info: Any) -> RunSummary:
    path = Path(str(_get(info, "path", "run_dir")))
    artifacts = tuple(name for name in ("adapter", "model", "export") if (path / name).exists())
    ggufs = tuple(sorted(str(p) for p in (path / "export").glob("*.gguf"))) if (path / "export").exists() else ()
    best = _get(info, "best_val_loss")
    return RunSummary(
        path=str(path),
        name=str(_get(info, "name", default=path.name)),
        status=str(_get(info, "status", default="?")),
        step=int(_get(info, "step", default=0) or 0),
        total_steps=int(_get(info, "total_steps", default=0) or 0),
        best_val_loss=float(best) if best is not None else None,
        method=str(_get(info, "method", default="")),
        model=str(_get(info, "model", "base_model", default="")),
        created=str(_get(info, "created", default="")),
        artifacts=artifacts + tuple(Path(g).name for g in ggufs),
        ggufs=ggufs,
    )


def summarize_eval_report(report: Any) -> EvalTable:
    rows = _get(report, "rows", "examples", default=()) or ()
    columns: tuple[str, ...] = ()
    table = []
    for row in rows:
        values = row if isinstance(row, dict) else vars(row)
        columns = columns or tuple(values)
        table.append(tuple(_cell(values.get(c)) for c in columns))
    return EvalTable(columns, tuple(table), str(_get(report, "summary", default="")))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "" if value is None else str(value)
