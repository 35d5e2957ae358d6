"""`export(run_dir)`: merge, write GGUF, quantise, write Modelfiles, verify; events all the way.

Every file appears complete under its final name or not at all (a full disk leaves no
partial .gguf), and "done" (ExportFinished) is only said once every file passed verification.
A failure is reported once, as an ExportFailed event and in the returned result, never raised.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from dataclasses import dataclass
from pathlib import Path

from engine.config.schema import QUANT_TYPES, ConfigError
from engine.errors import ActionableError
from engine.events import (
    EventSink,
    ExportFailed,
    ExportFileWritten,
    ExportFinished,
    ExportStageStarted,
    ExportVerified,
    Progress,
    ignore,
)
from engine.export.gguf_writer import UnsupportedModel
from engine.export.hf_converter import ConversionFailed, ConverterMissing
from engine.export.merge import MergeError, RunSource, base_config_dir, merge, read_run_source
from engine.export.modelfile import default_system_prompt, template_family, write_modelfile
from engine.export.quantize import QuantizeError, quantize
from engine.export.to_gguf import check_convertible, write_f16
from engine.export.verify import MIN_F16_AGREEMENT, FileCheck, Reference, build_reference, check_file
from engine.files.atomic import write_text_atomic
from engine.files.disk_full import is_disk_full
from engine.native.child import NativeCrash, run_native
from engine.runs import RunReadError, export_dir, gguf_path, read_run, verify_path

EXPORT_MARKER = ".ftui-export"
"""Marks a folder ftui exports into, so a later export may replace what is there."""


class ExportError(ActionableError):
    """Inside the pipeline: an export that cannot be done; `export` turns it into its result."""


@dataclass(frozen=True)
class ExportResult:
    out_dir: str
    merged_dir: str
    files: tuple[str, ...]
    """GGUF files, F16 first, then the quantised types in the order asked."""
    modelfiles: tuple[str, ...]
    checks: tuple[FileCheck, ...]
    passed: bool
    failure: ExportFailed | None = None
    """Why the export stopped or did not verify (the same ExportFailed the events carried)."""

    def gguf(self, quant: str) -> str:
        for check in self.checks:
            if check.quant == quant:
                return check.path
        raise KeyError(f"no {quant} file in this export; it has {', '.join(c.quant for c in self.checks)}")


def export(run_dir: str | Path, quants: tuple[str, ...] | list[str] = ("Q8_0",), out_dir: str | Path | None = None,
           on_event: EventSink = ignore, stop: threading.Event | None = None,
           trust_remote_code: bool = False) -> ExportResult:
    """Export a run. Success or failure ends with one event (ExportFinished or ExportFailed)
    and the same outcome in the result; nothing is raised for a run that cannot be exported."""
    out = Path(out_dir) if out_dir else export_dir(run_dir)
    writing: list[str] = []
    try:
        result = _export(Path(run_dir), tuple(quants), out, on_event, stop or threading.Event(), writing,
                         trust_remote_code)
    except (ExportError, MergeError) as exc:
        return _failed(out, ExportFailed(exc.reason, exc.advice), on_event)
    except NativeCrash as exc:
        kept = sorted(p.name for p in out.glob("*.gguf"))
        return _failed(out, ExportFailed(f"{exc.reason} The files written are kept, unverified (no verify.json): "
                                         f"{', '.join(kept) or 'none'}.", exc.advice), on_event)
    except ConfigError as exc:
        return _failed(out, ExportFailed(f"cannot read the run's config.toml:\n{exc}",
                                         "fix the setting named above in the run's config.toml"), on_event)
    except (ConverterMissing, ConversionFailed) as exc:
        return _failed(out, ExportFailed(exc.reason, exc.advice), on_event)
    except UnsupportedModel as exc:
        return _failed(out, ExportFailed(str(exc), "export a model of a supported architecture, or use the merged "
                                                   "HF folder"), on_event)
    except QuantizeError as exc:
        return _failed(out, ExportFailed(str(exc), "check the llama-cpp-python install (`pip show llama-cpp-python`)"),
                       on_event)
    except Exception as exc:
        if is_disk_full(exc):
            return _failed(out, _disk_full(out, writing[-1] if writing else "the export"), on_event)
        if isinstance(exc, OSError):
            return _failed(out, ExportFailed(f"writing the export failed: {exc}",
                                             "check the output folder is writable"), on_event)
        raise
    if not result.passed:
        failed = [c for c in result.checks if not c.passed]
        reason = "; ".join(f"{Path(c.path).name}: {', '.join(c.problems)}" for c in failed)
        failure = ExportFailed(f"verification failed: {reason}",
                               "the files are kept for inspection, but do not ship them; see verify.json")
        on_event(failure)
        return dataclasses.replace(result, failure=failure)
    on_event(ExportFinished(result.out_dir, result.files + result.modelfiles))
    return result


def _disk_full(out: Path, what: str) -> ExportFailed:
    """Which write the disk stopped, and the complete files still there (partial ones never are)."""
    kept = (["merged/"] if (out / "merged").is_dir() else []) + sorted(p.name for p in out.glob("*.gguf"))
    return ExportFailed(
        f"the disk is full: writing {what} in {out} failed; "
        + (f"kept: {', '.join(kept)}" if kept else "nothing was kept"),
        "free disk space there, or export to a larger disk with --out, then export again; "
        "no partial file was left behind")


def _failed(out: Path, failure: ExportFailed, on_event: EventSink) -> ExportResult:
    on_event(failure)
    return ExportResult(str(out), "", (), (), (), False, failure)


def plan_quants(quants: tuple[str, ...]) -> tuple[str, ...]:
    """F16 always comes first: it is the lossless reference and the source of every quantisation."""
    unknown = [q for q in quants if q not in QUANT_TYPES]
    if unknown:
        raise ExportError(f"unknown GGUF type(s) {', '.join(unknown)}", f"choose from {', '.join(QUANT_TYPES)}")
    return tuple(dict.fromkeys(("F16", *quants)))


def _export(run_dir: Path, quants: tuple[str, ...], out: Path, on_event: EventSink,
            stop: threading.Event, writing: list[str], trust_remote_code: bool) -> ExportResult:
    """`writing` gets the name of each output as its stage starts, for a failure to name."""
    plan = plan_quants(quants)
    source = read_run_source(run_dir, trust_remote_code)
    note = _status_note(run_dir)
    if note:
        on_event(Progress("run", 1, 1, message=note))
    check_convertible(source.weights if source.base_ref is None else base_config_dir(source.base_ref))
    _claim(out, ours=out.resolve() == export_dir(run_dir).resolve())
    # A verify.json vouches for the files it names: gone as soon as any of them is rewritten.
    verify_path(out).unlink(missing_ok=True)
    stages = _Stages(out, 2 + len(plan) * 2, on_event, stop, writing)

    stages.start("merge", "merging the adapter into the 16-bit base", "merged/")
    merged_dir = out / "merged"
    model, tokenizer = merge(source, merged_dir, on_event)
    on_event(ExportFileWritten(str(merged_dir), "merged", _dir_size(merged_dir)))

    files: dict[str, Path] = {}
    for quant in plan:
        path = gguf_path(out, quant)
        if quant in ("F16", "BF16"):
            stages.start("write", path.name, path.name)
            write_f16(merged_dir, path, dtype=quant, name=source.config.name, on_event=on_event)
        else:
            stages.start("quantize", path.name, path.name)
            quantize(files["F16"], path, quant)
        files[quant] = path
        on_event(ExportFileWritten(str(path), "gguf", path.stat().st_size, quant))

    stages.start("modelfile", "Ollama Modelfiles", "Modelfiles")
    modelfiles = _write_modelfiles(source, tokenizer, files, quants or ("F16",))
    for mf in modelfiles:
        on_event(ExportFileWritten(str(mf), "modelfile", mf.stat().st_size))

    ref = build_reference(model, tokenizer)
    del model
    checks = _verify(files, ref, stages)
    write_text_atomic(verify_path(out), json.dumps(
        {"run_dir": str(run_dir), "files": [dataclasses.asdict(c) for c in checks]}, indent=2) + "\n")
    on_event(ExportStageStarted("done", stages.steps, stages.steps, ""))
    return ExportResult(
        out_dir=str(out), merged_dir=str(merged_dir), files=tuple(str(p) for p in files.values()),
        modelfiles=tuple(str(p) for p in modelfiles), checks=tuple(checks), passed=all(c.passed for c in checks),
    )


@dataclass
class _Stages:
    """An export's stages as they start: each is announced with the count so far, the output it writes is
    named for a failure to report, and a stop request ends the export before the next one."""

    out: Path
    steps: int
    on_event: EventSink
    stop: threading.Event
    writing: list[str]
    done: int = 0

    def start(self, name: str, message: str, output: str) -> None:
        if self.stop.is_set() and name == "verify":
            raise ExportError(f"export stopped on request before verification: the files in {self.out} are "
                              "unverified (no verify.json)", "export again to verify them before you use them")
        if self.stop.is_set():
            raise ExportError("export stopped on request", "files finished so far are complete; run export again")
        self.writing.append(output)
        self.on_event(ExportStageStarted(name, self.done, self.steps, message))
        self.done += 1


def _verify(files: dict[str, Path], ref: Reference, stages: _Stages) -> list[FileCheck]:
    """Each GGUF against the merged model's reference: lossless types must agree with it, quantised ones
    must still stop at the end of a turn."""
    checks = []
    for quant, path in files.items():
        stages.start("verify", path.name, verify_path(stages.out).name)
        lossless = quant in ("F16", "BF16")
        check = run_native(f"verifying {path.name}", check_file, path, quant, ref,
                           min_agreement=MIN_F16_AGREEMENT if lossless else None, require_stop=not lossless)
        checks.append(check)
        stages.on_event(ExportVerified(str(path), quant, check.token_ids_match, check.argmax_agreement,
                                       check.max_abs_logit_diff, check.stops_at_end_of_turn, check.passed))
    return checks


def _claim(out: Path, ours: bool) -> None:
    """Make `out` an export folder: a run's own export/, one an earlier export marked, or a new or
    empty one. Any other folder is refused, since an export replaces merged/ and the .gguf files
    and sweeps leftovers of interrupted writes in it."""
    marker = out / EXPORT_MARKER
    if not ours and not marker.is_file() and out.is_dir():
        found = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir())
        if found:
            shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
            raise ExportError(f"{out} already holds files ftui did not write ({shown}); an export replaces merged/ "
                              "and its files there", "export into a new or empty folder (--out), or the run's own "
                                                     "export/ (no --out)")
    out.mkdir(parents=True, exist_ok=True)
    if not ours and not marker.is_file():
        write_text_atomic(marker, "This folder holds an ftui export; ftui export may replace its files.\n")


def _status_note(run_dir: Path) -> str:
    """What to know before exporting a run that did not end well (or has not ended); "" otherwise."""
    try:
        run = read_run(run_dir)
    except RunReadError:
        return ""
    where = f"at step {run.step} of {run.total_steps}"
    if run.status in ("failed", "interrupted"):
        why = f" ({run.reason})" if run.reason else ""
        return f"the run is marked {run.status} {where}{why}; exporting the weights it saved before that"
    if run.status == "running":
        return f"the run is still training ({where}); exporting the weights it has saved so far"
    return ""


def _write_modelfiles(source: RunSource, tokenizer: object, files: dict[str, Path],
                      asked: tuple[str, ...]) -> list[Path]:
    """One `<file>.Modelfile` per GGUF, and `Modelfile` for the first type asked for."""
    from engine.hardware.catalog import find

    spec = find(source.config.model)
    family = template_family(getattr(tokenizer, "chat_template", None), spec.chat_template if spec else None)
    system = source.config.system_prompt or default_system_prompt(tokenizer)
    out = []
    for path in files.values():
        out.append(write_modelfile(path.with_suffix(".Modelfile"), path.name, family, system))
    primary = files[asked[0]]
    out.append(write_modelfile(primary.parent / "Modelfile", primary.name, family, system))
    return out


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
