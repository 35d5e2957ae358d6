"""A few real steps on the embedded SmolLM2-135M with the demo preset: the path `ftui train --preset demo` takes."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import pytest

from engine.config.presets import load_preset
from engine.events import EvalLogged, StepLogged, TrainFinished, TrainStarted
from engine.train import train


@pytest.mark.e2e
def test_demo_preset_trains_the_embedded_model(tmp_path):
    config = load_preset("demo").apply().replace(
        output_dir=str(tmp_path / "runs"), max_steps=3, batch_size=4, eval_interval=3, val_split=0.05,
    )
    events: list = []
    result = train(config, events.append, threading.Event())

    assert result.status == "finished", f"{result.reason}\n{result.advice}"
    started = next(e for e in events if isinstance(e, TrainStarted))
    assert started.total_steps == 3 and started.pad_share == 0.0
    assert 1e6 < started.trainable_params < 1e7 and started.total_params > 1.3e8
    steps = [e for e in events if isinstance(e, StepLogged)]
    assert len(steps) == 3 and all(math.isfinite(s.loss) and s.tokens_per_s > 0 for s in steps)
    assert any(isinstance(e, EvalLogged) for e in events) and isinstance(events[-1], TrainFinished)
    run = Path(result.run_dir)
    adapter = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 16 and set(adapter["target_modules"]) == set(config.target_modules)
    assert (run / "tokenizer" / "tokenizer.json").exists()
    assert json.loads((run / "run.json").read_text())["model"] == "smollm2-135m"
