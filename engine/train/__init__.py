"""Fine-tuning: `train(config, on_event, stop, resume=None) -> RunResult`.

`run_loaded` is the same loop fed already loaded data and a model builder, for callers (and
tests) that bring their own.
"""

from engine.train.launch import train
from engine.train.loop import Loaded, RunResult, run_loaded

__all__ = ["train", "run_loaded", "Loaded", "RunResult"]
