"""report_to: trackers fed from the run's own events.

TensorBoard is real (the `tensorboard` package is in the test extra): a tiny run writes event
files that tensorboard's own EventAccumulator reads back. W&B and MLflow are faked at the module
boundary (their packages pull in dozens of dependencies): the fakes record the calls ftui makes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from engine.config.schema import RunConfig
from engine.events import EvalLogged, StepLogged, TrainFailed, TrainFinished, TrainStarted
from engine.train.tracking import ERROR_LOG, Tracking, tracking
from tests.engine.train.tiny import run_tiny, tiny_config


def started(start_step: int = 0) -> TrainStarted:
    return TrainStarted("run", 4, 1.0, 48, 8, 10, 100, "cpu fp32", 0.05, start_step)


def step(n: int, loss: float) -> StepLogged:
    return StepLogged(n, 4, n / 4, loss, 1e-3, 0.5, 100.0, float(n), 0.0, 1.0)


def scalars(log_dir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return [(e.step, round(e.value, 5)) for e in acc.Scalars(tag)]


@pytest.mark.slow
def test_tensorboard_event_files_hold_the_runs_curves(tmp_path, model_folder):
    result, events = run_tiny(tiny_config(tmp_path, report_to=("tensorboard",)), model_folder)
    assert result.status == "finished"
    log_dir = Path(result.run_dir) / "tensorboard"
    assert scalars(log_dir, "train/loss") == [(e.step, round(e.loss, 5)) for e in events if isinstance(e, StepLogged)]
    assert scalars(log_dir, "eval/loss") == [(e.step, round(e.val_loss, 5)) for e in events
                                             if isinstance(e, EvalLogged)]
    assert [s for s, _ in scalars(log_dir, "train/learning_rate")] == [1, 2, 3, 4, 5, 6]


def test_tensorboard_after_resume_drops_what_the_interrupted_attempt_logged(tmp_path):
    config = RunConfig(report_to=("tensorboard",))
    with tracking(config, tmp_path) as track:
        for event in (started(), step(1, 3.0), step(2, 2.0), step(3, 9.9)):
            track(event)
    with tracking(config, tmp_path) as track:  # resumed from the step-2 checkpoint
        for event in (started(start_step=2), step(3, 1.5), step(4, 1.0)):
            track(event)
    assert scalars(tmp_path / "tensorboard", "train/loss") == [(1, 3.0), (2, 2.0), (3, 1.5), (4, 1.0)]


@pytest.fixture
def fake_wandb(monkeypatch):
    calls: dict = {"log": []}

    class Run:
        summary: dict = {}

        def log(self, values, step):
            calls["log"].append((step, values))

        def finish(self, exit_code=0):
            calls["exit_code"] = exit_code

    module = ModuleType("wandb")
    module.init = lambda **kw: calls.update(init=kw) or Run()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wandb", module)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    return calls


def test_wandb_runs_offline_in_the_run_folder_and_logs_each_step(tmp_path, fake_wandb):
    run_dir = tmp_path / "2026-01-01-0000-demo"
    run_dir.mkdir()
    with tracking(RunConfig(name="demo", report_to=("wandb",)), run_dir) as track:
        for event in (started(), step(1, 2.0), EvalLogged(1, 1.8, 1.8), TrainFinished("r", 1, 2.0, 1.8, "a", False, "")):
            track(event)
    init = fake_wandb["init"]
    assert (init["mode"], init["dir"], init["name"], init["project"]) == ("offline", str(run_dir), run_dir.name, "ftui")
    assert init["config"]["name"] == "demo" and init["resume"] == "allow"
    assert fake_wandb["log"][0] == (1, {"train/loss": 2.0, "train/learning_rate": 1e-3, "train/grad_norm": 0.5,
                                        "train/tokens_per_s": 100.0, "train/epoch": 0.25, "train/peak_mem_gib": 1.0})
    assert fake_wandb["log"][1] == (1, {"eval/loss": 1.8, "eval/best_loss": 1.8})
    assert fake_wandb["exit_code"] == 0


@pytest.fixture
def fake_mlflow(monkeypatch):
    calls: dict = {"batches": [], "created": []}

    class Client:
        def __init__(self, tracking_uri):
            calls["uri"] = tracking_uri

        def get_experiment_by_name(self, name):
            return None

        def create_experiment(self, name):
            calls["experiment"] = name
            return "7"

        def create_run(self, experiment_id, run_name):
            calls["created"].append((experiment_id, run_name))
            return SimpleNamespace(info=SimpleNamespace(run_id=f"run-{len(calls['created'])}"))

        def update_run(self, run_id, status):
            calls["resumed"] = (run_id, status)

        def log_batch(self, run_id, metrics=(), params=()):
            calls["batches"].append((run_id, list(metrics), list(params)))

        def set_terminated(self, run_id, status):
            calls["terminated"] = (run_id, status)

    mlflow = ModuleType("mlflow")
    mlflow.MlflowClient = Client  # type: ignore[attr-defined]
    entities = ModuleType("mlflow.entities")
    entities.Metric = lambda key, value, timestamp, step: (key, value, step)  # type: ignore[attr-defined]
    entities.Param = lambda key, value: (key, value)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mlflow", mlflow)
    monkeypatch.setitem(sys.modules, "mlflow.entities", entities)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return calls


def test_mlflow_logs_to_a_local_store_and_a_resumed_run_continues_it(tmp_path, fake_mlflow):
    run_dir = tmp_path / "runs" / "2026-01-01-0000-demo"
    run_dir.mkdir(parents=True)
    config = RunConfig(name="demo", output_dir=str(tmp_path / "runs"), report_to=("mlflow",))
    with tracking(config, run_dir) as track:
        for event in (started(), step(1, 2.0), TrainFailed("boom", "fix it", 1)):
            track(event)
    assert fake_mlflow["uri"] == (tmp_path / "runs" / "mlruns").resolve().as_uri()
    assert fake_mlflow["created"] == [("7", run_dir.name)] and fake_mlflow["experiment"] == "ftui"
    params = dict(fake_mlflow["batches"][0][2])
    assert params["name"] == "demo" and params["report_to"] == "mlflow"
    assert ("train/loss", 2.0, 1) in fake_mlflow["batches"][1][1]
    assert fake_mlflow["terminated"] == ("run-1", "FAILED")
    with tracking(config, run_dir) as track:
        track(started(start_step=1))
    assert fake_mlflow["resumed"] == ("run-1", "RUNNING") and len(fake_mlflow["created"]) == 1
    assert fake_mlflow["terminated"] == ("run-1", "KILLED")  # closed without TrainFinished: stopped


def test_a_tracker_failing_mid_run_is_dropped_and_logged_not_fatal(tmp_path):
    class Broken:
        name = "broken"

        def start(self, started):
            pass

        def log(self, step, values):
            raise ConnectionError("server went away")

        def finish(self, status):
            raise AssertionError("a dropped tracker is not finished")

    track = Tracking([Broken()], tmp_path)
    track(step(1, 2.0))
    track(step(2, 1.0))
    assert track.trackers == []
    assert "broken stopped logging" in (tmp_path / ERROR_LOG).read_text()
    track.close("finished")


@pytest.mark.slow
def test_a_tracker_that_cannot_start_fails_the_run_before_training(tmp_path, model_folder, monkeypatch):
    module = ModuleType("wandb")

    def init(**kw):
        raise RuntimeError("api_key not configured")

    module.init = init  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wandb", module)
    result, events = run_tiny(tiny_config(tmp_path, report_to=("wandb",)), model_folder)
    assert result.status == "failed" and not any(isinstance(e, StepLogged) for e in events)
    assert result.reason == "report_to: wandb could not start: RuntimeError: api_key not configured"


def test_report_to_is_checked_with_the_install_command(monkeypatch):
    import importlib.util

    problems = RunConfig(report_to=("tensorbord",)).check()
    assert [(p.field, p.message) for p in problems] == [
        ("report_to", "unknown tracker 'tensorbord' (did you mean 'tensorboard'?); choose from tensorboard, wandb, mlflow")]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    (problem,) = RunConfig(report_to=("wandb",)).check()
    assert "wandb is not installed: pip install -e '.[wandb]'" in problem.message
