"""Pilot tests: every screen driven by keys at 80x24 on the fake engine, and the whole flow
from the home screen to chat, with the failures a user can meet."""

from __future__ import annotations

import contextlib

import pytest

from engine.events import StepLogged, TrainFinished
from tui.app import FtuiApp
from tui.screens.chat import ChatScreen
from tui.screens.config_form import GROUPS, ConfigScreen
from tui.screens.dataset import DatasetScreen, PathSuggester
from tui.screens.export import ExportScreen
from tui.screens.home import HomeScreen
from tui.screens.presets import PresetsScreen
from tui.screens.runs import RunsScreen
from tui.screens.training import TrainingScreen

SIZE = (80, 24)


async def settle(app, pilot) -> None:
    """Let workers finish and their messages land."""
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


def text_of(app, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


def rendered(app, selector: str) -> str:
    """A Static's content as its width lays it out (a Rich table wraps its columns to fit)."""
    from rich.console import Console

    widget = app.screen.query_one(selector)
    console = Console(width=widget.content_region.width, record=True, file=open("/dev/null", "w"))
    console.print(widget.content)
    return console.export_text()


@pytest.mark.slow
async def test_cpu_home_recommends_the_embedded_demo_and_enter_accepts(backend):
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert isinstance(app.screen, HomeScreen)
        assert "CPU mode" in text_of(app, "#hardware")
        assert "smollm2-135m" in text_of(app, "#recommendation")
        await pilot.press("f")  # no family to switch on the CPU: the embedded model stays
        await settle(app, pilot)
        assert "smollm2-135m" in text_of(app, "#recommendation") and "within" not in text_of(app, "#recommendation")
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, ConfigScreen)
        assert app.session.config.model == "smollm2-135m"
        assert app.session.config_source == "preset demo"
        assert app.session.config.max_seq_len == 256


@pytest.mark.slow
async def test_gpu_home_shows_vram_processes_and_takes_the_recommended_batch(tmp_path):
    from tests.tui.fake_backend import FakeBackend

    app = FtuiApp(backend=FakeBackend(runs_dir=tmp_path, gpu=True))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        hardware = text_of(app, "#hardware")
        assert "RTX 4070" in hardware and "10.5 free of 12.0 GiB" in hardware
        assert "Xorg (pid 1234)" in hardware and "bf16 yes" in hardware
        await pilot.press("enter")
        await settle(app, pilot)
        assert (app.session.config.model, app.session.config.method, app.session.config.batch_size, app.session.config.grad_accum,
                app.session.config.max_seq_len) == ("llama-3.1-8b-4bit", "qlora", 2, 8, 2048)


@pytest.mark.slow
async def test_gpu_home_switches_family_by_key_and_enter_takes_that_familys_plan(tmp_path):
    from tests.tui.fake_backend import FakeBackend

    app = FtuiApp(backend=FakeBackend(runs_dir=tmp_path, gpu=True))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert "Recommended within llama (f: qwen3; 5 families)" in text_of(app, "#recommendation")
        await pilot.press("f")
        await settle(app, pilot)
        card = text_of(app, "#recommendation")
        assert "Recommended within qwen3 (f: gemma3" in card and "qwen3-" in card and "fits" in card
        await pilot.press("f", "f", "f", "f")  # round the five families back to Llama
        await settle(app, pilot)
        assert "within llama" in text_of(app, "#recommendation")
        await pilot.press("f", "enter")
        await settle(app, pilot)
        assert app.session.config.model.startswith("qwen3-")


@pytest.mark.slow
async def test_presets_mark_what_does_not_fit_and_number_keys_choose(tmp_path):
    from tests.tui.fake_backend import FakeBackend

    app = FtuiApp(backend=FakeBackend(runs_dir=tmp_path, gpu=True))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("enter")  # an 8B model on a 12 GB card
        await settle(app, pilot)
        app.goto("presets")
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, PresetsScreen)
        labels = {p.name: str(screen.query_one("#presets").get_option(p.name).prompt) for p in screen.presets}
        assert "does not fit: needs" in labels["full"] and "GiB more" in labels["full"]
        assert labels["low-vram"].count("fits:") == 1
        number = [p.name for p in screen.presets].index("quick-test") + 1
        await pilot.press(str(number))
        await settle(app, pilot)
        assert isinstance(app.screen, ConfigScreen)
        assert app.session.config.max_steps == 20 and app.session.config_source == "preset quick-test"


