"""What a person reads at 80x24, in any colour system: each fact said once, on/off states as
text rather than colour, and the footer naming the help key that works on the screen."""

from __future__ import annotations

import pytest
from textual.widgets._footer import FooterKey

from tests.tui.test_flow import SIZE, settle, text_of
from tui.app import FtuiApp
from tui.screens.config_form import ConfigScreen
from tui.screens.dialogs import HelpScreen
from tui.screens.export import ExportScreen
from tui.widgets.toggles import CheckList, TextSwitch


def lines_of(widget) -> list[str]:
    return [widget.render_line(y).text.rstrip() for y in range(widget.size.height)]


def footer_keys(app) -> dict[str, str]:
    return {key.description: key.key_display for key in app.screen.query(FooterKey)}


async def test_cpu_card_gives_the_cause_once_and_leaves_the_advice_to_the_recommendation(backend):
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        hardware = text_of(app, "#hardware")
        assert hardware.count("no NVIDIA driver found (the NVML library is missing)") == 1
        assert hardware.count("2 CPU cores, 24.0 GiB RAM") == 1
        assert "practical" not in hardware and "CPU mode with" not in hardware


async def test_export_types_read_as_checked_or_not_and_space_toggles(backend):
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.goto("export")
        await settle(app, pilot)
        assert isinstance(app.screen, ExportScreen)
        quants = app.screen.query_one(CheckList)
        lines = lines_of(quants)
        assert lines[0].startswith("[ ] F16") and "lossless" in lines[0]
        assert lines[2].startswith("[x] Q8_0") and "near-lossless" in lines[2]
        assert any(line.startswith("[ ] Q4_K_M") and "trade-off" in line for line in lines)
        await pilot.press("space")  # F16 is highlighted
        await pilot.pause()
        assert lines_of(quants)[0].startswith("[x] F16")
        assert quants.selected == ["Q8_0", "F16"]


@pytest.mark.slow
async def test_config_switches_read_on_or_off(backend):
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.goto("config")
        await settle(app, pilot)
        switch = app.screen.query_one("#field-trust_remote_code", TextSwitch)
        assert str(switch.render()) == "[ ] off"
        switch.focus()
        await pilot.press("space")
        await pilot.pause()
        assert str(switch.render()) == "[x] on"
        assert app.screen.config.trust_remote_code is True


@pytest.mark.slow
async def test_footer_shows_f1_which_works_in_a_text_field_while_question_mark_is_typed(backend):
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert footer_keys(app)["Help"] == "F1"
        await pilot.press("question_mark")  # no text field on the home screen: ? still opens help
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        assert "F1, ?  Help" in app.screen.source
        await pilot.press("escape")
        app.goto("config")
        await settle(app, pilot)
        assert isinstance(app.screen, ConfigScreen)
        assert footer_keys(app)["Help"] == "F1"
        name = app.screen.query_one("#field-name")
        assert app.focused is name
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, ConfigScreen) and name.value.endswith("?")
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)


@pytest.mark.slow
async def test_every_footer_key_fits_in_80_columns(backend):
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        for name in ("home", "config", "export", "runs", "training", "chat", "sweep"):
            if name != "home":
                app.goto(name)
                await settle(app, pilot)
            keys = list(app.screen.query(FooterKey))
            palette = next(key for key in keys if key.has_class("-command-palette"))
            for key in keys:
                if key is not palette:
                    assert key.region.width and key.region.right <= palette.region.x, (name, key.description)
