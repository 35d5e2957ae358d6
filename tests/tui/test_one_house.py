"""The faces show what the engine decides: one estimate, one failure, real command names, one
Protocol that the real and the fake backend both keep."""

from __future__ import annotations

import inspect

import pytest
from rich.text import Text
from textual.widgets import Input

from cli.main import build_parser
from engine.config.presets import list_presets
from engine.data import DataReport
from engine.data.types import DataProblem
from engine.hardware.catalog import get
from engine.train.preflight import check_fits
from tests.tui.fake_backend import FakeBackend
from tests.tui.test_flow import SIZE, settle, text_of
from tui.app import FtuiApp
from tui.backend import Backend, EngineBackend
from tui.screens.dataset import MAX_PROBLEMS_SHOWN, render_problems
from tui.screens.export import ExportScreen
from tui.session import Draft, Host, RunFocus, Session

MODELS = ("llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b")


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("checkpointing", [True, False])
def test_the_memory_bar_shows_what_preflight_judges_by(model, checkpointing):
    for preset in list_presets():
        config = preset.apply().replace(model=model, gradient_checkpointing=checkpointing, max_seq_len=2048)
        bar = Backend().estimate(config)
        judged = check_fits(config, get(model), free_gib=10_000.0)
        assert bar is not None and judged is not None
        assert bar.peak_gib == judged.peak_gib, (preset.name, bar.breakdown, judged.breakdown)


@pytest.mark.parametrize("implementation", [Backend, FakeBackend])
def test_backends_keep_the_protocols_signatures(implementation):
    for name, wanted in inspect.getmembers(EngineBackend, inspect.isfunction):
        if name.startswith("_"):
            continue
        got = getattr(implementation, name)
        want_params = [(p.name, p.kind, p.default) for p in inspect.signature(wanted).parameters.values()]
        got_params = [(p.name, p.kind, p.default) for p in inspect.signature(got).parameters.values()]
        assert got_params == want_params, f"{implementation.__name__}.{name}"


def test_the_app_keeps_what_the_screens_may_ask_of_it(tmp_path):
    """Screens see the app as tui.session.Host, and mypy holds them to it; the app itself is held
    to it here, as mypy does not follow its Textual base class."""
    app = FtuiApp(backend=FakeBackend(runs_dir=tmp_path))
    assert isinstance(app.session, Session)
    assert isinstance(app.backend, FakeBackend)
    for name, wanted in vars(Host).items():
        if name.startswith("_") or not inspect.isfunction(wanted):
            continue
        want_params = [(p.name, p.kind, p.default) for p in inspect.signature(wanted).parameters.values()]
        got_params = [(p.name, p.kind, p.default) for p in inspect.signature(getattr(FtuiApp, name)).parameters.values()]
        assert got_params == want_params, f"FtuiApp.{name}"


def test_the_dataset_hint_names_a_command_that_exists(tmp_path):
    problems = tuple(DataProblem("d.jsonl", i, None, "not valid JSON") for i in range(MAX_PROBLEMS_SHOWN + 3))
    report = DataReport("d.jsonl", "messages", 30, 7, problems, None)
    hint = render_problems(report).plain
    command = hint[hint.index("(ftui ") + len("(ftui "):hint.index(" lists all")]
    args = build_parser().parse_args([*command.split(), str(tmp_path / "d.jsonl")])
    assert args.command == "data"


@pytest.mark.slow
async def test_an_export_failure_is_shown_once(tmp_path, monkeypatch):
    """The real engine on a folder that is not a run: one ExportFailed, one result line."""
    app = FtuiApp(backend=Backend())
    app.session.focus_run(str(tmp_path / "not-a-run"))
    finishes: list[str] = []
    original = ExportScreen._finish

    def counted(self: ExportScreen, outcome: Text) -> None:
        finishes.append(outcome.plain)
        original(self, outcome)

    monkeypatch.setattr(ExportScreen, "_finish", counted)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.goto("export")
        await settle(app, pilot)
        await pilot.press("x")
        await settle(app, pilot)
        assert len(finishes) == 1, finishes
        assert "is not a run directory (no config.toml)" in finishes[0]


async def test_choosing_another_run_forgets_the_gguf_of_the_last(tmp_path):
    """Chat opened one run's GGUF while its evaluate key evaluated another run: the run chosen
    and its GGUF are now one state, changed together."""
    backend = FakeBackend(runs_dir=tmp_path)
    app = FtuiApp(backend=backend)
    backend._record("/runs/b", app.session.config, "finished", 12, 12, None, artifacts=("adapter",))
    app.session.focus_run("/runs/a", "/runs/a/export/model-Q8_0.gguf")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.goto("runs")
        await settle(app, pilot)
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.session.run_focus == RunFocus("/runs/b", None)
        app.goto("chat")
        await settle(app, pilot)
        assert app.screen.query_one("#gguf", Input).value == ""


async def test_a_resumed_run_is_the_config_shown_with_its_source(tmp_path):
    backend = FakeBackend(runs_dir=tmp_path)
    app = FtuiApp(backend=backend)
    resumed = app.session.config.replace(learning_rate=1e-5, name="older")
    backend._record("/runs/older", resumed, "stopped", 5, 12, None, artifacts=("adapter",))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.goto("runs")
        await settle(app, pilot)
        await pilot.press("u")
        await settle(app, pilot)
        assert app.session.draft == Draft(resumed, "run older")


def test_evaluating_a_folder_that_is_not_a_run_fails_once_as_an_event_and_a_result(tmp_path):
    from engine.eval.evaluate import evaluate
    from engine.events import EvalFailed

    events: list = []
    report = evaluate(tmp_path / "not-a-run", events.append)
    failures = [e for e in events if isinstance(e, EvalFailed)]
    assert failures == [report.failure]
    assert "is not a run directory (no config.toml)" in report.failure.reason
    assert report.items == () and not (tmp_path / "not-a-run" / "eval.json").exists()


@pytest.mark.slow
async def test_an_evaluation_failure_is_shown_in_words_not_as_an_exception_name(tmp_path):
    app = FtuiApp(backend=Backend())
    app.session.focus_run(str(tmp_path / "not-a-run"), str(tmp_path / "model.gguf"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.goto("chat")
        await settle(app, pilot)
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        shown = text_of(app, "#eval-status")
        assert shown.startswith("Evaluation failed"), shown
        assert "is not a run directory (no config.toml)" in shown and "Error" not in shown, shown


@pytest.mark.slow
async def test_a_file_chat_cannot_load_is_said_in_words(tmp_path):
    notes = tmp_path / "notes.gguf"
    notes.write_text("these are my notes, not a model\n")
    app = FtuiApp(backend=Backend())
    app.session.focus_run(str(tmp_path), str(notes))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.goto("chat")
        await settle(app, pilot)
        await pilot.press(*"hi", "enter")
        await settle(app, pilot)
        shown = text_of(app, "#transcript-tuned")
        assert "is not a GGUF file" in shown and "GGUFFileError" not in shown, shown
