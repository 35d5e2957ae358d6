"""Soak: kill a training run with SIGKILL at random moments, resume it each time, and check it
ends with the losses of the same run left alone.

The run is the tests' tiny 2-layer Llama (tests/engine/train/tiny.py) with LoRA, dropout on (so the
random state must come back too) and a checkpoint after every step (so kills often land inside
a checkpoint write), keep_checkpoints = 3 (so pruning is killed too). Every attempt is its own
process, as a killed terminal's would be. One kill in six lands at a random moment while the
process loads; the others at a random moment within a random step of the run (the child prints
each step, so the moment is chosen in the run's own time, not guessed from a clock that other
work on the machine stretches); half of those aim at the first quarter of the step, where
run.json and the step's checkpoint are written right after its log line. Steps are drawn so that every kill lands before the end. After the last kill the run is
resumed to its end.

    .venv/bin/python bench/soak_resume.py [--kills 20] [--epochs 10] [--seed 0]

Prints where each kill landed, the uninterrupted and the resumed run's losses side by side, the
largest difference over every step and evaluation, and what was left on disk (checkpoints,
partial folders). Exits 1 when a loss differs or a leftover remains.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def config_for(out: Path, epochs: float):
    from tests.engine.train.tiny import tiny_config

    return tiny_config(out, lora_dropout=0.1, epochs=epochs, save_interval=1, eval_interval=5, keep_checkpoints=3)


def child(model: str, out: str, epochs: float, resume: str | None) -> int:
    """One attempt: train (or resume) and say when training starts and how it ended."""
    import threading

    from engine.events import StepLogged, TrainStarted
    from engine.train import run_loaded
    from tests.engine.train.tiny import loaded_for

    last = [0.0]

    def on_event(event):
        # Each step line carries the time since the previous one, measured here, where the pipe and
        # the parent's own scheduling add nothing: the parent times its kill within the next step by it.
        now = time.monotonic()
        if isinstance(event, TrainStarted):
            print(f"started {event.start_step}", flush=True)
        elif isinstance(event, StepLogged):
            print(f"step {event.step} {now - last[0]:.4f}", flush=True)
        last[0] = now

    result = run_loaded(config_for(Path(out), epochs), loaded_for(Path(model)), on_event, threading.Event(),
                        resume=resume)
    print(f"ended {result.status} {result.steps} {result.reason}", flush=True)
    return 0 if result.ok else 1


def spawn(model: Path, out: Path, epochs: float, resume: Path | None) -> subprocess.Popen:
    args = [sys.executable, __file__, "--child", str(model), str(out), str(epochs)]
    if resume is not None:
        args.append(str(resume))
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)


def finish(model: Path, out: Path, epochs: float, resume: Path | None) -> tuple[float, float, str]:
    """Run an attempt to its end; (seconds to TrainStarted, seconds in all, last line)."""
    began = time.monotonic()
    proc = spawn(model, out, epochs, resume)
    started = ended = ""
    start_s = 0.0
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("started"):
            start_s, started = time.monotonic() - began, line
        elif line.startswith("ended"):
            ended = line.strip()
    proc.wait()
    if not started or not ended.startswith("ended finished"):
        sys.exit(f"the attempt did not finish: {ended or 'no output'}")
    return start_s, time.monotonic() - began, ended


def metrics(run: Path) -> tuple[dict[int, float], dict[int, float], list[int]]:
    """Step losses and validation losses by step, and the logged step sequence."""
    steps: dict[int, float] = {}
    evals: dict[int, float] = {}
    order = []
    for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["event"] == "StepLogged":
            steps[record["step"]] = record["loss"]
            order.append(record["step"])
        elif record["event"] == "EvalLogged":
            evals[record["step"]] = record["val_loss"]
    return steps, evals, order


def last_step(run: Path) -> int:
    try:
        return max(metrics(run)[2], default=0)
    except (OSError, ValueError, KeyError):
        return 0  # a line cut by the kill: the next resume truncates it


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--epochs", type=float, default=10.0, help="6 steps each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, out, epochs, *resume = args.child
        return child(model, out, float(epochs), resume[0] if resume else None)

    from engine.runs import complete_checkpoints
    from tests.engine.train.tiny import make_model_folder

    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="ftui-soak-"))
    model = make_model_folder(work / "tiny-llama")
    total_steps = int(6 * args.epochs)

    start_s, whole_s, _ = finish(model, work / "whole", args.epochs, None)
    step_s = (whole_s - start_s) / total_steps
    reference = next((work / "whole" / "runs").iterdir())
    print(f"uninterrupted: {total_steps} steps, training starts {start_s:.1f} s after launch, "
          f"{whole_s:.1f} s in all ({step_s:.2f} s a step with its checkpoint)")

    out = work / "soak"
    run: Path | None = None
    landed = {"loading": 0, "training": 0, "writing a checkpoint": 0, "writing another file": 0,
              "after it finished": 0}
    fresh_starts = 0
    print(f"\n{'kill':>4} {'at s':>6} {'from step':>9} {'to step':>7}  landed while")
    for kill in range(1, args.kills + 1):
        resume = run if run is not None and complete_checkpoints(run) else None
        if run is not None and resume is None:
            shutil.rmtree(run)  # killed before its first checkpoint: nothing to resume, start again
            run, fresh_starts = None, fresh_starts + 1
        before = last_step(resume) if resume else 0
        began = time.monotonic()
        proc = spawn(model, out, args.epochs, resume)
        assert proc.stdout is not None
        output = ""
        if rng.random() < 1 / 6:
            time.sleep(rng.uniform(0.0, start_s))
        else:
            # A step within the next share of what is left, so the kills to come still land mid-run.
            left = total_steps - 1 - before
            room = max(1, min(2 * left // (args.kills - kill + 3), left - 2))
            target = f"step {before + rng.randint(1, room)} "
            for line in proc.stdout:
                output += line
                if line.startswith(target):
                    step_s = float(line.split()[2])  # this attempt's own pace: other work on the machine varies it
                    break
                if line.startswith("ended"):
                    break
            # run.json and the step's checkpoint are written just after its log line: half the kills
            # aim at that first quarter of the step, the others anywhere in it.
            time.sleep(rng.uniform(0.0, step_s / 4 if rng.random() < 0.5 else step_s))
        finished = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        output += proc.communicate()[0]
        delay = time.monotonic() - began
        run = next((out / "runs").iterdir()) if (out / "runs").is_dir() and any((out / "runs").iterdir()) else None
        reached = last_step(run) if run else 0
        if finished or "ended finished" in output:
            where = "after it finished"
        elif "started" not in output:
            where = "loading"
        elif run is not None and list((run / "checkpoints").glob(f".*.p{proc.pid}.*.partial")):
            where = "writing a checkpoint"  # the partial folder carries the killed process's pid
        elif run is not None and list(run.rglob(f".*.p{proc.pid}.*.partial")):
            where = "writing another file"
        else:
            where = "training"
        landed[where] += 1
        print(f"{kill:>4} {delay:>6.2f} {before:>9} {reached:>7}  {where}")
        if where == "after it finished":
            sys.exit("the run finished before the kill: use more --epochs so every kill lands mid-run")

    assert run is not None
    leftover_before = sorted(p.name for p in run.rglob("*.partial"))
    finish(model, out, args.epochs, run if complete_checkpoints(run) else None)
    run = next((out / "runs").iterdir())

    whole_steps, whole_evals, _ = metrics(reference)
    soak_steps, soak_evals, order = metrics(run)
    diffs = [abs(whole_steps[s] - soak_steps[s]) for s in whole_steps if s in soak_steps]
    diffs += [abs(whole_evals[s] - soak_evals[s]) for s in whole_evals if s in soak_evals]
    leftovers = sorted(str(p.relative_to(run)) for p in run.rglob("*.partial"))
    kept = [p.name for p in complete_checkpoints(run)]
    status = json.loads((run / "run.json").read_text())["status"]

    print(f"\nkills: {args.kills} ({', '.join(f'{n} {k}' for k, n in landed.items() if n)}); "
          f"fresh starts after a kill before the first checkpoint: {fresh_starts}")
    print(f"partial folders left by the kills before the last resume: {len(leftover_before)}; after it: "
          f"{len(leftovers)}")
    print(f"checkpoints kept: {', '.join(kept)}; run status: {status}")
    print(f"\n{'step':>4} {'uninterrupted':>14} {'killed+resumed':>15}")
    for step in sorted(set(range(1, total_steps + 1, max(1, total_steps // 8))) | {total_steps}):
        print(f"{step:>4} {whole_steps[step]:>14.6f} {soak_steps.get(step, float('nan')):>15.6f}")
    print(f"validation losses: uninterrupted {[round(whole_evals[s], 6) for s in sorted(whole_evals)]}")
    print(f"                   resumed       {[round(soak_evals[s], 6) for s in sorted(soak_evals)]}")
    same_steps = order == list(range(1, total_steps + 1))
    exact = diffs and max(diffs) == 0.0
    print(f"\nlargest |difference| over {len(diffs)} step and validation losses: {max(diffs):.3g}"
          f" ({'bit-identical' if exact else 'not identical'}); metrics.jsonl holds each step once, in order: "
          f"{same_steps}")
    ok = (same_steps and set(soak_steps) == set(whole_steps) and set(soak_evals) == set(whole_evals)
          and max(diffs) <= 1e-6 and not leftovers and status == "finished")
    print("PASS" if ok else "FAIL")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
