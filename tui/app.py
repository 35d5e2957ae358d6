"""The ftui Textual app: holds what the screens share (the config being edited, the hardware,
the training run) and owns the training worker, so a run survives leaving its screen and a
dropped SSH connection ends it with a checkpoint instead of losing it."""

from __future__ import annotations

import gc
import os
import signal
import threading
from typing import Any

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.worker import get_current_worker

from engine.config import ConfigError, RunConfig
from engine.events import TrainStarted
from tui.backend import Backend
from tui.commands import ScreenCommands
from tui.messages import EngineEventReceived, WorkFailed
from tui.screens.dialogs import ConfirmScreen
from tui.training_log import TrainingLog

DEFAULT_PRESET = "demo"
STOP_WAIT_S = 600.0
"""How long the process waits for the stop checkpoint after the terminal went away."""


def _freeze_heap(collect: bool = False) -> None:
    """Exempt every object alive now from the cyclic garbage collector's full passes.

    A full pass scans every tracked object and holds the UI thread meanwhile: about 7 ms with
    Textual loaded, about 250 ms once torch, transformers and peft are (2-core machine), which a
    key pressed during a run waits out. The app's widgets and the engine's modules live as long
    as the process, so they are frozen: after the first paint, and when a run has started (its
    imports and model are loaded). Reference counting still frees frozen objects; only cycles
    among them wait for `_collect_run_garbage`."""
    if collect:
        gc.collect()
    gc.freeze()


