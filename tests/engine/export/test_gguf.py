"""GGUF writing and verification on tiny random Llamas with the SmolLM2 tokenizer."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import torch

from engine.events import ExportFailed, ExportFileWritten, ExportFinished, ExportStageStarted, ExportVerified
from engine.export import export, gguf_writer
from engine.export.gguf_writer import UnsupportedModel, write_gguf
from engine.export.pipeline import EXPORT_MARKER
from engine.export.verify import TOKENIZER_TEXTS, open_llama

from .conftest import LLAMA3_ROPE, make_tiny_model


def _llama_logits(path, ids):
    with open_llama(path, n_ctx=512, logits_all=True) as llm:
        llm.eval(list(ids))
        return np.asarray(llm.scores[: len(ids)], dtype=np.float32)


def _hf_logits(model_dir, ids):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def _ids(model_dir, n):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = tok("Containers, images and volumes: docker ps, docker run, docker rm. " * 40).input_ids
    return ids[:n]


@pytest.mark.slow
def test_f16_logits_match_hf(tmp_path, tokenizer_dir):
    model_dir = make_tiny_model(tmp_path / "m", tokenizer_dir, tied=False, init_std=0.2)
    path = write_gguf(model_dir, tmp_path / "m.gguf")
    ids = _ids(model_dir, 120)
    got, want = _llama_logits(path, ids), _hf_logits(model_dir, ids)
    assert (got.argmax(-1) == want.argmax(-1)).mean() >= 0.99
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()


@pytest.mark.slow
def test_llama3_rope_freqs_keep_logits_beyond_the_scaling_threshold(tmp_path, tokenizer_dir, monkeypatch):
    model_dir = make_tiny_model(tmp_path / "m", tokenizer_dir, rope_scaling=LLAMA3_ROPE, init_std=0.2)
    ids = _ids(model_dir, 300)
    want = _hf_logits(model_dir, ids)[100:]  # positions past original_max_position_embeddings=64
    good = _llama_logits(write_gguf(model_dir, tmp_path / "good.gguf"), ids)[100:]
    # Without the rope_freqs tensor (factors of 1) llama.cpp runs plain rope: the control that must fail.
    monkeypatch.setattr(gguf_writer, "llama3_rope_factors", lambda p: [1.0] * (p.head_dim // 2))
    bad = _llama_logits(write_gguf(model_dir, tmp_path / "bad.gguf"), ids)[100:]
    good_err, bad_err = np.abs(good - want).max(), np.abs(bad - want).max()
    assert (good.argmax(-1) == want.argmax(-1)).mean() >= 0.99
    assert good_err * 10 < bad_err


@pytest.mark.slow
def test_gguf_tokenizer_gives_hf_token_ids(tmp_path, tokenizer_dir):
    from transformers import AutoTokenizer

    model_dir = make_tiny_model(tmp_path / "m", tokenizer_dir)
    path = write_gguf(model_dir, tmp_path / "m.gguf")
    tok = AutoTokenizer.from_pretrained(model_dir)
    chat = tok.apply_chat_template([{"role": "user", "content": "List 3 images 🐳"}], tokenize=False,
                                   add_generation_prompt=True)
    with open_llama(path, vocab_only=True) as llm:
        for text in (*TOKENIZER_TEXTS, chat):
            assert llm.tokenize(text.encode(), add_bos=False, special=True) == tok(
                text, add_special_tokens=False).input_ids, text
        assert llm.metadata["tokenizer.chat_template"] == tok.chat_template
        assert llm.metadata["tokenizer.ggml.add_bos_token"] == "false"
        assert llm.metadata["tokenizer.ggml.pre"] == "smollm"


def test_unsupported_architecture_is_refused_before_any_work(tmp_path):
    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(UnsupportedModel, match="GPT2LMHeadModel.*supported: LlamaForCausalLM"):
        write_gguf(folder, tmp_path / "out.gguf")
    assert not list(tmp_path.glob("*.gguf*")) and not list(tmp_path.glob(".out.gguf*"))


@pytest.mark.slow
def test_full_disk_mid_write_leaves_no_partial_gguf(tmp_path, tiny_run, monkeypatch):
    import gguf

    def disk_full(self, tensor, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensor_data", disk_full)
    events = []
    out = tmp_path / "export"
    result = export(tiny_run, quants=("Q8_0",), out_dir=out, on_event=events.append)
    assert not result.passed and result.failure is not None and "the disk is full" in result.failure.reason
    assert not [p for p in out.iterdir() if ".gguf" in p.name]
    failed = [e for e in events if isinstance(e, ExportFailed)]
    assert failed == [result.failure] and "free disk space" in failed[0].advice


@pytest.mark.slow
def test_export_writes_quantized_files_and_verification_figures(tmp_path, tiny_run):
    events = []
    out = tmp_path / "export"
    result = export(tiny_run, quants=("Q8_0", "Q4_K_M"), out_dir=out, on_event=events.append)
    names = sorted(p.name for p in out.iterdir() if p.name != EXPORT_MARKER)
    assert names == ["Modelfile", "merged", "model-F16.Modelfile", "model-F16.gguf", "model-Q4_K_M.Modelfile",
                     "model-Q4_K_M.gguf", "model-Q8_0.Modelfile", "model-Q8_0.gguf", "verify.json"]
    assert (out / "merged" / "model.safetensors").exists() and (out / "merged" / "tokenizer.json").exists()
    f16, q8, q4 = result.checks
    assert (f16.quant, q8.quant, q4.quant) == ("F16", "Q8_0", "Q4_K_M")
    assert all(c.token_ids_match and c.chat_template_kept and c.end_of_turn_ok for c in result.checks)
    assert f16.argmax_agreement >= 0.95 and f16.max_abs_logit_diff is not None and f16.passed
    assert 0.5 < q4.argmax_agreement <= q8.argmax_agreement <= 1.0
    # A random model never says <|im_end|>: verification must notice rather than call it done.
    assert q8.stops_at_end_of_turn is False and not q8.passed and not result.passed
    assert isinstance(events[-1], ExportFailed) and "end-of-turn" in events[-1].reason
    assert not any(isinstance(e, ExportFinished) for e in events)
    verified = [e for e in events if isinstance(e, ExportVerified)]
    assert [v.quant for v in verified] == ["F16", "Q8_0", "Q4_K_M"]
    written = [e.quant for e in events if isinstance(e, ExportFileWritten) and e.kind == "gguf"]
    assert written == ["F16", "Q8_0", "Q4_K_M"]
    stages = [e.stage for e in events if isinstance(e, ExportStageStarted)]
    assert stages[:5] == ["merge", "write", "quantize", "quantize", "modelfile"]
    saved = json.loads((out / "verify.json").read_text())
    assert [f["quant"] for f in saved["files"]] == ["F16", "Q8_0", "Q4_K_M"]
    assert saved["files"][0]["argmax_agreement"] == f16.argmax_agreement


@pytest.mark.slow
def test_merge_changes_the_model(tmp_path, tiny_run):
    """The adapter is really folded in: merged logits differ from the base's."""
    result = export(tiny_run, quants=(), out_dir=tmp_path / "e")
    ids = _ids(result.merged_dir, 20)
    base = json.loads((tiny_run / "run.json").read_text())["base_model_ref"]
    assert np.abs(_hf_logits(result.merged_dir, ids) - _hf_logits(base, ids)).max() > 1e-3
    assert result.passed  # F16 alone: lossless checks only


@pytest.mark.slow
def test_unknown_quant_type_is_refused(tiny_run):
    events = []
    result = export(tiny_run, quants=("Q3_X",), on_event=events.append)
    assert result.failure is not None and "Q3_X" in result.failure.reason and not result.files
    assert events == [result.failure]  # reported once, not also raised
