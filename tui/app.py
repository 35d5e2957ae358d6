"""The ftui Textual app: owns the session the screens share (tui/session.py: the config being
edited, the hardware, the training run) and the workers that follow a run or a sweep.

A run trains in a process of its own (engine.train.detached), so it outlives this app: closing
ftui, a dropped SSH connection (SIGHUP) or a dead terminal leaves it training, and the next
`ftui` opens its training screen again. A sweep trains each variant in such a process too, but
the sweep itself (which variant next, the choice) is a worker of this app: the engine's sweep has
no process of its own, so closing ftui lets the variant in training finish and starts no more.
Export and chat work in this process and end with it."""

from __future__ import annotations

import gc
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.message import Message
from textual.worker import get_current_worker

from engine.config.schema import ConfigError, RunConfig
from engine.events import TrainFailed, TrainFinished, TrainStarted
from tui.backend import Backend, EngineBackend
from tui.commands import ScreenCommands
from tui.desktop_alert import desktop_sequence
from tui.messages import (
    EngineEventReceived,
    RunHistoryRead,
    SweepFinished,
    TrainingEventLogged,
    TrainingLogReplaced,
    TrainingStatusChanged,
    WorkFailed,
)
from tui.screens.dialogs import ConfirmScreen
from tui.session import Draft, Session
from tui.sweep_log import SweepLog
from tui.training_log import TrainingLog

if TYPE_CHECKING:
    from engine.runs import GpuHolder
    from engine.sweep import Variant
    from engine.train import RunResult