def _collect_run_garbage() -> None:
    """After a run: give what it froze back to the collector (a model held in a cycle must not
    outlive its run), collect once, and freeze what is left."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def over_ssh_without_multiplexer(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """A run started here dies with the connection, unless it runs inside tmux or screen."""
    return bool(environ.get("SSH_CONNECTION")) and not environ.get("TMUX") and not environ.get("STY")


class FtuiApp(App[int]):
    TITLE = "ftui"
    SUB_TITLE = "fine-tune on this machine"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {ScreenCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [
        # Not in the footer, which cannot hold every screen's keys at 80 columns; F1 lists it.
        Binding("ctrl+q", "quit", "Quit", id="quit", priority=True, show=False),
    ]

    def __init__(self, backend: Any = None, preset: str | None = None) -> None:
        super().__init__()
        self.backend = backend if backend is not None else Backend()
        self.hardware: Any = None
        self.recommendation: Any = None
        self.training = TrainingLog()
        self.train_stop = threading.Event()
        self.train_done = threading.Event()
        self.train_done.set()
        self.exit_when_stopped = False
        self.export_run_dir: str | None = None
        """The run the export and chat screens work on (the last trained or the one chosen in runs)."""
        self.chat_gguf: str | None = None
        self.config, self.config_source = self._initial_config(preset)

    def _initial_config(self, preset: str | None) -> tuple[RunConfig, str]:
        """The preset named on the command line, else the demo on the embedded model."""
        wanted = preset or DEFAULT_PRESET
        try:
            for candidate in self.backend.presets():
                if candidate.name == wanted:
                    return candidate.apply(), f"preset {candidate.name}"
        except ConfigError as exc:
            self._startup_problem = str(exc)
            return RunConfig(), "defaults"
        self._startup_problem = f"no preset {wanted!r}; starting from the defaults" if preset else None
        return RunConfig(), "defaults"

    def on_mount(self) -> None:
        from tui.screens.home import HomeScreen
        from tui.screens.training import TrainingScreen

        if os.environ.get("SSH_CONNECTION"):
            # Over a slow link every animation frame is bytes on the wire.
            self.animation_level = "none"
        self.install_screen(TrainingScreen(), name="training")
        self.push_screen(HomeScreen())
        if getattr(self, "_startup_problem", None):
            self.notify(self._startup_problem, severity="error", timeout=10)
        self._install_signal_handlers()
        self.call_after_refresh(_freeze_heap, collect=True)

    def _install_signal_handlers(self) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGHUP, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.hang_up)
            except (NotImplementedError, RuntimeError, ValueError):
                pass

    def on_unmount(self) -> None:
        import asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        for sig in (signal.SIGHUP, signal.SIGTERM):
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass

    def hang_up(self) -> None:
        """SIGHUP/SIGTERM: stop the run at a checkpoint, then exit; without a run, exit now."""
        if self.training.active:
            self.exit_when_stopped = True
            self.stop_training()
        else:
            self.exit(0)

    # Navigation -------------------------------------------------------------------------

    def goto(self, name: str) -> None:
        """Show a screen, returning to it if it is already open below, so the stack stays short."""
        from tui.screens import FRESH, SCREENS

        if name == "training":
            if self.screen is not self.get_screen("training"):
                if self.get_screen("training") in self.screen_stack:
                    while self.screen is not self.get_screen("training"):
                        self.pop_screen()
                else:
                    self.push_screen("training")
            return
        cls = SCREENS[name]
        for index, screen in enumerate(self.screen_stack):
            if type(screen) is cls:
                for _ in range(len(self.screen_stack) - 1 - index):
                    self.pop_screen()
                if name in FRESH:
                    self.switch_screen(cls())
                return
        self.push_screen(cls())

    def action_goto(self, name: str) -> None:
        self.goto(name)

    # Training ---------------------------------------------------------------------------

    def start_training(self, config: RunConfig, resume: str | None = None) -> None:
        if self.training.active:
            self.notify("A run is already in progress.", severity="warning")
            return
        self.config = config
        self.training = TrainingLog(status="preparing", run_dir=resume)
        self.train_stop = threading.Event()
        self.train_done = threading.Event()
        self.exit_when_stopped = False
        self.get_screen("training").reset()
        self.goto("training")
        self._train(config, resume)

    @work(thread=True, exclusive=True, group="train", exit_on_error=False)
    def _train(self, config: RunConfig, resume: str | None) -> None:
        worker = get_current_worker()
        try:
            self.backend.train(config, lambda e: self.post_message(EngineEventReceived(e, "train")),
                               self.train_stop, resume=resume)
        except Exception as exc:  # the engine reports failures as events; this is the last resort
            if not worker.is_cancelled:
                self.post_message(WorkFailed("train", f"{type(exc).__name__}: {exc}"))
        finally:
            _collect_run_garbage()
            self.train_done.set()

    def stop_training(self) -> None:
        if self.training.active:
            self.train_stop.set()
            self.training.status = "stopping"
            self.get_screen("training").refresh_status()

    def on_engine_event_received(self, message: EngineEventReceived) -> None:
        if message.origin != "train":
            return
        event = message.event
        if isinstance(event, TrainStarted):
            _freeze_heap()
        line = self.training.apply(event)
        self.get_screen("training").show_event(event, line)
        if not self.training.active:
            if self.training.run_dir:
                self.export_run_dir = self.training.run_dir
            if self.exit_when_stopped:
                self.exit(0)

    def on_work_failed(self, message: WorkFailed) -> None:
        if message.origin != "train":
            return
        from engine.events import TrainFailed

        self.on_engine_event_received(EngineEventReceived(
            TrainFailed(reason=message.error, advice="This is a bug in ftui or the engine; the log above has the details."),
            "train"))

    async def action_quit(self) -> None:
        if not self.training.active:
            self.exit(0)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.exit_when_stopped = True
                self.stop_training()
                self.notify("Stopping the run: ftui exits once the checkpoint is written.")

        self.push_screen(ConfirmScreen("A run is in progress. Stop it (a checkpoint is saved) and quit?"), answered)

    # Shared figures ---------------------------------------------------------------------

    def memory_need(self, estimate: Any) -> float | None:
        """What a run would take from the budget: without a GPU there is no CUDA context or
        caching allocator, only the tensors themselves (as the engine's CPU recommendation counts)."""
        if estimate is None:
            return None
        report = self.hardware
        return estimate.tensors_gib if report is not None and not report.gpus else estimate.peak_gib

    def memory_budget(self) -> tuple[float | None, str]:
        """The memory a run gets: the freest GPU's free VRAM, or RAM in CPU mode."""
        report = self.hardware
        if report is None:
            return None, "free VRAM"
        if report.gpus:
            return max(g.free_gib for g in report.gpus), "free VRAM"
        return report.ram_gib, "RAM (CPU mode)"


def run_app(preset: str | None = None) -> int:
    app = FtuiApp(preset=preset)
    try:
        code = app.run()
    finally:
        # The terminal can vanish mid-run (SSH dropped): never let the process end before the
        # engine has written the stop checkpoint.
        if not app.train_done.is_set():
            app.train_stop.set()
            app.train_done.wait(STOP_WAIT_S)
    return int(code or 0)
