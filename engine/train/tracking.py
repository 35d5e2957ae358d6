"""Experiment trackers (TensorBoard, Weights & Biases, MLflow) fed from the run's own events.

The trainer already reports every step and evaluation as events (engine/events.py) for the TUI,
the CLI and metrics.jsonl; `report_to` adds trackers as one more consumer of the same stream, so
a curve in TensorBoard is the curve in the TUI. Each tracker works on this machine by default:
TensorBoard event files in RUN/tensorboard/, W&B in offline mode under RUN/wandb/ (`wandb sync`
uploads it later; WANDB_MODE=online logs live), MLflow in a local file store beside the runs
(OUTPUT_DIR/mlruns; MLFLOW_TRACKING_URI points it elsewhere). The packages are optional extras,
imported only when asked for. A tracker that fails mid-run is dropped with its traceback in
RUN/tracking-error.log; training goes on, since metrics.jsonl holds the same figures.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from engine.config.schema import RunConfig
from engine.events import EvalLogged, RewardLogged, StepLogged, TrainFailed, TrainFinished, TrainStarted

ERROR_LOG = "tracking-error.log"
STATE_FILE = "trackers.json"
"""Ids a resumed run continues under (the MLflow run id)."""


def metrics(event: Any) -> tuple[int, dict[str, float]] | None:
    """The figures a tracker logs for an event, at its step; None for events with none."""
    if isinstance(event, StepLogged):
        figures = {"train/loss": event.loss, "train/learning_rate": event.lr,
                   "train/grad_norm": event.grad_norm, "train/tokens_per_s": event.tokens_per_s,
                   "train/epoch": event.epoch, "train/peak_mem_gib": event.peak_mem_gib}
        gpu = {"gpu/used_gib": event.gpu_used_gib, "gpu/util_percent": event.gpu_util}
        own = {f"train/{k}": v for k, v in event.metrics.items()}  # a preference run's rewards, margin, accuracy
        return event.step, figures | own | {k: float(v) for k, v in gpu.items() if v is not None}
    if isinstance(event, EvalLogged):
        return event.step, {"eval/loss": event.val_loss, "eval/best_loss": event.best_val_loss,
                            **{f"eval/{k}": v for k, v in event.metrics.items()}}
    if isinstance(event, RewardLogged):
        return event.step, {"grpo/reward": event.reward, "grpo/kl": event.kl,
                            "grpo/completion_tokens": event.completion_tokens,
                            **{f"grpo/reward_{name}": value for name, value in event.rewards.items()}}
    return None


class Tracker(Protocol):
    name: str

    def start(self, started: TrainStarted) -> None: ...
    def log(self, step: int, values: dict[str, float]) -> None: ...
    def finish(self, status: str) -> None:
        """status: "finished", "stopped" or "failed"."""


class Tracking:
    """The event sink that feeds the trackers; call it with every event of the run."""

    def __init__(self, trackers: list[Tracker], run_dir: Path):
        self.trackers = trackers
        self.run_dir = run_dir
        self.finished = False

    def __call__(self, event: Any) -> None:
        if isinstance(event, TrainStarted):
            self._each(lambda t: t.start(event))
        figures = metrics(event)
        if figures is not None:
            self._each(lambda t: t.log(*figures))
        if isinstance(event, TrainFinished | TrainFailed):
            status = "failed" if isinstance(event, TrainFailed) else "stopped" if event.stopped else "finished"
            self.close(status)

    def feeding(self, on_event: Any) -> Any:
        """An `on_event` that feeds the trackers, then passes the event on."""
        def both(event: Any) -> None:
            self(event)
            on_event(event)
        return both

    def close(self, status: str = "stopped") -> None:
        if not self.finished:
            self.finished = True
            self._each(lambda t: t.finish(status))

    def _each(self, call: Any) -> None:
        for tracker in list(self.trackers):
            try:
                call(tracker)
            except Exception:  # noqa: BLE001 - a tracker must never stop a run
                self.trackers.remove(tracker)
                with open(self.run_dir / ERROR_LOG, "a", encoding="utf-8") as fh:
                    fh.write(f"{tracker.name} stopped logging:\n{traceback.format_exc()}\n")


class TrackerError(Exception):
    """A tracker that could not start, named, with the library's own reason."""


