"""Messages that carry results from worker threads to the UI thread.

Workers never touch widgets: they `post_message` one of these and the handler on the UI
thread updates the screen. None of them sets `can_replace`, so no loss point or streamed
piece of a reply is ever dropped from the queue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

from engine.events import Event

if TYPE_CHECKING:
    from engine.data import DataReport
    from engine.eval.evaluate import EvalReport
    from engine.hardware.doctor import DoctorReport
    from engine.hardware.probe import HardwareReport
    from engine.hardware.recommend import Recommendation
    from engine.sweep import SweepResult


class EngineEventReceived(Message):
    """An engine event (engine/events.py) arrived from the work named by `origin`."""

    def __init__(self, event: Event, origin: str) -> None:
        self.event = event
        self.origin = origin
        """"train", "sweep", "export", "dataset" or "eval"."""
        super().__init__()


class RunHistoryRead(Message):
    """Everything a run followed from its directory had logged when following began."""

    def __init__(self, events: list[Event], run_dir: str) -> None:
        self.events = events
        self.run_dir = run_dir
        super().__init__()


class TrainingLogReplaced(Message):
    """The app holds a new TrainingLog in the session (a run started or followed, or the history of
    a followed run read back): the training screen redraws from it whole."""


class TrainingEventLogged(Message):
    """The session's TrainingLog recorded `event` (and the log lines it adds): the training screen
    shows what is new and reacts to the event (a banner, the end of the run)."""

    def __init__(self, event: Event) -> None:
        self.event = event
        super().__init__()


class TrainingStatusChanged(Message):
    """The run's status changed without an event of its own (a stop was asked): the status line
    is redrawn."""


class SweepFinished(Message):
    """The sweep's worker returned the engine's SweepResult: the variants and the one chosen."""

    def __init__(self, result: SweepResult) -> None:
        self.result = result
        super().__init__()


class WorkFailed(Message):
    """Work in a thread raised instead of reporting a failure event."""

    def __init__(self, origin: str, error: str) -> None:
        self.origin = origin
        self.error = error
        super().__init__()


class HardwareProbed(Message):
    def __init__(self, report: HardwareReport, recommendation: Recommendation) -> None:
        self.report = report
        self.recommendation = recommendation
        super().__init__()


class InstallChecked(Message):
    """The doctor's checks finished: the engine's DoctorReport, or why they could not run."""

    def __init__(self, report: DoctorReport | None, error: str | None) -> None:
        self.report = report
        self.error = error
        super().__init__()


class DatasetChecked(Message):
    def __init__(self, summary: DataReport) -> None:
        self.summary = summary
        super().__init__()


class ChatPieceReceived(Message):
    """A streamed piece of a reply; `side` is "tuned" or "base" in compare mode."""

    def __init__(self, piece: str, side: str) -> None:
        self.piece = piece
        self.side = side
        super().__init__()


class ChatReplyFinished(Message):
    def __init__(self, side: str, error: str | None = None, cut_at: int | None = None) -> None:
        self.side = side
        self.error = error
        self.cut_at = cut_at
        """The reply ran into this many tokens, the limit, instead of ending its turn."""
        super().__init__()


class BaseGgufReady(Message):
    """The base model's GGUF at the fine-tuned file's type was made or found (`error` when not)."""

    def __init__(self, path: str, quant: str, error: str = "") -> None:
        self.path = path
        self.quant = quant
        self.error = error
        super().__init__()


class EvalFinished(Message):
    def __init__(self, report: EvalReport) -> None:
        self.report = report
        super().__init__()
