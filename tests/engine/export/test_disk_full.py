"""Export onto a full disk says "the disk is full", where, and which files were kept.

Each stage's writer fails the way it really does on a full tmpfs (measured at 300, 600 and 850 MB):
the merged folder's safetensors raise SafetensorError with the OS's words, the GGUF writer's numpy
raises an OSError that names no errno, and llama.cpp's quantizer only returns 1. The last two are
told apart from other failures by the free space left, which the tests fake at the boundary.
"""

from __future__ import annotations

import errno

import pytest

import engine.files.disk_full
from engine.events import ExportFailed
from engine.export import export
from engine.export.pipeline import EXPORT_MARKER

pytestmark = pytest.mark.slow


@pytest.fixture
def nearly_full(monkeypatch):
    """The disk reads as full once `state["full"]` is set by the failing writer."""
    state = {"full": False}
    monkeypatch.setattr(engine.files.disk_full, "free_bytes", lambda folder: 8192 if state["full"] else 10**12)
    return state


def run_export(run, out, quants=("Q8_0",)):
    events = []
    result = export(run, quants=quants, out_dir=out, on_event=events.append)
    failed = [e for e in events if isinstance(e, ExportFailed)]
    assert failed == [result.failure] and not result.passed
    return result.failure


def test_a_full_disk_while_saving_the_merged_folder(tmp_path, tiny_run, monkeypatch):
    import transformers.modeling_utils
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", full)
    out = tmp_path / "export"
    failure = run_export(tiny_run, out)
    assert failure.reason.startswith(f"the disk is full: writing merged/ in {out} failed")
    assert "nothing was kept" in failure.reason
    assert "free disk space" in failure.advice and "--out" in failure.advice
    assert sorted(p.name for p in out.iterdir() if p.name != EXPORT_MARKER) == []  # no partial file left


def test_a_full_disk_while_writing_the_gguf_without_an_errno(tmp_path, tiny_run, monkeypatch, nearly_full):
    import gguf

    def short_write(self, *args, **kwargs):
        nearly_full["full"] = True
        raise OSError("884736 requested and 385168 written")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensor_data", short_write)
    out = tmp_path / "export"
    failure = run_export(tiny_run, out)
    assert failure.reason.startswith(f"the disk is full: writing model-F16.gguf in {out} failed")
    assert "kept: merged/" in failure.reason
    assert "check the output folder is writable" not in failure.advice
    assert not [p for p in out.iterdir() if ".gguf" in p.name]


def test_a_failed_quantize_on_a_full_disk_says_the_disk_is_full(tmp_path, tiny_run, monkeypatch, nearly_full):
    import llama_cpp

    def quantize(src, dst, params):
        nearly_full["full"] = True
        return 1

    monkeypatch.setattr(llama_cpp, "llama_model_quantize", quantize)
    out = tmp_path / "export"
    failure = run_export(tiny_run, out)
    assert failure.reason.startswith(f"the disk is full: writing model-Q8_0.gguf in {out} failed")
    assert "kept: merged/, model-F16.gguf" in failure.reason
    assert "code 1" not in failure.reason and "llama-cpp-python install" not in failure.advice
    assert sorted(p.name for p in out.iterdir() if p.name != EXPORT_MARKER) == ["merged", "model-F16.gguf"]


def test_a_failed_quantize_with_space_left_is_still_a_quantize_failure(tmp_path, tiny_run, monkeypatch):
    import llama_cpp

    monkeypatch.setattr(llama_cpp, "llama_model_quantize", lambda src, dst, params: 1)
    monkeypatch.setattr(engine.files.disk_full, "free_bytes", lambda folder: 10**12)
    failure = run_export(tiny_run, tmp_path / "export")
    assert "could not quantize" in failure.reason and "(code 1)" in failure.reason
    assert "disk is full" not in failure.reason


def test_a_plain_enospc_names_the_disk_and_the_kept_files(tmp_path, tiny_run, monkeypatch):
    import engine.export.pipeline as pipeline

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pipeline, "write_modelfile", full)
    out = tmp_path / "export"
    failure = run_export(tiny_run, out)
    assert failure.reason.startswith(f"the disk is full: writing Modelfiles in {out} failed")
    assert "kept: merged/, model-F16.gguf, model-Q8_0.gguf" in failure.reason
