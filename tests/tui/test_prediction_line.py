"""The training screen's log says the predicted time the run announced as it started (issue 25 item 4)."""

from engine.events import TrainStarted
from tui.training_log import TrainingLog


def test_the_start_line_carries_the_prediction_and_where_it_comes_from():
    said = "predicted time: about 5 min for 33,000 tokens at 110 tokens/s, measured by runs/earlier"
    line = TrainingLog().apply(TrainStarted("runs/now", 4, 1.0, 10, 1, 100, 1000, "cpu", 0.0, prediction=said))
    assert line is not None and line.endswith(f"; {said}")
