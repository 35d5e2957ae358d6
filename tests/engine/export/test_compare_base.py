"""Compare mode's base model at the fine-tuned file's type: made from the run's base once, cached,
and refused with advice for a type ftui cannot make."""

from __future__ import annotations

import shutil

import pytest

from engine.errors import ActionableError
from engine.infer.base_answers import base_gguf_like, base_ref_of, gguf_quant


@pytest.mark.slow
def test_the_base_is_made_at_the_tuned_files_type_once(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setenv("FTUI_CACHE", str(tmp_path / "cache"))
    assert base_ref_of(tiny_run, "ignored") == str(tiny_run.parents[1] / "base")  # the run's own base
    tuned = tmp_path / "model-Q8_0.gguf"  # only its name is read: ftui's export names the type
    tuned.write_bytes(b"GGUF")
    events = []
    base, quant = base_gguf_like(tuned, base_ref_of(tiny_run, ""), events.append)
    assert quant == "Q8_0" and base.name == "model-Q8_0.gguf" and base.is_file()
    assert any("exporting the base model as Q8_0" in e.message for e in events if hasattr(e, "message"))
    made = base.stat().st_mtime_ns
    events.clear()
    assert base_gguf_like(tuned, base_ref_of(tiny_run, ""), events.append) == (base, "Q8_0")
    assert base.stat().st_mtime_ns == made and not events  # cached: nothing made again
    renamed = shutil.copy(base, tmp_path / "my-tune.gguf")  # a file named by its user: the header says its type
    assert gguf_quant(renamed) == "Q8_0"


def test_a_type_ftui_cannot_make_is_refused_with_advice(tmp_path, tiny_run):
    tuned = tmp_path / "model-Q4_1.gguf"
    tuned.write_bytes(b"GGUF")
    with pytest.raises(ActionableError, match="of type Q4_1, which ftui cannot make") as info:
        base_gguf_like(tuned, base_ref_of(tiny_run, ""))
    assert "give the base GGUF yourself" in str(info.value)