DEFAULT_PRESET = "demo"
HANGUP_GRACE_S = 5.0


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

    def __init__(self, backend: EngineBackend | None = None, preset: str | None = None) -> None:
        super().__init__()
        self.backend: EngineBackend = backend if backend is not None else Backend()
        self.train_stop = threading.Event()
        self.train_done = threading.Event()
        self.train_done.set()
        self.exit_when_stopped = False
        self.sweep_stop = threading.Event()
        self.hangup_watchdog: threading.Timer | None = None
        self.session = Session(Draft(*self._initial_config(preset)))
        """What the screens share (tui/session.py)."""

    def _initial_config(self, preset: str | None) -> tuple[RunConfig, str]:
        """The preset named on the command line, else the demo on the embedded model."""
        wanted = preset or DEFAULT_PRESET
        self._startup_problem: str | None = None
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
        self._find_live_run()

    def _install_signal_handlers(self) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        for sig, handler in ((signal.SIGHUP, self.hang_up), (signal.SIGTERM, self.terminate)):
            try:
                loop.add_signal_handler(sig, handler)
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
        """SIGHUP, the terminal is gone: exit; a run trains on in its own process."""
        # Textual's shutdown writes a last frame to the dead terminal and can wait forever for its
        # writer thread (seen under load in the tmux test): past the grace the process just leaves.
        # Nothing is lost: the run is another process, and exports are written atomically.
        # Headless (under tests) there is no terminal to block on, and the process is not ours to end.
        if not self.is_headless:
            self.hangup_watchdog = threading.Timer(HANGUP_GRACE_S, os._exit, args=(128 + signal.SIGHUP,))
            self.hangup_watchdog.daemon = True
            self.hangup_watchdog.start()
        self.exit(0)

    def terminate(self) -> None:
        """SIGTERM: stop the run (or the sweep) at a checkpoint, then exit; without one, exit now."""
        if self.session.training.active or self.session.sweep.active:
            self.exit_when_stopped = True
            self.stop_training()
            self.stop_sweep()
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

    def _busy(self) -> bool:
        """A run or a sweep is in progress (and the user is told): nothing else starts."""
        training = self.session.training.active
        if training or self.session.sweep.active:
            self.notify(f"A {'run' if training else 'sweep'} is already in progress.", severity="warning")
        return training or self.session.sweep.active

    def start_training(self, config: RunConfig, resume: str | None = None) -> None:
        """Start a run; on a GPU that a live ftui run already uses, ask first."""
        if self._busy():
            return
        if self.session.hardware is not None and self.session.hardware.gpus:
            self._check_gpu_then_train(config, resume)
        else:
            self._begin_training(config, resume)

    @work(thread=True, exclusive=True, group="gpu-check", exit_on_error=False)
    def _check_gpu_then_train(self, config: RunConfig, resume: str | None) -> None:
        output_dir = str(Path(resume).parent) if resume else config.output_dir
        try:
            holders = self.backend.gpu_holders(output_dir)
        except Exception:  # noqa: BLE001 - a failed NVML query must not keep the run from starting
            holders = []
        self.call_from_thread(self._ask_then_train, config, resume, holders)

    def _ask_then_train(self, config: RunConfig, resume: str | None, holders: list[GpuHolder]) -> None:
        if not holders:
            self._begin_training(config, resume)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._begin_training(config, resume)

        held = "; ".join(h.describe() for h in holders)
        self.push_screen(ConfirmScreen(f"A live ftui run uses the GPU: {held}. A second run shares its memory "
                                       "and either may run out. Start it anyway?"), answered)

    def _begin_training(self, config: RunConfig, resume: str | None) -> None:
        if self.session.training.active or self.session.sweep.active:
            return
        if config != self.session.config:
            self.session.choose_config(config, "the run's own config")
        if resume:
            # The curve so far: the new session's TrainStarted drops what came after its checkpoint.
            self.session.training = TrainingLog.replay(self.backend.run_events(resume), "preparing", resume)
            self.session.training.status = "preparing"
            self.session.training.last_step = None  # the last session's rate and ETA: none of this one's yet
        else:
            self.session.training = TrainingLog(status="preparing")
        self._follow_run(lambda leave: self.backend.train(
            config, lambda e: self.post_message(EngineEventReceived(e, "train")), self.train_stop,
            resume=resume, leave=leave))

    def attach_run(self, run_dir: str) -> None:
        """Show a run that trains in another process (found at start, or opened from the runs
        screen): its curve so far, then live; x stops it through its run directory."""
        if self.session.training.active:
            return
        self.session.training = TrainingLog(status="running", run_dir=run_dir)
        self._follow_run(lambda leave: self.backend.attach(
            run_dir, lambda e: self.post_message(EngineEventReceived(e, "train")), self.train_stop, leave=leave,
            on_backlog=lambda events: self.post_message(RunHistoryRead(events, run_dir))))

    def _follow_run(self, follow: Callable[[threading.Event], RunResult | None]) -> None:
        self.train_stop = threading.Event()
        self.train_done = threading.Event()
        self.exit_when_stopped = False
        self._tell_training_screen(TrainingLogReplaced())
        self.goto("training")
        self._train(follow)

    def _tell_training_screen(self, message: Message) -> None:
        """The training screen draws the session's TrainingLog: the app says what changed in a
        message (tui/messages.py) and never calls into the screen."""
        self.get_screen("training").post_message(message)

    @work(thread=True, exclusive=True, group="train", exit_on_error=False)
    def _train(self, follow: Callable[[threading.Event], RunResult | None]) -> None:
        worker = get_current_worker()
        try:
            # Cancelled when the app exits: the follower leaves and the run goes on.
            follow(worker.cancelled_event)
        except Exception as exc:  # the engine reports failures as events; this is the last resort
            if not worker.is_cancelled:
                self.post_message(WorkFailed("train", f"{type(exc).__name__}: {exc}"))
        finally:
            _collect_run_garbage()
            self.train_done.set()

    @work(thread=True, exclusive=True, group="find-live", exit_on_error=False)
    def _find_live_run(self) -> None:
        """At start: a run that trains now (started from an earlier ftui, or headless) is shown."""
        try:
            live = [r for r in self.backend.list_runs(self.session.config.output_dir) if r.status == "running"]
        except Exception:  # noqa: BLE001 - an unreadable runs folder must not stop the app starting
            return
        if live:
            self.call_from_thread(self._show_live_run, live[0].path)

    def _show_live_run(self, run_dir: str) -> None:
        if not self.session.training.active:
            self.attach_run(run_dir)
            self.notify(f"Training in the background: {run_dir}. x stops it; leaving ftui does not.")

    def stop_training(self) -> None:
        if self.session.training.active:
            self.train_stop.set()
            self.session.training.status = "stopping"
            self._tell_training_screen(TrainingStatusChanged())

    # Sweeps ------------------------------------------------------------------------------

    def start_sweep(self, variants: list[Variant], measure_retention: bool) -> None:
        """Train the variants one after another (engine.sweep) and show them on the sweep screen."""
        if self._busy():
            return
        self.session.sweep = SweepLog([v.label for v in variants], status="running")
        self.sweep_stop = threading.Event()
        self.exit_when_stopped = False
        self.goto("sweep")
        self._sweep(variants, measure_retention)

    @work(thread=True, exclusive=True, group="sweep", exit_on_error=False)
    def _sweep(self, variants: list[Variant], measure_retention: bool) -> None:
        worker = get_current_worker()
        try:
            result = self.backend.sweep(variants, lambda e: self.post_message(EngineEventReceived(e, "sweep")),
                                        self.sweep_stop, measure_retention, leave=worker.cancelled_event)
            self.post_message(SweepFinished(result))
        except Exception as exc:  # the engine reports a variant's failure as events; this is the last resort
            if not worker.is_cancelled:
                self.post_message(WorkFailed("sweep", f"{type(exc).__name__}: {exc}"))
        finally:
            _collect_run_garbage()

    def stop_sweep(self) -> None:
        if self.session.sweep.status == "running":
            self.sweep_stop.set()
            self.session.sweep.stopping()

    def on_sweep_finished(self, message: SweepFinished) -> None:
        self.session.sweep.finish(message.result)
        chosen = message.result.best
        self.notify(f"Sweep {self.session.sweep.status}: " + (f"chose {chosen}" if chosen else "no variant chosen"),
                    severity="information" if chosen else "warning", timeout=10)
        if self.exit_when_stopped:
            self.exit(0)

    def on_engine_event_received(self, message: EngineEventReceived) -> None:
        if message.origin == "sweep":
            self.session.sweep.apply(message.event)
            return
        if message.origin != "train":
            return
        event = message.event
        if isinstance(event, TrainStarted):
            _freeze_heap()
        self.session.training.apply(event)
        self._tell_training_screen(TrainingEventLogged(event))
        if isinstance(event, (TrainFinished, TrainFailed)):
            self.alert_run_ended(event)
        if not self.session.training.active:
            if self.session.training.run_dir and self.session.training.run_dir != self.session.run_focus.run_dir:
                self.session.focus_run(self.session.training.run_dir)
            if self.exit_when_stopped:
                self.exit(0)

    def alert_run_ended(self, event: TrainFinished | TrainFailed) -> None:
        """The bell, and a desktop notification through the terminal where it shows them."""
        name = Path(self.session.training.run_dir or "run").name
        if isinstance(event, TrainFinished):
            title, body = f"ftui: {name} {'stopped' if event.stopped else 'finished'}", event.reason
        else:
            title, body = f"ftui: {name} failed", event.reason
        self.bell()
        sequence = desktop_sequence(title, body, os.environ)
        if sequence and not self.is_headless and self._driver is not None:
            self._driver.write(sequence)  # as App.bell writes its BEL: Textual has no public raw write

    def on_run_history_read(self, message: RunHistoryRead) -> None:
        self.session.training = TrainingLog.replay(message.events, "running", message.run_dir)
        self._tell_training_screen(TrainingLogReplaced())
        if not self.session.training.active:  # it had ended (or its process died) before ftui looked
            self.session.focus_run(message.run_dir)

    def on_work_failed(self, message: WorkFailed) -> None:
        if message.origin == "sweep":
            self.session.sweep.fail(message.error)
            if self.exit_when_stopped:
                self.exit(0)
            return
        if message.origin != "train":
            return
        from engine.events import TrainFailed

        self.on_engine_event_received(EngineEventReceived(
            TrainFailed(reason=message.error, advice="This is a bug in ftui or the engine; the log above has the details."),
            "train"))

    async def action_quit(self) -> None:
        if self.session.sweep.status == "running":
            question = ("Quit ftui? The sweep ends here: the variant in training finishes in its own process, "
                        "the variants after it do not start.")
        elif self.session.training.active and self.session.training.status != "stopping":
            question = ("Quit ftui? The run keeps training in the background and ftui shows it "
                        "again when started; x on the training screen stops it.")
        else:
            self.exit(0)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.exit(0)

        self.push_screen(ConfirmScreen(question), answered)


def run_app(preset: str | None = None) -> int:
    app = FtuiApp(preset=preset)
    code = int(app.run() or 0)
    if app.hangup_watchdog is not None:
        app.hangup_watchdog.cancel()
    return code
