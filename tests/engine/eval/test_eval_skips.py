"""`ftui eval` says what it skipped: the held-out prompts when there is no eval file (or none of its
lines could be used), and validation loss when the run held out no examples."""

from __future__ import annotations

from cli.commands.eval import print_report
from engine.eval.evaluate import EvalReport


def report(**changes) -> EvalReport:
    values = dict(run_dir="runs/x", eval_file=None, quant="Q4_K_M", items=(), base_score=None, tuned_score=None,
                  base_val_loss=None, tuned_val_loss=None, val_examples=0)
    values.update(changes)
    return EvalReport(**values)


def test_no_eval_file_says_the_held_out_prompts_were_skipped(capsys):
    print_report(report())
    out = capsys.readouterr().out
    assert "Held-out prompts: skipped, no eval file" in out and "--eval-file" in out
    assert "Validation loss: skipped, the run held out no validation examples" in out


def test_an_eval_file_with_no_usable_line_says_so(capsys):
    print_report(report(eval_file="data/x_eval.jsonl", skipped=("data/x_eval.jsonl:1: not valid JSON",)))
    out = capsys.readouterr().out
    assert "Held-out prompts: skipped, data/x_eval.jsonl has no usable line" in out


def test_nothing_is_said_skipped_when_both_ran(capsys):
    print_report(report(base_val_loss=2.0, tuned_val_loss=1.0, val_examples=5))
    out = capsys.readouterr().out
    assert "Validation loss (5 examples)" in out and "Validation loss: skipped" not in out