@pytest.mark.slow
async def test_form_has_every_field_and_validates_as_you_type(backend):
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.goto("config")
        await settle(app, pilot)
        screen = app.screen
        assert sorted(n for _, names in GROUPS for n in names) == sorted(app.session.config.to_dict())
        lr = screen.query_one("#field-learning_rate")
        lr.value = "0.5"
        await pilot.pause()
        assert "outside 1e-6..1e-3" in text_of(app, "#problem-learning_rate")
        assert screen.config is None
        lr.value = "abc"
        await pilot.pause()
        assert "expected a number" in text_of(app, "#problem-learning_rate")
        lr.value = "2e-4"
        await pilot.pause()
        assert not screen.query_one("#problem-learning_rate").display
        alpha = screen.query_one("#field-lora_alpha")
        alpha.value = "200"
        await pilot.pause()
        assert "warning" in text_of(app, "#problem-lora_alpha")
        assert screen.config is not None  # a warning does not block


@pytest.mark.slow
async def test_form_with_an_error_names_it_and_ctrl_t_goes_to_it(backend):
    for size in (SIZE, (60, 20)):
        app = FtuiApp(backend=backend)
        async with app.run_test(size=size) as pilot:
            await settle(app, pilot)
            app.goto("config")
            await settle(app, pilot)
            screen = app.screen
            screen.query_one("#field-lora_r").value = "0"
            screen.query_one("#field-export_quants").focus()  # the form scrolled far below lora_r
            await pilot.pause()
            screen.query_one("#field-learning_rate").value = "0.5"
            await pilot.pause()
            banner = text_of(app, "#form-status")
            assert "learning_rate" in banner and "lora_r" in banner and "below" not in banner, banner
            await pilot.press("ctrl+t")
            await settle(app, pilot)
            assert backend.calls == [] and app.screen is screen
            said = [n.message for n in app._notifications]
            assert any(m.startswith("Cannot train yet") and "lora_r" in m for m in said), said
            bad = screen.query_one("#field-lora_r")
            assert app.focused is bad
            form = screen.query_one("#form")
            assert form.region.y <= bad.region.y < form.region.bottom, size  # scrolled into view


@pytest.mark.slow
async def test_memory_bar_follows_batch_size_and_method(backend):
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.goto("config")
        await settle(app, pilot)
        before = text_of(app, "#memory")
        app.screen.query_one("#field-batch_size").value = "64"
        await pilot.pause()
        after = text_of(app, "#memory")
        assert before != after and "GiB" in after
        app.screen.query_one("#field-model").value = "llama-3.1-8b"
        app.screen.query_one("#field-method").value = "full"
        await pilot.pause()
        assert "over by" in text_of(app, "#memory")
        app.screen.query_one("#field-model").value = "my/own-model"
        await pilot.pause()
        assert "no estimate" in text_of(app, "#memory")


@pytest.mark.slow
async def test_form_saves_a_new_preset_file(backend, tmp_path):
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.goto("config")
        await settle(app, pilot)
        app.screen.query_one("#field-lora_r").value = "32"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press(*"demo")  # taken: refused with a reason
        await pilot.press("enter", "enter")
        await pilot.pause()
        assert "exists" in text_of(app, "#preset-error")
        app.screen.query_one("#preset-name").value = "mine"
        await pilot.press("enter", *"my docker run", "enter")
        await settle(app, pilot)
        saved = tmp_path / "saved-presets" / "mine.toml"
        assert saved.exists()
        text = saved.read_text()
        assert 'description = "my docker run"' in text and "lora_r = 32" in text


