"""Each family's tiny model trains a few LoRA steps, exports to F16, Q8_0 and Q4_K_M through
llama.cpp's converter, passes every verification, and answers one chat turn (issue 23 items 3+5)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from engine.config.schema import RunConfig
from engine.events import ExportFinished, TrainFinished
from engine.export import export
from engine.export.hf_converter import find_converter
from tests.engine.models.tiny import FAMILIES

QUANTS = ("Q8_0", "Q4_K_M")
ROWS = (
    ("Answer in one word: what colour is the sky on a clear day?", "Blue."),
    ("How do I list running containers?", "Use docker ps."),
    ("What is 17 times 23?", "It is 391."),
    ("Write a haiku about the sea.", "Waves fold into foam."),
)


def _dataset(path: Path) -> Path:
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
                            + "\n" for q, a in ROWS * 4), encoding="utf-8")
    return path


def _train(folder: Path, tmp_path: Path):
    from engine.train import train

    config = RunConfig.from_dict(dict(
        name="tiny", model=str(folder), dataset=str(_dataset(tmp_path / "chats.jsonl")),
        output_dir=str(tmp_path / "runs"), method="lora", lora_r=4, lora_alpha=8, lora_dropout=0.0,
        learning_rate=1e-4, batch_size=2, grad_accum=1, max_seq_len=128, max_steps=2, warmup_steps=0,
        val_split=0.0, retention_mix=0.0, precision="fp32"))
    events: list = []
    result = train(config, events.append, threading.Event())
    assert result.status == "finished", (result.reason, result.advice)
    assert isinstance(events[-1], TrainFinished)
    return Path(result.run_dir)


@pytest.fixture(scope="module", autouse=True)
def converter():
    return find_converter()  # `make converter` puts it there; without it no family but Llama exports


@pytest.mark.e2e
@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_trains_exports_verifies_and_chats(family, family_folders, tmp_path):
    from engine.infer.chat import ChatSession

    run_dir = _train(family_folders[family], tmp_path)
    events: list = []
    result = export(run_dir, quants=QUANTS, out_dir=tmp_path / "export", on_event=events.append)

    assert result.passed, result.failure
    assert [c.quant for c in result.checks] == ["F16", *QUANTS]
    for check in result.checks:
        assert check.token_ids_match and check.chat_template_kept and check.end_of_turn_ok, check
        assert check.stops_at_end_of_turn, check
    f16 = result.checks[0]
    assert f16.argmax_agreement >= 0.99 and f16.max_abs_logit_diff is not None and f16.max_abs_logit_diff < 0.05
    assert isinstance(events[-1], ExportFinished)

    with ChatSession(result.gguf("Q8_0"), temperature=0.0, max_tokens=32) as chat:
        reply = "".join(chat.send("Answer in one word: what colour is the sky on a clear day?"))
    assert reply.strip() and not chat.cut_short
