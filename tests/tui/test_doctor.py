"""The doctor's line on the home screen and its details behind k, at 80x24 on the fake engine."""

from __future__ import annotations

import threading

from tests.tui.fake_backend import FakeBackend
from tests.tui.test_flow import SIZE, settle, text_of
from tui.app import FtuiApp
from tui.screens.dialogs import DoctorScreen, HelpScreen
from tui.screens.home import HomeScreen


def details(app) -> str:
    """The checks as the modal draws them, wrapped lines joined, runs of spaces as one."""
    widget = app.screen.query_one("#doctor-checks")
    return " ".join(" ".join(widget.render_line(y).text.split()) for y in range(widget.size.height))


def home_line(app) -> str:
    return str(app.screen_stack[1].query_one("#doctor").render())


async def test_the_line_shows_the_quick_checks_and_k_opens_every_check_with_the_decode(backend):
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert isinstance(app.screen, HomeScreen)
        assert text_of(app, "#doctor") == "doctor: all 7 checks pass  (k: details and a llama.cpp decode)"
        assert backend.doctor_calls == [(app.session.config.output_dir, False)]
        await pilot.press("k")
        assert isinstance(app.screen, DoctorScreen)
        await settle(app, pilot)
        shown = details(app)
        for name in ("NVIDIA driver", "torch", "bitsandbytes", "llama.cpp build", "disk space", "write access", "hub",
                     "llama.cpp decode"):
            assert f"ok {name} " in shown
        assert "ok llama.cpp decode 32 tokens greedily on the CPU: 120 tokens/s" in shown
        assert backend.doctor_calls[-1] == (app.session.config.output_dir, True)
        assert home_line(app) == "doctor: all 8 checks pass  (k: details)"
        await pilot.press("escape")
        assert isinstance(app.screen, HomeScreen)
        await pilot.press("k")  # decoded already: the details open without another pass
        await settle(app, pilot)
        assert isinstance(app.screen, DoctorScreen) and len(backend.doctor_calls) == 2
        await pilot.press("r")
        await settle(app, pilot)
        assert len(backend.doctor_calls) == 3 and "Checking again" not in details(app)


async def test_a_problem_is_counted_on_the_line_and_its_fix_is_in_the_details(tmp_path):
    backend = FakeBackend(runs_dir=tmp_path, gpu=True, install="warn")
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert text_of(app, "#doctor") == "doctor: 1 warning — press k"
        await pilot.press("k")
        await settle(app, pilot)
        shown = details(app)
        assert "warn torch torch 2.13.0+cpu, CPU-only build" in shown
        assert 'fix: install a CUDA build of torch: make run TORCH_SPEC="torch==2.13.0' in shown


async def test_the_doctor_does_not_hold_the_first_paint(tmp_path):
    gate = threading.Event()
    backend = FakeBackend(runs_dir=tmp_path, doctor_gate=gate)
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(100):
            await pilot.pause(0.02)
            if "CPU mode" in text_of(app, "#hardware"):
                break
        assert "CPU mode" in text_of(app, "#hardware") and "smollm2-135m" in text_of(app, "#recommendation")
        assert text_of(app, "#doctor") == "doctor: checking this install…"
        gate.set()
        await settle(app, pilot)
        assert text_of(app, "#doctor").startswith("doctor: all 7 checks pass")


async def test_a_doctor_whose_process_crashed_says_so(tmp_path):
    app = FtuiApp(backend=FakeBackend(runs_dir=tmp_path, install="crash"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert text_of(app, "#doctor") == "doctor: the checks could not run — press k"
        await pilot.press("k")
        await settle(app, pilot)
        assert "The checks could not run: ftui doctor crashed (SIGSEGV, signal 11)" in details(app)


async def test_help_lists_the_doctors_key_that_the_footer_has_no_room_for(backend):
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen) and "k  Doctor" in app.screen.source