async def test_dataset_screen_shows_problems_sample_and_histogram(tmp_path):
    from tests.tui.fake_backend import FakeBackend

    data = tmp_path / "bad.jsonl"
    data.write_text("{}\n")
    app = FtuiApp(backend=FakeBackend(runs_dir=tmp_path, scenario="bad_dataset"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.goto("dataset")
        await settle(app, pilot)
        assert isinstance(app.screen, DatasetScreen)
        path_input = app.screen.query_one("#path")
        path_input.value = str(data)
        await pilot.press("enter")
        await settle(app, pilot)
        problems = text_of(app, "#dataset-problems")
        assert f"{data}:3: messages: no assistant turn" in problems
        assert "4 problem(s)" in problems
        assert "10 rows, 6 usable, 4 skipped" in text_of(app, "#dataset-summary")
        assert "docker ps" in text_of(app, "#dataset-sample")
        assert app.screen.query_one("#histogram").display
        assert "would refuse this file: 4 of 10 rows" in text_of(app, "#dataset-status")
        assert app.session.config.dataset != str(data)
        assert f"The run's dataset: {app.session.config.dataset} (ctrl+t trains on it)" in text_of(app, "#dataset-status")


async def test_dataset_screen_takes_a_good_file(backend, tmp_path):
    data = tmp_path / "good.jsonl"
    data.write_text("{}\n")
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.goto("dataset")
        await settle(app, pilot)
        app.screen.query_one("#path").value = str(data)
        await pilot.press("enter")
        await settle(app, pilot)
        assert "60 rows, 60 usable" in text_of(app, "#dataset-summary")
        assert "over max_seq_len 256" in text_of(app, "#dataset-summary")
        assert app.session.config.dataset == str(data)
        await pilot.press("ctrl+t")
        await settle(app, pilot)
        assert app.session.training.status == "finished"


async def _open_dataset(app, pilot, *names: str, folder) -> list:
    """The dataset screen, and data files of these names in `folder`."""
    files = []
    for name in names:
        files.append(folder / name)
        files[-1].write_text("{}\n")
    await settle(app, pilot)
    app.goto("dataset")
    await settle(app, pilot)
    return files


async def _check_file(app, pilot, path) -> None:
    app.screen.query_one("#path").value = str(path)
    await pilot.press("enter")
    await settle(app, pilot)


async def test_dataset_ctrl_t_trains_the_checked_file_after_a_return_to_the_screen(backend, tmp_path):
    data = tmp_path / "good.jsonl"
    data.write_text("{}\n")
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("d")
        await settle(app, pilot)
        await _check_file(app, pilot, data)
        await pilot.press("escape", "d")  # home, and back to the dataset screen
        await settle(app, pilot)
        assert isinstance(app.screen, DatasetScreen)
        assert f"The run's dataset: {data} (ctrl+t trains on it)" in text_of(app, "#dataset-status")
        await pilot.press("ctrl+t")
        await settle(app, pilot)
        assert backend.trained_datasets == [str(data)]
        assert app.session.training.status == "finished"


async def test_dataset_ctrl_t_after_a_refused_file_trains_the_runs_dataset(backend, tmp_path):
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        good, bad = await _open_dataset(app, pilot, "good.jsonl", "bad.jsonl", folder=tmp_path)
        await _check_file(app, pilot, good)
        await _check_file(app, pilot, bad)
        status = text_of(app, "#dataset-status")
        assert "would refuse this file" in status and f"The run's dataset: {good}" in status
        await pilot.press("ctrl+t")
        await settle(app, pilot)
        assert backend.trained_datasets == [str(good)]


async def _missing_file_after_a_good_one(backend, tmp_path, size) -> tuple[str, str, bool, float]:
    app = FtuiApp(backend=backend)
    async with app.run_test(size=size) as pilot:
        [good] = await _open_dataset(app, pilot, "good.jsonl", folder=tmp_path)
        await _check_file(app, pilot, good)
        body = app.screen.query_one("#dataset-body")
        body.scroll_end(animate=False)
        await pilot.pause()
        assert body.scroll_y > 0
        await _check_file(app, pilot, tmp_path / "nope.jsonl")
        screen = "\n".join(strip.text for strip in app.screen._compositor.render_strips())
        status = app.screen.query_one("#dataset-status")
        seen = app.screen.region.contains_region(status.region) and status.region.height > 0
        return screen, text_of(app, "#dataset-status"), seen, body.scroll_y


async def test_dataset_missing_file_replaces_the_last_report_in_plain_words(backend, tmp_path):
    for size in (SIZE, (60, 20)):
        screen, status, seen, scroll_y = await _missing_file_after_a_good_one(backend, tmp_path, size)
        assert f"There is no file {tmp_path / 'nope.jsonl'}" in status
        assert "slash-free" not in status and "suffix" not in status
        assert "There is no file" in screen and seen and scroll_y == 0, size
        assert "No problems found" not in screen and "60 rows" not in screen, size


async def test_dataset_screen_refuses_a_missing_file(backend, tmp_path):
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.goto("dataset")
        await settle(app, pilot)
        app.screen.query_one("#path").value = str(tmp_path / "nope.jsonl")
        await pilot.press("enter")
        await settle(app, pilot)
        assert "There is no file" in text_of(app, "#dataset-status")


async def test_path_completion_suggests_folders_and_data_files(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "train.jsonl").write_text("")
    (tmp_path / "notes.md").write_text("")
    suggester = PathSuggester()
    assert await suggester.get_suggestion(f"{tmp_path}/da") == f"{tmp_path}/data/"
    assert await suggester.get_suggestion(f"{tmp_path}/tr") == f"{tmp_path}/train.jsonl"
    assert await suggester.get_suggestion(f"{tmp_path}/no") is None


@pytest.mark.slow
async def test_whole_flow_train_export_chat_on_cpu(backend):
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("enter")  # accept the recommendation
        await settle(app, pilot)
        await pilot.press("ctrl+t")  # train
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, TrainingScreen)
        log = app.session.training
        assert log.status == "finished"
        assert [s for s, _ in log.train_points] == list(range(1, 13))  # not one point dropped
        assert [s for s, _ in log.val_points] == [4, 8, 12]
        assert "OVERFITTING" in text_of(app, "#diagnosis")
        assert "step 12/12" in text_of(app, "#train-status")
        await pilot.press("e")
        await settle(app, pilot)
        assert isinstance(app.screen, ExportScreen)
        await pilot.press("x")
        await settle(app, pilot)
        assert backend.calls[-1] == ("export", log.run_dir, ("Q8_0",))
        assert "PASS" in text_of(app, "#export-verify") and "argmax agreement 98.0%" in text_of(app, "#export-verify")
        assert f"ollama create demo -f {log.run_dir}/export/Modelfile" in text_of(app, "#ollama")
        await pilot.press("c")
        await settle(app, pilot)
        assert isinstance(app.screen, ChatScreen)
        assert app.screen.query_one("#gguf").value.endswith("model-Q8_0.gguf")
        await pilot.press(*"ps", "enter")
        await settle(app, pilot)
        assert "[tuned] Run: `docker ps` (1)" in text_of(app, "#transcript-tuned")


async def test_chat_compare_mode_answers_with_both_models_and_reset_clears(backend):
    app = FtuiApp(backend=backend)
    app.session.focus_run("/runs/x", "/runs/x/export/model-Q8_0.gguf")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.goto("chat")
        await settle(app, pilot)
        await pilot.press("ctrl+b")
        await pilot.press(*"ps", "enter")
        await settle(app, pilot)
        assert "[tuned]" in text_of(app, "#transcript-tuned")
        assert "[base]" in text_of(app, "#transcript-base")
        base = "/home/user/.cache/ftui/base-gguf/0123456789abcdef/model-Q8_0.gguf"  # the base at the tuned file's type
        assert [c.path for c in backend.chats] == ["/runs/x/export/model-Q8_0.gguf", base]
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert "No messages yet" in text_of(app, "#transcript-tuned")
        assert all(c.history == [] for c in backend.chats)


async def test_chat_compare_says_the_base_starts_a_new_conversation_and_marks_a_cut_reply(backend):
    app = FtuiApp(backend=backend)
    app.session.focus_run("/runs/x", "/runs/x/export/model-Q8_0.gguf")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.goto("chat")
        await settle(app, pilot)
        await pilot.press(*"ps", "enter")
        await settle(app, pilot)
        await pilot.press("ctrl+b")
        await pilot.pause()
        assert "A new conversation: the base model answers from your next message on" in text_of(
            app, "#transcript-base")
        await pilot.press(*"a long story", "enter")
        await settle(app, pilot)
        assert "(cut at the 256-token limit: the model had not finished)" in text_of(app, "#transcript-tuned")


@contextlib.asynccontextmanager
async def in_chat(backend, gguf, size=SIZE):
    """The chat screen of run /runs/x with `gguf` filled in, settled."""
    app = FtuiApp(backend=backend)
    app.session.focus_run("/runs/x", gguf)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        app.goto("chat")
        await settle(app, pilot)
        yield app, pilot


@pytest.mark.parametrize("size", [(80, 24), (60, 20)])
async def test_compare_makes_the_base_at_the_tuned_files_type_and_shows_its_name(backend, size):
    async with in_chat(backend, "/runs/x/export/model-Q4_K_M.gguf", size) as (app, pilot):
        await pilot.press("ctrl+b")
        await settle(app, pilot)
        assert backend.base_calls == [("/runs/x", app.session.config.model, "/runs/x/export/model-Q4_K_M.gguf")]
        field = app.screen.query_one("#base-gguf")
        assert field.value.endswith("/model-Q4_K_M.gguf")
        # At 60 columns the path is longer than the field: cut at the left, the file's name in view.
        assert (field.scroll_x > 0) == (size[0] == 60) and field.region.right <= size[0]
        assert field.scroll_x + field.content_region.width >= len(field.value)
        assert "base model at Q4_K_M, the fine-tuned file's type" in text_of(app, "#base-note")
        await pilot.press("ctrl+b", "ctrl+b")  # off and on again: the file is made once
        await settle(app, pilot)
        assert len(backend.base_calls) == 1


async def test_compare_says_why_there_is_no_base_file_where_the_path_goes(backend):
    async with in_chat(backend, "/runs/x/export/model-Q4_1.gguf") as (app, pilot):
        await pilot.press("ctrl+b")
        await settle(app, pilot)
        assert "No base file: model-Q4_1.gguf is of type Q4_1" in text_of(app, "#base-note")


async def test_a_thinking_models_reasoning_is_folded_until_ctrl_t(backend):
    async with in_chat(backend, "/runs/x/export/model-Q8_0.gguf") as (app, pilot):
        await pilot.press(*"think ps", "enter")
        await settle(app, pilot)
        shown = text_of(app, "#transcript-tuned")
        assert "model: (thought 6 words; ctrl+t shows them) [tuned] Run:" in shown
        assert "docker command" not in shown and "<think>" not in shown
        await pilot.press("ctrl+t")
        await pilot.pause()
        shown = text_of(app, "#transcript-tuned")
        assert "The user wants a docker command." in shown and "<think>" not in shown
        assert "[tuned] Run: `docker think ps`" in shown


async def _evaluate_in_chat(tmp_path, size):
    """ctrl+g in chat with an evaluation held at its first progress event, then let go."""
    import threading

    from tests.tui.fake_backend import FakeBackend

    backend = FakeBackend(runs_dir=tmp_path, eval_gate=threading.Event())
    app = FtuiApp(backend=backend)
    app.session.focus_run("/runs/x")
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        app.goto("chat")
        await settle(app, pilot)
        await pilot.press("ctrl+g")
        for _ in range(20):
            await pilot.pause(0.05)
            if "base answers 1/2 prompts" in text_of(app, "#eval-status"):
                break
        running = text_of(app, "#eval-status")
        view = app.screen.query_one("#eval-view")
        assert view.display and view.region.height >= 6, "the evaluation shows where the conversation was"
        backend.eval_gate.set()
        await settle(app, pilot)
        await pilot.press("tab")  # focus moves on; the summary is a part of the screen, not a toast
        await pilot.pause()
        return app, running, text_of(app, "#eval-status"), rendered(app, "#eval-results"), view


async def test_chat_evaluation_shows_progress_then_a_summary_that_stays(tmp_path):
    app, running, summary, results, view = await _evaluate_in_chat(tmp_path, SIZE)
    assert "base answers 1/2 prompts" in running
    for figure in ("expected answer found: tuned 100%, base 0%", "keeps 5/8 general answers (62%)",
                   "collapse: base 0%, tuned 30%", "forgetting: kept 5 of the 8", "what to do: lower learning_rate"):
        assert figure in summary
    # Answers side by side: every column inside 80 columns, no horizontal scrolling.
    header = next(line for line in results.splitlines() if "prompt" in line)
    assert all(word in header for word in ("prompt", "expected", "base", "tuned"))
    assert "✗ ls" in results and "✓ docker ps" in results
    assert max(len(line) for line in results.splitlines()) <= 80 - 4
    assert view.max_scroll_x == 0


async def test_chat_evaluation_fits_60x20(tmp_path):
    app, running, summary, results, view = await _evaluate_in_chat(tmp_path, (60, 20))
    assert "forgetting: kept 5 of the 8" in summary
    assert max(len(line) for line in results.splitlines()) <= 60 - 4
    assert view.max_scroll_x == 0


async def test_chat_ctrl_l_switches_between_the_conversation_and_the_evaluation(backend):
    app = FtuiApp(backend=backend)
    app.session.focus_run("/runs/x", "/runs/x/export/model-Q8_0.gguf")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.goto("chat")
        await settle(app, pilot)
        assert app.screen.check_action("toggle_eval", ()) is None
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        assert app.screen.query_one("#eval-view").display
        await pilot.press("ctrl+l")
        assert app.screen.query_one("#transcripts").display and not app.screen.query_one("#eval-view").display
        await pilot.press("ctrl+l")
        assert app.screen.query_one("#eval-view").display
        await pilot.press(*"ps", "enter")  # sending a message shows the conversation again
        await settle(app, pilot)
        assert app.screen.query_one("#transcripts").display


async def test_out_of_memory_shows_the_reason_and_the_advice(tmp_path):
    from tests.tui.fake_backend import FakeBackend

    app = FtuiApp(backend=FakeBackend(runs_dir=tmp_path, scenario="oom"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.start_training(app.session.config)
        await settle(app, pilot)
        assert app.session.training.status == "failed"
        assert "CUDA out of memory" in text_of(app, "#train-status")
        assert any("Lower batch_size" in line for line in app.session.training.lines)
        assert app.screen.check_action("export", ()) is None
        assert app.screen.check_action("start", ()) is True


async def test_bad_dataset_refusal_reaches_the_training_screen(tmp_path):
    from tests.tui.fake_backend import FakeBackend

    app = FtuiApp(backend=FakeBackend(runs_dir=tmp_path, scenario="bad_dataset"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.start_training(app.session.config)
        await settle(app, pilot)
        assert app.session.training.status == "failed"
        assert "failed validation" in text_of(app, "#train-status")


@pytest.mark.slow
async def test_stop_asks_first_ends_with_a_checkpoint_and_resume_continues(tmp_path):
    from tests.tui.fake_backend import FakeBackend

    backend = FakeBackend(runs_dir=tmp_path, hold_at=5)
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.start_training(app.session.config)
        await pilot.pause(0.2)
        assert app.session.training.status == "running"
        await pilot.press("x")
        await pilot.press("n")  # changed their mind
        await pilot.pause(0.1)
        assert app.session.training.active
        await pilot.press("x", "y")
        await settle(app, pilot)
        assert app.session.training.status == "stopped"
        assert app.session.training.checkpoints[-1].reason == "stop"
        run_dir = app.session.training.run_dir
        backend.hold_at = None
        app.goto("runs")
        await settle(app, pilot)
        assert isinstance(app.screen, RunsScreen)
        assert "stopped" in str(app.screen.query_one("#runs").get_row_at(0)[2])  # after the mark column
        await pilot.press("u")
        await settle(app, pilot)
        assert backend.calls[-1] == ("train", "demo", run_dir)
        assert app.session.training.started.start_step == 4
        assert app.session.training.status == "finished"
        assert [s for s, _ in app.session.training.train_points] == list(range(1, 13))  # the curve goes on


async def test_the_ui_answers_keys_while_a_run_is_going(tmp_path):
    from tests.tui.fake_backend import FakeBackend

    app = FtuiApp(backend=FakeBackend(runs_dir=tmp_path, hold_at=3))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.start_training(app.session.config)
        await pilot.pause(0.2)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, TrainingScreen) and app.session.training.active
        app.train_stop.set()
        await settle(app, pilot)


@pytest.mark.slow
async def test_runs_screen_opens_exports_and_deletes_after_confirmation(backend):
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.start_training(app.session.config)
        await settle(app, pilot)
        run_dir = app.session.training.run_dir
        app.session.training = type(app.session.training)()  # as if the app had been restarted
        app.goto("runs")
        await settle(app, pilot)
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, TrainingScreen)
        assert len(app.session.training.train_points) == 12 and app.session.training.status == "finished"
        await pilot.press("r")
        await settle(app, pilot)
        await pilot.press("e")
        await settle(app, pilot)
        assert isinstance(app.screen, ExportScreen) and app.session.run_focus.run_dir == run_dir
        await pilot.press("escape")
        await settle(app, pilot)
        await pilot.press("d", "n")
        await settle(app, pilot)
        assert run_dir in backend.runs
        await pilot.press("d", "y")
        await settle(app, pilot)
        assert run_dir not in backend.runs
        assert "No runs" in text_of(app, "#runs-note")


async def test_help_lists_the_screen_keys_and_escape_closes_it(backend):
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.goto("runs")
        await settle(app, pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        help_text = app.screen.source
        assert "Resume" in help_text and "resumes a stopped" in help_text
        assert "Manual: docs/tui.md#runs" in help_text
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)


@pytest.mark.slow
async def test_command_palette_reaches_screens(backend):
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Go to: Past runs")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, RunsScreen)


@pytest.mark.slow
async def test_the_palette_finds_the_work_by_name_and_lists_quit_once(backend):
    from textual.command import CommandPalette

    from tui.commands import ScreenCommands
    from tui.screens.export import ExportScreen

    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        provider = ScreenCommands(app.screen)
        texts = [text for text, _command, _help in provider._commands()]
        for wanted in ("Train: start", "Stop the run in training", "Export the run", "Evaluate the run"):
            assert any(t.startswith(wanted) for t in texts), (wanted, texts)
        assert not any("Quit" in t for t in texts)  # the palette's own system commands list it once

        await pilot.press("ctrl+p")
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"Export the run to verified")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, ExportScreen)


async def test_a_loss_point_is_never_replaced_in_the_queue():
    from tui.messages import EngineEventReceived

    event = StepLogged(1, 2, 0.5, 1.0, 1e-4, 1.0, 1.0, 1.0, 1.0, 0.1)
    message = EngineEventReceived(event, "train")
    assert not message.can_replace(EngineEventReceived(event, "train"))
    assert TrainFinished  # the event types come from the engine, not a copy


def _demo_runs(backend, app, *stamps: str) -> list[str]:
    paths = [str(backend.runs_dir / f"{stamp}-demo") for stamp in stamps]
    for path in paths:
        backend._record(path, app.session.config, "finished", 12, 12, 0.5, artifacts=("adapter",))
    return paths


async def test_runs_of_one_name_are_told_apart_by_their_date_and_time(backend):
    for size in (SIZE, (60, 20)):
        app = FtuiApp(backend=backend)
        _demo_runs(backend, app, "2026-01-01-1200", "2026-01-02-0930")
        async with app.run_test(size=size) as pilot:
            await settle(app, pilot)
            app.goto("runs")
            await settle(app, pilot)
            screen = "\n".join(strip.text for strip in app.screen._compositor.render_strips())
            assert "2026-01-02-0930-demo" in screen and "2026-01-01-1200-demo" in screen, screen


async def test_runs_cursor_stays_on_its_run_after_compare_and_export(backend):
    app = FtuiApp(backend=backend)
    paths = _demo_runs(backend, app, "2026-01-01-1200", "2026-01-02-0930", "2026-01-03-0800")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.goto("runs")
        await settle(app, pilot)
        await pilot.press("m", "down", "m", "v")  # compare the newest two, the cursor on the second
        await settle(app, pilot)
        assert not isinstance(app.screen, RunsScreen)
        await pilot.press("escape")
        await settle(app, pilot)
        assert app.screen.current.path == paths[1]
        await pilot.press("down", "e")  # export the oldest, and back
        await settle(app, pilot)
        assert isinstance(app.screen, ExportScreen)
        await pilot.press("escape")
        await settle(app, pilot)
        assert app.screen.current.path == paths[0]
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.session.run_focus.run_dir == paths[0]



@pytest.mark.slow
async def test_training_s_on_a_finished_run_asks_before_a_new_run(backend):
    from tui.screens.dialogs import ConfirmScreen

    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.start_training(app.session.config)
        await settle(app, pilot)
        assert isinstance(app.screen, TrainingScreen) and app.session.training.status == "finished"
        await pilot.press("s")
        await settle(app, pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert "Start a new run of demo" in str(app.screen.query_one("#question").render())
        assert len(backend.calls) == 1
        await pilot.press("n")
        await settle(app, pilot)
        assert isinstance(app.screen, TrainingScreen) and len(backend.calls) == 1
        await pilot.press("s", "y")
        await settle(app, pilot)
        assert len(backend.calls) == 2


@pytest.mark.slow
async def test_training_idle_screen_has_no_pulsing_progress_bar(backend):
    from textual.widgets import ProgressBar

    for size in (SIZE, (60, 20)):
        app = FtuiApp(backend=backend)
        async with app.run_test(size=size) as pilot:
            await settle(app, pilot)
            app.goto("training")
            await settle(app, pilot)
            bar = app.screen.query_one(ProgressBar)
            assert app.session.training.status == "idle"
            assert not (bar.display and bar.total is None), "an idle bar pulses as if working"
            await pilot.press("s")  # nothing shown yet: s starts at once
            await settle(app, pilot)
            assert app.session.training.status == "finished" and bar.display and bar.total == backend.steps


@pytest.mark.slow
async def test_every_footer_key_is_on_screen_at_60x20(backend):
    from tui.widgets.footer import Footer

    app = FtuiApp(backend=backend)
    app.session.focus_run("/runs/x", "/runs/x/export/model-Q8_0.gguf")
    backend._record("/runs/x", app.session.config, "finished", 12, 12, 0.5, artifacts=("adapter",))
    async with app.run_test(size=(60, 20)) as pilot:
        await settle(app, pilot)
        for name in ("home", "runs", "config", "dataset", "training", "chat", "export"):
            if name != "home":
                app.goto(name)
            await settle(app, pilot)
            footer = app.screen.query_one(Footer)
            strips = [strip.text for strip in app.screen._compositor.render_strips()]
            shown = "\n".join(strips[footer.region.y:footer.region.bottom])
            wanted = [b.binding.description for b in app.screen.active_bindings.values() if b.binding.show]
            missing = [d for d in wanted if d not in shown]
            assert not missing, f"{name}: {missing} not in\n{shown}"
            assert shown.splitlines()[0].rstrip().endswith("^p palette"), f"{name}: {shown}"


async def test_export_of_a_run_exported_before_shows_it_and_y_and_c_work(backend):
    import dataclasses

    app = FtuiApp(backend=backend)
    [path] = _demo_runs(backend, app, "2026-01-01-1200")
    export = backend.runs_dir / "2026-01-01-1200-demo" / "export"
    export.mkdir(parents=True)
    gguf = export / "model-Q8_0.gguf"
    gguf.write_bytes(b"GGUF" + bytes(2048))
    (export / "model-Q8_0.Modelfile").write_text(f"FROM ./{gguf.name}\n")
    backend.runs[path] = dataclasses.replace(backend.runs[path], artifacts=("adapter", "export"),
                                             ggufs=(str(gguf),), export_status="verified")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.goto("runs")
        await settle(app, pilot)
        await pilot.press("e")
        await settle(app, pilot)
        assert isinstance(app.screen, ExportScreen)
        shown = text_of(app, "#export-stages")
        assert "Exported before: 1 GGUF file(s)" in shown and "all passed verification" in shown
        assert app.screen.query_one("#export-files").row_count == 1
        assert f"-f {export / 'model-Q8_0.Modelfile'}" in text_of(app, "#ollama")
        await pilot.press("y")
        await settle(app, pilot)
        assert any(n.message.startswith("Copied: ollama create demo") for n in app._notifications)
        await pilot.press("c")
        await settle(app, pilot)
        assert isinstance(app.screen, ChatScreen) and app.session.run_focus.gguf == str(gguf)


@pytest.mark.slow
async def test_a_fresh_export_brings_its_verification_and_ollama_line_into_view(backend):
    for size in (SIZE, (60, 20)):
        app = FtuiApp(backend=backend)
        async with app.run_test(size=size) as pilot:
            await settle(app, pilot)
            app.start_training(app.session.config)
            await settle(app, pilot)
            await pilot.press("e")
            await settle(app, pilot)
            await pilot.press("x")
            await settle(app, pilot)
            body, card = app.screen.query_one("#export-body"), app.screen.query_one("#ollama")
            assert body.region.y <= card.region.y and card.region.bottom <= body.region.bottom, size
            assert "verified 1/1, y copies the ollama line" in text_of(app, "#export-run")


async def _until(pilot, condition, what: str) -> None:
    for _ in range(100):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"never: {what}")


@pytest.mark.slow
async def test_training_stopping_says_what_it_waits_for_and_resume_drops_stale_figures(backend):
    backend.hold_at = 7  # the fake waits before step 7 until it is stopped
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.start_training(app.session.config)
        await _until(pilot, lambda: app.session.training.last_step and app.session.training.last_step.step == 6, "step 6")
        app.session.training.status = "stopping"  # as the stop dialog's yes does, before the run answers
        app.screen.refresh_status()
        status = text_of(app, "#train-status")
        assert "stopping: ends step 7, then saves a checkpoint" in status and "ETA" not in status, status
        app.stop_training()
        await settle(app, pilot)
        assert app.session.training.status == "stopped"
        assert "took" in text_of(app, "#train-status")
        app.goto("runs")
        await settle(app, pilot)
        await pilot.press("u")  # resume: held again before step 7
        await _until(pilot, lambda: app.session.training.status == "running" and app.session.training.started.start_step == 6,
                     "the resumed session's start")
        await pilot.pause(0.3)
        status = text_of(app, "#train-status")
        assert "resumed at step 6" in status and "tok/s" not in status and "took" not in status, status
        app.stop_training()
        await settle(app, pilot)


@pytest.mark.slow
async def test_help_scrolls_with_the_keyboard_at_60x20(backend):
    from textual.containers import VerticalScroll

    from tui.screens.dialogs import HelpScreen

    app = FtuiApp(backend=backend)
    async with app.run_test(size=(60, 20)) as pilot:
        await settle(app, pilot)
        app.goto("config")
        await settle(app, pilot)
        await pilot.press("f1")
        await settle(app, pilot)
        assert isinstance(app.screen, HelpScreen)
        box = app.screen.query_one(VerticalScroll)
        assert box.max_scroll_y > 0, "the help fits: nothing to scroll"
        strips = [strip.text for strip in app.screen._compositor.render_strips()]
        assert "↑↓ PgUp PgDn Scroll" in strips[-1], strips[-1]  # the footer says how to read on
        await pilot.press("pagedown", "pagedown", "pagedown", "down")
        await pilot.pause()
        assert box.scroll_y == box.max_scroll_y
        await pilot.press("pageup")
        await pilot.pause()
        assert box.scroll_y < box.max_scroll_y


@pytest.mark.slow
async def test_question_mark_in_a_number_field_is_help_and_in_a_text_field_is_typed(backend):
    from tui.screens.dialogs import HelpScreen

    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.goto("config")
        await settle(app, pilot)
        lora_r = app.screen.query_one("#field-lora_r")
        before = lora_r.value
        lora_r.focus()
        await pilot.press("question_mark")
        await settle(app, pilot)
        assert isinstance(app.screen, HelpScreen)
        assert app.screen.text.startswith("**lora_r**: LoRA rank")
        await pilot.press("escape")
        await settle(app, pilot)
        assert lora_r.value == before and not app.screen.query_one("#problem-lora_r").display
        prompt = app.screen.query_one("#field-system_prompt")
        prompt.focus()
        await pilot.press(*"why", "question_mark")
        await settle(app, pilot)
        assert prompt.value == "why?" and isinstance(app.screen, ConfigScreen)


async def test_a_toast_is_one_line_and_leaves_every_footer_line_clear(backend):
    from textual.widgets._toast import Toast

    from tui.widgets.footer import Footer

    for size in (SIZE, (60, 20)):
        app = FtuiApp(backend=backend)
        async with app.run_test(size=size, notifications=True) as pilot:
            await settle(app, pilot)
            app.notify("Copied the line.")
            await pilot.pause(0.2)
            toast = app.screen.query_one(Toast)
            footer = app.screen.query_one(Footer)
            assert toast.region.height == 1, toast.region
            assert toast.region.bottom <= footer.region.y, (size, toast.region, footer.region)
