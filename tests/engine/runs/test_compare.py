"""`ftui runs --compare A B`: several runs' loss curves over one another, read from metrics.jsonl."""

from __future__ import annotations

import json

from cli.main import main
from engine.events import EvalLogged, StepLogged, to_record
from engine.runs.curves import find_run, run_curves


def write_run(folder, losses, evals):
    folder.mkdir(parents=True)
    lines = [to_record(StepLogged(s, len(losses), s / len(losses), v, 1e-3, 0.5, 10.0, s, 0.0, 1.0))
             for s, v in enumerate(losses, 1)]
    lines += [to_record(EvalLogged(s, v, v)) for s, v in evals]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"cut sho')
    return folder


def test_curves_and_run_lookup(tmp_path):
    a = write_run(tmp_path / "2026-01-01-0000-lr2e4", [2.0, 1.5, 1.0], [(3, 1.2)])
    write_run(tmp_path / "2026-01-02-0000-lr1e4", [2.0, 1.8], [])
    curves = run_curves(a)
    assert curves.train == ((1, 2.0), (2, 1.5), (3, 1.0)) and curves.val == ((3, 1.2),) and curves.best_val == (3, 1.2)
    assert find_run("lr1e4", tmp_path).name == "2026-01-02-0000-lr1e4"
    assert find_run(str(a), "elsewhere") == a
    try:
        find_run("lr3e4", tmp_path)
    except ValueError as exc:
        assert "no run 'lr3e4'" in str(exc)


def test_compare_plots_both_runs_and_tabulates_them(tmp_path, capsys):
    write_run(tmp_path / "2026-01-01-0000-a", [2.0, 1.5, 1.0, 0.8], [(2, 1.6), (4, 1.1)])
    write_run(tmp_path / "2026-01-01-0001-b", [2.2, 1.9, 1.7, 1.6], [(2, 1.9), (4, 1.7)])
    assert main(["runs", "--dir", str(tmp_path), "--compare", "a", "b"]) == 0
    out = capsys.readouterr().out
    assert "2026-01-01-0000-a train" in out and "2026-01-01-0001-b val" in out and "step" in out
    assert "\x1b[" not in out  # no colour codes when piped
    assert "2026-01-01-0000-a  4      0.8000      1.1000 (4)" in out
    assert main(["runs", "--dir", str(tmp_path), "--compare", "a", "b", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[1]["val"] == [[2, 1.9], [4, 1.7]]


def test_compare_says_what_is_missing(tmp_path, capsys):
    (tmp_path / "2026-01-01-0000-empty").mkdir()
    assert main(["runs", "--dir", str(tmp_path), "--compare", "empty", "nope"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    assert main(["runs", "--dir", str(tmp_path), "--compare", "empty"]) == 2
    assert "no logged steps in 2026-01-01-0000-empty" in capsys.readouterr().err
