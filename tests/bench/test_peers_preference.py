"""bench/peers_preference.py keeps running: ftui's side of each task at its smallest, TRL's skipped or not asked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "peers_preference.py"


def run_bench(*args: str) -> str:
    out = subprocess.run([sys.executable, str(SCRIPT), "--variants", "ftui", "--steps", "2", "--batch", "1", *args],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out.stdout


def summary_row(stdout: str) -> list[str]:
    """The ftui row of the medians table (the last ftui row printed)."""
    return [line.split()[1:] for line in stdout.splitlines() if line.startswith("ftui")][-1]


@pytest.mark.e2e
def test_dpo_reports_time_memory_and_held_out_preference():
    stdout = run_bench("--task", "dpo", "--eval-pairs", "2")
    s_per_step, rss, steps, accuracy, margin = map(float, summary_row(stdout))
    assert steps == 2 and s_per_step > 0 and rss > 0.2
    assert accuracy in (0.0, 0.5, 1.0)  # two held-out pairs scored
    assert margin != 0.0  # two steps moved the adapter off the base
    assert "held-out pairs" in stdout


@pytest.mark.e2e
def test_grpo_reports_time_memory_and_reward_from_the_model_it_is_given():
    from engine.models import resolve_model

    folder = resolve_model("smollm2-135m").ref  # a folder, as an SFT run's export/merged is
    stdout = run_bench("--task", "grpo", "--group", "2", "--model", folder)
    s_per_step, rss, steps, reward = map(float, summary_row(stdout))
    assert steps == 2 and s_per_step > 0 and rss > 0.2
    assert 0.0 <= reward <= 3.0  # format (1) + answer (x2) at most
    assert f"{folder} LoRA r16, grpo, 2 steps" in stdout


def test_a_model_for_dpo_is_refused_since_its_scorer_reads_the_base(capsys):
    out = subprocess.run([sys.executable, str(SCRIPT), "--task", "dpo", "--model", "/some/sft/export/merged"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2 and "--model is for --task grpo" in out.stderr


def test_trl_variants_are_skipped_with_a_note_without_trl(tmp_path, monkeypatch, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("peers_preference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "PEERS", tmp_path)
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--variants", "trl-bf16,trl"])
    with pytest.raises(SystemExit, match="every variant asked for is skipped"):
        module.main()
    assert "skipping trl-bf16, trl: TRL is not installed" in capsys.readouterr().out