@contextmanager
def tracking(config: RunConfig, run_dir: Path) -> Iterator[Tracking]:
    """The trackers `config.report_to` names, open for the run; closed (as stopped) on the way out
    if no TrainFinished or TrainFailed closed them first. Raises TrackerError when one cannot start."""
    sink = Tracking([], Path(run_dir))
    try:
        for name in dict.fromkeys(config.report_to):
            try:
                sink.trackers.append(_open(name, config, Path(run_dir)))
            except Exception as exc:  # noqa: BLE001 - each library raises its own types
                raise TrackerError(f"{name} could not start: {type(exc).__name__}: {exc}") from exc
        yield sink
    finally:
        sink.close()


def _open(name: str, config: RunConfig, run_dir: Path) -> Tracker:
    kinds: dict[str, Any] = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker, "mlflow": MlflowTracker}
    return kinds[name](config, run_dir)


class TensorBoardTracker:
    """Event files in RUN/tensorboard/ through torch's SummaryWriter (needs the tensorboard package)."""

    name = "tensorboard"

    def __init__(self, config: RunConfig, run_dir: Path):
        self.config, self.log_dir = config, run_dir / "tensorboard"
        self.writer: Any = None

    def start(self, started: TrainStarted) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # A resumed run drops what the interrupted attempt logged past its checkpoint, as
        # metrics.jsonl does, so the curve does not double back.
        purge = started.start_step + 1 if started.start_step else None
        self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=purge, flush_secs=10)
        self.writer.add_text("config", "```toml\n" + self.config.to_toml() + "```", global_step=started.start_step)

    def log(self, step: int, values: dict[str, float]) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)

    def finish(self, status: str) -> None:
        if self.writer is not None:
            self.writer.close()


class WandbTracker:
    """A W&B run named after the run folder; offline unless WANDB_MODE says otherwise."""

    name = "wandb"

    def __init__(self, config: RunConfig, run_dir: Path):
        wandb = importlib.import_module("wandb")
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "ftui"), name=run_dir.name,
            id=re.sub(r"[^A-Za-z0-9_-]", "-", run_dir.name), resume="allow", dir=str(run_dir),
            mode=os.environ.get("WANDB_MODE", "offline"), config=config.to_dict(),
        )

    def start(self, started: TrainStarted) -> None:
        self.run.summary.update({"total_steps": started.total_steps, "train_examples": started.train_examples,
                                 "trainable_params": started.trainable_params, "device": started.device})

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def finish(self, status: str) -> None:
        self.run.finish(exit_code=1 if status == "failed" else 0)


class MlflowTracker:
    """An MLflow run in experiment "ftui" (MLFLOW_EXPERIMENT_NAME), in OUTPUT_DIR/mlruns unless
    MLFLOW_TRACKING_URI is set; a resumed run continues the same MLflow run."""

    name = "mlflow"
    _STATUS = {"finished": "FINISHED", "stopped": "KILLED", "failed": "FAILED"}

    def __init__(self, config: RunConfig, run_dir: Path):
        mlflow = importlib.import_module("mlflow")
        self.entities = importlib.import_module("mlflow.entities")
        uri = os.environ.get("MLFLOW_TRACKING_URI") or (Path(config.output_dir) / "mlruns").resolve().as_uri()
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        state = _read_state(run_dir)
        if state.get("mlflow_run_id"):
            self.run_id = state["mlflow_run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        experiment_name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "ftui")
        experiment = self.client.get_experiment_by_name(experiment_name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(experiment_name)
        self.run_id = self.client.create_run(experiment_id, run_name=run_dir.name).info.run_id
        _write_state(run_dir, {**state, "mlflow_run_id": self.run_id})
        params = [self.entities.Param(k, ",".join(v) if isinstance(v, list) else str(v))
                  for k, v in config.to_dict().items()]
        self.client.log_batch(self.run_id, params=params)

    def start(self, started: TrainStarted) -> None:
        pass

    def log(self, step: int, values: dict[str, float]) -> None:
        import time

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[self.entities.Metric(k, v, now, step) for k, v in values.items()])

    def finish(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=self._STATUS.get(status, "KILLED"))


def _read_state(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(run_dir: Path, state: dict[str, Any]) -> None:
    from engine.files.atomic import write_text_atomic

    write_text_atomic(run_dir / STATE_FILE, json.dumps(state, indent=2) + "\n")
