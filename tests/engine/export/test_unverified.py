"""An export stopped before verification is marked unverified: no verify.json means unverified,
an older verify.json never vouches for newer files, and `ftui export` and `ftui runs` say so."""

from __future__ import annotations

import threading

import pytest

from cli.main import main
from engine.events import ExportStageStarted
from engine.export import export
from engine.runs import read_run

from .conftest import make_run, make_tiny_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_model(tmp_path_factory, tokenizer_dir):
    return make_tiny_model(tmp_path_factory.mktemp("unverified-base") / "base", tokenizer_dir)


@pytest.fixture
def run(tmp_path, base_model):
    return make_run(tmp_path / "runs" / "2026-01-01-0000-tiny", base_model)


def stop_at_verification(run_dir, quants=("Q8_0",)):
    stop = threading.Event()
    events = []

    def on_event(event):
        events.append(event)
        if isinstance(event, ExportStageStarted) and event.stage == "modelfile":
            stop.set()  # as a user pressing stop while the Modelfiles are written

    return export(run_dir, quants=quants, on_event=on_event, stop=stop), events


def test_an_export_stopped_before_verifying_says_its_files_are_unverified(run):
    result, events = stop_at_verification(run)
    out = run / "export"
    assert result.failure is not None and not result.passed
    assert f"stopped on request before verification: the files in {out} are unverified" in result.failure.reason
    assert "export again" in result.failure.advice
    assert (out / "model-F16.gguf").exists() and (out / "model-Q8_0.gguf").exists()
    assert not (out / "verify.json").exists()
    assert not any(isinstance(e, ExportStageStarted) and e.stage == "verify" for e in events)
    assert read_run(run).export_status == "unverified"


def test_an_older_verify_json_does_not_vouch_for_new_files(run):
    assert export(run, quants=("F16",)).passed
    assert read_run(run).export_status == "verified"
    stop_at_verification(run, quants=("F16",))
    assert not (run / "export" / "verify.json").exists()
    assert read_run(run).export_status == "unverified"


def test_failed_verification_and_no_export_read_as_such(run):
    assert read_run(run).export_status == ""
    assert not export(run, quants=("Q8_0",)).passed  # a random model never ends its turn
    assert read_run(run).export_status == "failed"


def test_ftui_runs_marks_the_unverified_export(run, capsys):
    stop_at_verification(run)
    assert main(["runs", "--dir", str(run.parent)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(str(run)))
    assert "export (unverified)" in row
    assert f"{run}: its export is unverified (no verify.json)" in out and f"ftui export {run}" in out


def mark(run_dir, status, step, reason):
    import json

    record = json.loads((run_dir / "run.json").read_text())
    record.update(status=status, step=step, total_steps=12, reason=reason)
    (run_dir / "run.json").write_text(json.dumps(record))


def test_exporting_a_run_marked_failed_says_so_first(run, capsys):
    from engine.events import Progress

    mark(run, "failed", 7, "the training loss diverged at step 7")
    events = []
    export(run, quants=(), on_event=events.append)
    notes = [e for e in events if isinstance(e, Progress) and e.stage == "run"]
    assert len(notes) == 1 and events.index(notes[0]) == 0
    assert notes[0].message == ("the run is marked failed at step 7 of 12 (the training loss diverged at step 7); "
                                "exporting the weights it saved before that")
    assert main(["export", str(run), "--quant", "F16"]) == 0
    assert "note: the run is marked failed at step 7 of 12" in capsys.readouterr().err


def test_a_finished_or_stopped_run_exports_without_a_note(run):
    from engine.events import Progress

    mark(run, "stopped", 5, "stopped on request at step 5")
    events = []
    export(run, quants=(), on_event=events.append)
    assert not [e for e in events if isinstance(e, Progress) and e.stage == "run"]
