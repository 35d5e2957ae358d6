"""Native work runs in a child process: a real segfault there is one failure with words, and
what was finished stays (engine/native/child.py)."""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import pytest

import engine.export.pipeline as pipeline
import engine.infer.base_answers as base_answers
import engine.models.embedded as embedded
from engine.events import ExportFailed, Progress, TrainFailed
from engine.infer.chat import GGUFFileError, check_gguf
from engine.native.child import NativeCrash, run_native
from tests.engine.export.conftest import make_run, make_tiny_model
from tests.engine.train.test_train_api import api_config
from tests.engine.train.tiny import make_model_folder


def test_a_segfault_in_the_child_is_a_crash_named_with_signal_and_work():
    with pytest.raises(NativeCrash) as raised:
        run_native("verifying model-Q8_0.gguf", ctypes.string_at, 0)
    reason = raised.value.reason
    assert reason.startswith("llama.cpp crashed (SIGSEGV, signal 11) while verifying model-Q8_0.gguf;")
    log = Path(reason.rsplit("the log of that process is ", 1)[1].rstrip("."))
    assert "Fatal Python error: Segmentation fault" in log.read_text()  # the child's stack, for a bug report
    assert "ftui doctor" in raised.value.advice


def test_the_childs_result_events_and_errors_come_back_whole(tmp_path):
    assert run_native("dividing", divmod, 7, 3) == (2, 1)
    events: list = []
    assert run_native("measuring", _report_twice, 5, on_event=events.append) == 10
    assert events == [Progress("test", 1, 2), Progress("test", 2, 2)]
    with pytest.raises(GGUFFileError) as raised:  # an ActionableError keeps its reason and advice apart
        run_native("opening", check_gguf, tmp_path / "missing.gguf")
    assert raised.value.reason == f"{tmp_path / 'missing.gguf'} does not exist."
    assert "export/ folder holds them" in raised.value.advice


def _report_twice(n: int, on_event) -> int:
    on_event(Progress("test", 1, 2))
    on_event(Progress("test", 2, 2))
    return 2 * n


@pytest.fixture(scope="module")
def base_model(tmp_path_factory, tokenizer_dir):
    return make_tiny_model(tmp_path_factory.mktemp("crash-base") / "base", tokenizer_dir)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from transformers import AutoTokenizer

    from engine.models.embedded import ensure_embedded_model

    folder = tmp_path_factory.mktemp("crash-tokenizer")
    AutoTokenizer.from_pretrained(ensure_embedded_model()).save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_a_crash_while_verifying_fails_the_export_with_words_and_keeps_the_files(tmp_path, base_model, crash,
                                                                                 monkeypatch):
    run = make_run(tmp_path / "runs" / "2026-01-01-0000-tiny", base_model)
    monkeypatch.setattr(pipeline, "check_file", crash)
    events: list = []
    result = pipeline.export(run, quants=("Q8_0",), on_event=events.append)

    assert not result.passed and isinstance(events[-1], ExportFailed)
    failure = result.failure
    assert failure is events[-1]
    assert "llama.cpp crashed (SIGSEGV, signal 11) while verifying model-F16.gguf" in failure.reason
    assert "kept, unverified (no verify.json): model-F16.gguf, model-Q8_0.gguf" in failure.reason
    out = run / "export"
    assert (out / "model-F16.gguf").stat().st_size > 0 and (out / "model-Q8_0.gguf").stat().st_size > 0
    assert not (out / "verify.json").exists()


@pytest.mark.slow
def test_a_crash_while_the_base_model_answers_refuses_the_run_with_words(tmp_path, crash,
                                                                                       monkeypatch):
    monkeypatch.setenv("FTUI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(base_answers, "_answer_here", crash)
    monkeypatch.setattr(base_answers, "base_gguf_for", lambda ref, quant, on_event=None: tmp_path / "base.gguf")
    events: list = []
    config = api_config(tmp_path, make_model_folder(tmp_path / "tiny"), retention_mix=0.5, max_steps=1)
    from engine.train import train

    result = train(config, events.append, threading.Event())

    assert result.status == "failed"
    assert isinstance(events[-1], TrainFailed)
    assert "llama.cpp crashed (SIGSEGV, signal 11) while answering" in events[-1].reason
    assert "retention_mix = 0" in events[-1].advice
    assert result.run_dir is None  # refused while loading: no half-made run is left to resume


def test_a_crash_while_converting_the_embedded_model_leaves_no_folder(tmp_path, crash, monkeypatch):
    monkeypatch.setenv("FTUI_CACHE", str(tmp_path))
    monkeypatch.setattr(embedded, "_convert", crash)
    with pytest.raises(NativeCrash) as raised:
        embedded.ensure_embedded_model()
    assert raised.value.reason.startswith("the GGUF dequantiser (transformers, gguf) crashed (SIGSEGV, signal 11) "
                                          "while converting SmolLM2-135M-Instruct.Q4_1.gguf")
    models = tmp_path / "models"
    assert not (models / "smollm2-135m").exists() and not list(models.glob("*.partial"))
    assert not embedded.is_converted()
