"""The first screen: what this machine has and what it can train, with one key to accept, and the
doctor's one line on the install with a key to its checks.

The doctor runs after the first paint, in a worker, and its checks in a process of their own
(Backend.doctor): the quick checks at once (a few seconds, most of it importing torch there), the
llama.cpp decode of the embedded model only when the details open. A decode on every start would
spend seconds of a small machine's CPU, and load a model onto a GPU a run may be training on,
to say what ftui's own child processes already catch: a native crash there is a failure with words."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Header, Static
from textual.worker import get_current_worker

from engine.config.build import config_from_recommendation
from engine.hardware.recommend import FAMILIES
from tui.messages import HardwareProbed, InstallChecked, WorkFailed
from tui.screens.base import FtuiScreen
from tui.screens.dialogs import DoctorScreen
from tui.widgets.bars import bar
from tui.widgets.footer import Footer

if TYPE_CHECKING:
    from engine.hardware.doctor import DoctorReport
    from engine.hardware.probe import GpuInfo, GpuProcess, HardwareReport
    from engine.hardware.recommend import Recommendation


def render_gpu(gpu: GpuInfo) -> Text:
    used = gpu.total_gib - gpu.free_gib
    text = Text(f"GPU {gpu.index}  ", style="bold")
    text.append(f"{gpu.name}\n")
    unified = gpu.unified_memory
    text.append("  memory " if unified else "  VRAM ")
    text.append_text(bar(used, gpu.total_gib, width=24, style="yellow"))
    text.append(f" {gpu.free_gib:.1f} free of {gpu.total_gib:.1f} GiB\n")
    if unified:
        text.append("  unified memory, shared with the CPU: its programs take from it too\n")
    cc = ".".join(str(n) for n in gpu.compute_capability)
    text.append(f"  compute {cc}, bf16 {'yes' if gpu.bf16 else 'no (fp16 is used)'}\n")
    if gpu.processes:
        for proc in gpu.processes:
            text.append(f"  in use: {_process_line(proc)}\n", style="yellow")
    else:
        text.append("  no other processes on it\n", style="dim")
    return text


def _process_line(proc: GpuProcess) -> str:
    used = f" {proc.used_gib:.1f} GiB" if proc.used_gib is not None else ""
    return f"{proc.name or '?'} (pid {proc.pid}){used}"


def render_cpu(report: HardwareReport) -> Text:
    """Once each: why there is no GPU, the cores and RAM; what CPU mode can train is the
    recommendation's reason, in the card below."""
    text = Text()
    text.append(f"CPU mode: {report.no_gpu_cause or 'no usable NVIDIA GPU'}", style="bold yellow")
    text.append(f"\n  {report.cpu_cores} CPU cores, {report.ram_gib:.1f} GiB RAM")
    return text


def render_recommendation(rec: Recommendation, family: str | None = None) -> Text:
    """The plan; `family` (on a GPU) names the model family it was made within and the key to the next."""
    text = Text("Recommended", style="bold")
    if family is not None:
        following = FAMILIES[(FAMILIES.index(family) + 1) % len(FAMILIES)]
        text.append(f" within {family}", style="bold")
        text.append(f" (f: {following}; {len(FAMILIES)} families)", style="dim")
    text.append("\n")
    text.append(f"  model       {rec.model}\n")
    text.append(f"  method      {rec.method}\n")
    text.append(f"  batch       {rec.batch_size} x {rec.grad_accum} accumulation "
                f"(effective {rec.batch_size * rec.grad_accum})\n")
    text.append(f"  sequence    {rec.seq_len} tokens\n")
    text.append("  peak        ")
    if rec.free_gib:
        text.append_text(bar(rec.peak_gib, rec.free_gib, width=16))
        text.append(f" {rec.peak_gib:.1f} of {rec.free_gib:.1f} GiB ")
        text.append("fits" if rec.fits else "does not fit", style="green" if rec.fits else "bold red")
    else:
        text.append(f"{rec.peak_gib:.1f} GiB")
    text.append(f"\n  why: {rec.reason}", style="italic")
    return text


def render_doctor(report: DoctorReport | None, error: str | None, running: bool) -> Text:
    """"doctor: all 7 checks pass", "doctor: 1 warning — press k", or that it is checking."""
    if error:
        return Text.assemble(("doctor: the checks could not run — press k", "bold red"))
    if report is None:
        return Text("doctor: checking this install…", style="dim")
    again = " (checking again…)" if running else ""
    if report.problems:
        return Text.assemble((f"doctor: {report.summary()} — press k", "bold red" if report.errors else "bold yellow"),
                             (again, "dim"))
    more = "k: details" if report.decoded else "k: details and a llama.cpp decode"
    return Text.assemble((f"doctor: {report.summary()}", "green"), (f"  ({more}){again}", "dim"))


