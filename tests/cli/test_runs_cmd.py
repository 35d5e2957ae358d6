"""`ftui runs` over damaged run.json files: every other run is still listed, and the damaged one
is listed as unreadable with the file and the problem, never a traceback or a silent gap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main

GOOD = {"name": "good", "model": "tiny", "model_ref": "tiny", "base_model_ref": "tiny", "method": "lora",
        "created": "2026-01-01T00:00:00+00:00", "updated": "2026-01-01T00:00:00+00:00", "status": "finished",
        "step": 6, "total_steps": 6, "best_val_loss": 1.25, "reason": "finished 6 steps", "pid": None, "host": ""}

DAMAGED = {
    "a list": ("[]", "holds a JSON list, not the run's record"),
    "a text step": (json.dumps({**GOOD, "name": "bad", "step": "x"}), "step is 'x', which is not a int"),
    "cut short": (json.dumps(GOOD)[:40], "is not valid JSON"),
    "a null total": (json.dumps({**GOOD, "total_steps": None}), "total_steps is None"),
    "not UTF-8": ('{"name": "caf\xe9"}'.encode("latin-1"), "is not valid JSON"),
}


def make_runs(root: Path, damaged: str | bytes) -> tuple[Path, Path]:
    good = root / "2026-01-01-0000-good"
    bad = root / "2026-01-02-0000-bad"
    for folder in (good, bad):
        folder.mkdir(parents=True)
    (good / "run.json").write_text(json.dumps(GOOD))
    if isinstance(damaged, bytes):
        (bad / "run.json").write_bytes(damaged)
    else:
        (bad / "run.json").write_text(damaged)
    return good, bad


@pytest.mark.parametrize("damage", list(DAMAGED))
def test_a_damaged_run_json_is_listed_as_unreadable_beside_the_others(tmp_path, capsys, damage):
    content, words = DAMAGED[damage]
    good, bad = make_runs(tmp_path / "runs", content)

    assert main(["runs", "--dir", str(tmp_path / "runs")]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert "Traceback" not in out + err
    row = next(line for line in lines if line.startswith(str(bad)))
    assert row.split()[1] == "unreadable"
    assert next(line for line in lines if line.startswith(str(good))).split()[1] == "finished"
    assert f"{bad}: {bad / 'run.json'}" in out and words in out


def test_json_output_carries_the_unreadable_run_and_its_reason(tmp_path, capsys):
    good, bad = make_runs(tmp_path / "runs", "[]")
    assert main(["runs", "--dir", str(tmp_path / "runs"), "--json"]) == 0
    listed = {r["path"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed[str(good)]["status"] == "finished"
    assert listed[str(bad)]["status"] == "unreadable" and "JSON list" in listed[str(bad)]["reason"]


def test_the_chat_gguf_is_the_first_a_run_lists_so_every_screen_picks_it(tmp_path):
    """Runs took the F16 and Export the last file written (Q4_K_M): both now take what the
    run's Modelfile names, which `ftui chat RUN` opens (issue 28 item 9)."""
    import json

    from engine.runs import list_runs

    run = tmp_path / "runs" / "2026-01-01-0000-x"
    export = run / "export"
    export.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"status": "finished", "name": "x", "method": "lora"}))
    for quant in ("F16", "Q8_0", "Q4_K_M"):
        (export / f"model-{quant}.gguf").write_bytes(b"GGUF")
    (export / "Modelfile").write_text("FROM ./model-Q8_0.gguf\n")
    [info] = list_runs(tmp_path / "runs")
    assert Path(info.ggufs[0]).name == "model-Q8_0.gguf" and len(info.ggufs) == 3
