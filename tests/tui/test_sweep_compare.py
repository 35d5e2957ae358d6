"""Sweeps and comparisons from the TUI: the sweep dialog on the config screen starts the engine's
sweep with the values typed and refuses bad ones, the sweep screen overlays every variant's curve
and names the one chosen, and the runs screen compares marked runs or a whole sweep with one key."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from tests.tui.test_flow import SIZE, settle
from tui.app import FtuiApp
from tui.screens.compare import CompareScreen
from tui.screens.config_form import ConfigScreen
from tui.screens.dialogs import ConfirmScreen, SweepDialog
from tui.screens.runs import RunsScreen
from tui.screens.sweep import SweepScreen
from tui.widgets.curves_plot import CurvesPlot

RATES = ("learning_rate=1e-05", "learning_rate=0.00025", "learning_rate=0.001")


def plot_text(app) -> str:
    return app.screen.query_one(CurvesPlot).render().plain


async def open_sweep_dialog(app, pilot) -> SweepDialog:
    app.goto("config")
    await settle(app, pilot)
    assert isinstance(app.screen, ConfigScreen)
    await pilot.press("ctrl+r")
    await settle(app, pilot)
    assert isinstance(app.screen, SweepDialog)
    return app.screen


async def type_values(app, pilot, field: str, values: str) -> None:
    app.screen.query_one("#sweep-field", Input).value = field
    box = app.screen.query_one("#sweep-values", Input)
    box.value = ""
    box.focus()
    await pilot.press(*values)
    await pilot.press("enter")
    await settle(app, pilot)


async def finish_sweep(app, pilot) -> SweepScreen:
    await settle(app, pilot)
    screen = app.screen
    assert isinstance(screen, SweepScreen)
    screen.redraw()
    await pilot.pause()
    return screen


@pytest.mark.slow
async def test_the_dialog_offers_the_presets_rate_and_gentler_ones(backend):
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        dialog = await open_sweep_dialog(app, pilot)
        assert dialog.query_one("#sweep-field", Input).value == "learning_rate"
        assert dialog.query_one("#sweep-values", Input).value == "3.5e-05, 0.00017, 0.0007"  # demo's 7e-4 / 20, / 4, 1


@pytest.mark.slow
async def test_a_sweep_runs_the_values_typed_overlays_each_variant_and_names_the_chosen(backend):
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await open_sweep_dialog(app, pilot)
        await type_values(app, pilot, "learning_rate", "1e-5, 2.5e-4, 1e-3")
        screen = await finish_sweep(app, pilot)
        assert [c for c in backend.calls if c[0] == "sweep"] == [("sweep", RATES, False)]
        assert app.session.sweep.status == "finished"
        legend = plot_text(app)
        assert "validation loss by step" in legend
        assert "learning_rate=0.00025 (chosen)" in legend
        assert "learning_rate=1e-05" in legend and "learning_rate=0.001" in legend
        verdict = str(screen.query_one("#sweep-verdict").render())
        assert verdict.startswith("Chosen (*): learning_rate=0.00025: lowest validation loss")
        await pilot.press("t")
        await pilot.pause()
        assert "training loss by step" in plot_text(app)
        # The runs sit in one sweep folder, and the runs screen compares them with one key.
        app.goto("runs")
        await settle(app, pilot)
        runs = app.screen
        assert isinstance(runs, RunsScreen)
        assert {r.group for r in runs.runs} == {"2026-01-01-1300-sweep-demo"}
        await pilot.press("v")
        await settle(app, pilot)
        assert isinstance(app.screen, CompareScreen)
        legend = plot_text(app)
        for value in ("1e-05", "0.00025", "0.001"):
            assert f"2026-01-01-1300-demo-{value}" in legend


@pytest.mark.slow
async def test_bad_sweep_values_are_explained_and_start_nothing(backend):
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await open_sweep_dialog(app, pilot)
        for field, values, message in (
            ("learning_rate", "1e-5, abc", "learning_rate: expected a number, got 'abc'"),
            ("learnin_rate", "1e-5, 5e-5", "did you mean 'learning_rate'?"),
            ("learning_rate", "1e-5, 7", "learning_rate: 7 is outside"),
            ("learning_rate", "1e-5", "give two or more values"),
            ("learning_rate", "1e-5, ", "give two or more values"),
            ("", "1e-5, 5e-5", "name one setting"),
        ):
            await type_values(app, pilot, field, values)
            assert isinstance(app.screen, SweepDialog), (field, values)
            assert message in str(app.screen.query_one("#sweep-error", Static).render()), (field, values)
        assert not [c for c in backend.calls if c[0] == "sweep"]
        await pilot.press("escape")
        await settle(app, pilot)
        assert isinstance(app.screen, ConfigScreen) and app.session.sweep.status == "idle"


@pytest.mark.slow
async def test_stopping_a_sweep_stops_the_variant_in_training_and_starts_no_more(backend):
    backend.hold_at = 3
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await open_sweep_dialog(app, pilot)
        app.screen.query_one("#sweep-values", Input).focus()
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert isinstance(app.screen, SweepScreen) and app.session.sweep.active
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        screen = await finish_sweep(app, pilot)
        assert app.session.sweep.status == "stopped"
        assert [r.status for r in app.session.sweep.runs] == ["stopped"]
        assert str(screen.query_one("#sweep-status").render()).startswith("STOPPED 1/3 variants")


async def test_compare_lays_the_marked_runs_over_one_another(backend):
    app = FtuiApp(backend=backend)
    for name in ("alpha", "beta", "gamma"):
        config = app.session.config.replace(name=name)
        backend.train(config, lambda _e: None, threading.Event())
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.goto("runs")
        await settle(app, pilot)
        assert [Path(r.path).name for r in app.screen.runs] == ["2026-01-01-1202-gamma", "2026-01-01-1201-beta",
                                                     "2026-01-01-1200-alpha"]
        assert app.screen.check_action("compare", ()) is None  # nothing marked, not a sweep
        await pilot.press("space", "down", "down", "m")
        await pilot.pause()
        table = app.screen.query_one("#runs")
        assert [str(table.get_row_at(i)[0]) for i in range(3)] == ["[x]", "[ ]", "[x]"]
        assert "[x]" in table.render_line(1).text  # the cell reads as text, not as a markup tag
        await pilot.press("v")
        await settle(app, pilot)
        assert isinstance(app.screen, CompareScreen)
        legend = plot_text(app)
        assert "2026-01-01-1202-gamma" in legend and "2026-01-01-1200-alpha" in legend
        assert "beta" not in legend
