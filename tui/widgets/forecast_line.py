"""One line under the memory bar of the config form: the run's predicted wall time at the speed an
earlier run measured on this machine, and what an earlier run measured against its memory
estimate (engine/runs/forecast.py). It follows the form as the user edits, computed in a worker
a moment after the last keystroke, since reading the dataset's lengths takes a while."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from rich.text import Text
from textual import work
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Static

if TYPE_CHECKING:
    from engine.config.schema import RunConfig
    from tui.session import Host

SETTLE_S = 0.4
"""Quiet time after an edit before the forecast is computed again."""


def render_forecast(forecast: Any) -> Text:
    """The time; and, when this machine's runs went above their memory estimates (which the
    recommendation and the memory bar then plan with), by how much and which run says so."""
    text = Text(forecast.time)
    memory = forecast.memory
    if memory is not None and memory.ratio > 1.0:
        by = "" if memory.run_name in forecast.time else f" ({memory.run_name})"
        text.append(f" · the peak above counts the {memory.ratio:.2f}x this machine measured{by}", style="yellow")
    return text


class ForecastLine(Static):
    """The config's predicted time and measured memory on this machine."""

    DEFAULT_CSS = """
    ForecastLine {
        height: auto;
        max-height: 2;
        width: 1fr;
        padding: 0 1;
        color: $text-muted;
    }
    """

    class Forecasted(Message):
        def __init__(self, config: RunConfig, forecast: Any, error: str = "") -> None:
            super().__init__()
            self.config = config
            self.forecast = forecast
            self.error = error

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("time: …", **kwargs)
        self.wanted: RunConfig | None = None
        self._timer: Timer | None = None

    def follow(self, config: RunConfig | None) -> None:
        """Forecast `config` once the user pauses; a newer config replaces one still waiting.
        None (the form has an error) says so at once."""
        self.wanted = config
        if self._timer is not None:
            self._timer.stop()
        if config is None:
            self.update(Text("time: once the form has no errors", style="dim"))
            return
        self._timer = self.set_timer(SETTLE_S, lambda: self.compute(config))

    @work(thread=True, exclusive=True, group="forecast", exit_on_error=False)
    def compute(self, config: RunConfig) -> None:
        host = cast("Host", self.app)
        report = host.session.hardware
        device = "cuda" if report is not None and report.gpus else "cpu"
        try:
            forecast = host.backend.forecast(config, device)
        except Exception as exc:  # the forecast is advice: it must never take the form down
            self.post_message(self.Forecasted(config, None, str(exc) or type(exc).__name__))
            return
        self.post_message(self.Forecasted(config, forecast))

    def on_forecast_line_forecasted(self, message: Forecasted) -> None:
        if message.config != self.wanted:
            return  # the form moved on; its own forecast is coming
        if message.forecast is None:
            self.update(Text(f"time: could not be predicted ({message.error})", style="dim"))
        else:
            self.update(render_forecast(message.forecast))