class HomeScreen(FtuiScreen):
    TITLE = "Home"
    DOCS = "docs/tui.md#home"
    HELP = ("The hardware ftui found and the largest model and batch that fit it. "
            "Enter takes the recommendation into the configuration form; the other keys open "
            "the other screens. On a GPU, f plans within the next model family (llama, qwen3, gemma3, "
            "mistral, phi4): the largest of its models that fits, and Enter takes that one. "
            "The doctor's line checks this install: k opens its checks, each with its "
            "fix, and runs a llama.cpp decode. ctrl+p opens the command palette.")
    BINDINGS = [
        Binding("enter", "accept", "Accept", id="accept"),
        Binding("p", "app.goto('presets')", "Presets", id="presets"),
        Binding("c", "app.goto('config')", "Config", id="config"),
        Binding("d", "app.goto('dataset')", "Data", id="dataset"),
        Binding("t", "app.goto('training')", "Training", id="training"),
        Binding("r", "app.goto('runs')", "Runs", id="runs"),
        Binding("h", "app.goto('chat')", "Chat", id="chat"),
        # Off the footer, which has no room for it at 80 columns: the doctor's line names the key.
        Binding("k", "doctor", "Doctor", id="doctor", show=False),
        # Named in the recommendation's card, which it changes.
        Binding("f", "next_family", "Family", id="family", show=False),
    ]
    family = FAMILIES[0]
    """The model family the GPU recommendation plans within (`ftui recommend --family`)."""
    doctor_pass: str | None = None
    """"quick" or "full" (with the decode) while a doctor's pass runs, else None."""

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="home"):
            yield Static("Probing the hardware…", id="hardware", classes="card")
            yield Static("", id="recommendation", classes="card")
            yield Static("", id="selected")
            yield Static("", id="doctor")
        yield Footer()

    def on_mount(self) -> None:
        self.show_selected()
        if self.session.hardware is None or self.session.recommendation is None:
            self.probe(self.session.hardware)
        else:
            self.show(self.session.hardware, self.session.recommendation)
        if self.session.doctor is None and self.session.doctor_error is None:
            self.run_doctor(decode=False)
        else:
            self.show_doctor()

    def on_screen_resume(self) -> None:
        self.show_selected()

    def show_selected(self) -> None:
        config = self.session.config
        self.query_one("#selected", Static).update(
            Text.assemble(("Selected: ", "bold"), f"{config.model}, {config.method}, {config.dataset}",
                          (f"  ({self.session.config_source})", "dim")))

    @work(thread=True, exclusive=True, group="probe", exit_on_error=False)
    def probe(self, report: HardwareReport | None = None) -> None:
        """Probe the hardware (unless `report` is given) and plan within the current family."""
        try:
            report = report or self.ftui.backend.probe()
            rec = self.ftui.backend.recommend(report, self.family, self.session.config.output_dir)
        except Exception as exc:
            self.post_message(WorkFailed("probe", f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(HardwareProbed(report, rec))

    def on_hardware_probed(self, message: HardwareProbed) -> None:
        self.session.hardware = message.report
        self.session.recommendation = message.recommendation
        self.show(message.report, message.recommendation)
        self.refresh_bindings()

    def on_work_failed(self, message: WorkFailed) -> None:
        self.query_one("#hardware", Static).update(Text(f"Hardware probe failed: {message.error}", style="bold red"))

    def show(self, report: HardwareReport, rec: Recommendation) -> None:
        if report.gpus:
            text = Text()
            for gpu in report.gpus:
                text.append_text(render_gpu(gpu))
            text.append(f"driver {report.driver}, {report.cpu_cores} CPU cores, {report.ram_gib:.0f} GiB RAM",
                        style="dim")
        else:
            text = render_cpu(report)
        self.query_one("#hardware", Static).update(text)
        self.query_one("#recommendation", Static).update(
            render_recommendation(rec, self.family if report.gpus else None))

    def action_next_family(self) -> None:
        self.family = FAMILIES[(FAMILIES.index(self.family) + 1) % len(FAMILIES)]
        self.query_one("#recommendation", Static).update(Text(f"Planning within {self.family}…", style="dim"))
        self.probe(self.session.hardware)

    # The doctor ------------------------------------------------------------------------

    def run_doctor(self, decode: bool) -> None:
        """A doctor's pass in a worker: the quick checks, or all of them with the llama.cpp decode."""
        self.doctor_pass = "full" if decode else "quick"
        self.show_doctor()
        self.check_install(self.session.config.output_dir, decode)

    @work(thread=True, exclusive=True, group="doctor", exit_on_error=False)
    def check_install(self, output_dir: str, decode: bool) -> None:
        worker = get_current_worker()
        try:
            report, error = self.ftui.backend.doctor(output_dir, decode), None
        except Exception as exc:  # the checks' own process crashed (NativeCrash), or a bug
            report, error = None, str(exc) or type(exc).__name__
        if not worker.is_cancelled:  # a full pass replaced this quick one
            self.post_message(InstallChecked(report, error))

    def on_install_checked(self, message: InstallChecked) -> None:
        session = self.session
        if message.report is not None:
            session.doctor = message.report
        session.doctor_error = message.error
        self.doctor_pass = None
        self.show_doctor()

    def show_doctor(self) -> None:
        session = self.session
        running = self.doctor_pass is not None
        self.query_one("#doctor", Static).update(render_doctor(session.doctor, session.doctor_error, running))
        if isinstance(self.app.screen, DoctorScreen):
            self.app.screen.show(session.doctor, session.doctor_error, running)

    def action_doctor(self) -> None:
        session = self.session
        if self.doctor_pass != "full" and not (session.doctor is not None and session.doctor.decoded):
            self.run_doctor(decode=True)
        self.app.push_screen(DoctorScreen(session.doctor, session.doctor_error, self.doctor_pass is not None,
                                     lambda: self.run_doctor(decode=True)))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "accept" and self.session.recommendation is None:
            return None
        if action == "next_family" and not (self.session.hardware is not None and self.session.hardware.gpus):
            return None  # on the CPU every family plans the embedded model
        # The home screen is the bottom of the stack: there is nothing to go back to.
        return action != "back"

    def action_accept(self) -> None:
        session = self.session
        if session.recommendation is None or session.hardware is None:
            return  # greyed out by check_action until the probe has answered
        session.choose_config(*config_from_recommendation(
            session.recommendation, session.hardware, self.ftui.backend.presets(), session.config))
        self.ftui.goto("config")
