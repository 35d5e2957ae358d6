"""Snapshots of the main screens at 80x24 on the fake engine (fixed data, no clock, no paths
that change between runs). Update with `pytest tests/tui/test_snapshots.py --snapshot-update`
after checking the new SVGs by eye."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input

from tests.tui.fake_backend import FakeBackend
from tui.app import FtuiApp

RUNS = Path("/runs")  # the fake writes nothing there; a fixed path keeps the pictures stable


def make_app(**options) -> FtuiApp:
    return FtuiApp(backend=FakeBackend(runs_dir=RUNS, **options))


async def settle(pilot) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    for field in pilot.app.screen.query(Input):
        # A steady cursor: under a busy CPU the picture is taken after a blink has hidden it.
        field.cursor_blink = False
    await pilot.pause()


def test_home_cpu(snap_compare):
    assert snap_compare(make_app(), run_before=settle)


def test_home_gpu(snap_compare):
    assert snap_compare(make_app(gpu=True), run_before=settle)


def test_presets_gpu(snap_compare):
    async def before(pilot):
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)

    assert snap_compare(make_app(gpu=True), run_before=before)


@pytest.mark.slow
def test_config_form_with_an_error(snap_compare):
    async def before(pilot):
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        pilot.app.screen.query_one("#field-name").value = "bad/name"
        pilot.app.screen.set_focus(None)  # no blinking cursor in the picture
        await pilot.pause()

    assert snap_compare(make_app(), run_before=before)


def test_dataset_with_problems(snap_compare):
    async def before(pilot):
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)
        pilot.app.screen.query_one("#path").value = "presets/data/docker_train.jsonl"
        await pilot.press("enter")
        await settle(pilot)

    assert snap_compare(make_app(scenario="bad_dataset"), run_before=before)


def test_training_finished(snap_compare):
    async def before(pilot):
        await settle(pilot)
        pilot.app.start_training(pilot.app.session.config)
        await settle(pilot)
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(make_app(), run_before=before)


def test_export_finished(snap_compare):
    async def before(pilot):
        await settle(pilot)
        pilot.app.start_training(pilot.app.session.config)
        await settle(pilot)
        await pilot.press("e")
        await settle(pilot)
        await pilot.press("x")
        await settle(pilot)
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(make_app(), run_before=before)


def test_chat_compare(snap_compare):
    async def before(pilot):
        await settle(pilot)
        pilot.app.session.focus_run("/runs/demo", "/runs/demo/export/model-Q8_0.gguf")
        await pilot.press("h")
        await settle(pilot)
        await pilot.press("ctrl+b")
        await pilot.press(*"ps", "enter")
        await settle(pilot)
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(make_app(), run_before=before)


def test_runs(snap_compare):
    async def before(pilot):
        await settle(pilot)
        pilot.app.start_training(pilot.app.session.config)
        await settle(pilot)
        pilot.app.goto("runs")
        await settle(pilot)
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(make_app(), run_before=before)
