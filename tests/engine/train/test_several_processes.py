"""One run on two processes (gloo on the CPU, `gpus = "cpu:2"`) against one process at the same
global batch, on the tiny model: the losses under DDP and FSDP, a stop from the parent that ends
both with a checkpoint, its resume on another number of processes (or a clear no), and a process
that raises (issue 13).

Two processes at batch 2 see exactly the batches of one process at batch 4, and without dropout
(whose masks each process draws from its own stream) their losses differ only by the order in
which floats are summed: measured at most 3.6e-7 over 6 steps under DDP and under FSDP, held here
to TOLERANCE. With lora_dropout 0.05 the difference was 5.5e-4.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.events import CheckpointSaved, StepLogged, TrainFinished, TrainStarted
from engine.runs import complete_checkpoints, read_run
from engine.train import train
from engine.train.load import Failure, saved_config
from tests.engine.train.test_train_api import api_config

pytestmark = pytest.mark.e2e

TOLERANCE = 2e-3
STEPS = 6
ROOT = Path(__file__).resolve().parents[3]


def config_for(tmp_path, model_folder, **changes):
    # No dropout: its masks are drawn per process, which would differ from one process's by more than sums do.
    values = dict(max_steps=STEPS, eval_interval=3, lora_dropout=0.0, **changes)
    return api_config(tmp_path, model_folder, **values)


def run(config, on_step=None, resume=None, gpus=None):
    events: list = []
    stop = threading.Event()

    def on_event(event):
        events.append(event)
        if on_step is not None and isinstance(event, StepLogged):
            on_step(event, stop)

    result = train(config, on_event, stop, resume=resume, gpus=gpus)
    return result, events


def losses(events) -> dict[int, float]:
    return {e.step: e.loss for e in events if isinstance(e, StepLogged)}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, model_folder):
    """The reference: one process at batch 4, six steps."""
    tmp = tmp_path_factory.mktemp("one")
    result, events = run(config_for(tmp, model_folder, batch_size=4))
    assert result.status == "finished", result.reason
    return events


def test_two_processes_train_the_losses_of_one_at_the_same_global_batch(tmp_path, model_folder, one_process):
    began = time.monotonic()
    result, events = run(config_for(tmp_path, model_folder, batch_size=2, gpus="cpu:2"))
    took = time.monotonic() - began
    assert result.status == "finished", result.reason
    mine, reference = losses(events), losses(one_process)
    assert sorted(mine) == list(range(1, STEPS + 1))
    worst = max(abs(mine[s] - reference[s]) for s in mine)
    assert worst < TOLERANCE, (mine, reference)
    started = next(e for e in events if isinstance(e, TrainStarted))
    assert "2 processes (DDP)" in started.device
    # Rank 0 alone writes: each step once in metrics.jsonl, one adapter, a finished run.json.
    folder = Path(result.run_dir)
    logged = [json.loads(line)["step"] for line in (folder / "metrics.jsonl").read_text().splitlines()
              if '"StepLogged"' in line]
    assert logged == list(range(1, STEPS + 1))
    assert read_run(folder).status == "finished" and (folder / "adapter" / "adapter_config.json").exists()
    print(f"\n2 processes vs 1: largest loss difference {worst:.2e} over {STEPS} steps; {took:.1f} s")


def test_a_stop_from_the_parent_ends_both_with_a_checkpoint_that_resumes_on_one(tmp_path, model_folder,
                                                                                one_process):
    def stop_at_2(event, stop):
        if event.step == 2:
            stop.set()

    config = config_for(tmp_path, model_folder, batch_size=2, gpus="cpu:2")
    result, events = run(config, stop_at_2)
    # The processes agree on the stop at a step boundary after the parent sees it: on a busy machine
    # a tiny model's steps can pass before that, so any step before the last is a stop.
    assert result.status == "stopped" and 2 <= result.steps < STEPS, result.reason
    folder = Path(result.run_dir)
    assert complete_checkpoints(folder)[-1].name == f"step-{result.steps}"
    assert [e.reason for e in events if isinstance(e, CheckpointSaved)][-1] == "stop"
    assert read_run(folder).status == "stopped"

    # The checkpoint holds whole weights, so one process takes it up at batch 4: the same examples per step.
    moved = saved_config(folder, gpus="")
    assert (moved.world_size, moved.batch_size) == (1, 4)
    with pytest.raises(Failure, match="do not split evenly across 3") as refused:
        saved_config(folder, gpus="cpu:3")
    assert "resume on 1, 2, 4 process(es)" in refused.value.advice

    resumed, later = run(config, resume=str(folder), gpus="")
    assert resumed.status == "finished", resumed.reason
    after, reference = losses(later), losses(one_process)
    assert sorted(after) == list(range(result.steps + 1, STEPS + 1))
    assert max(abs(after[s] - reference[s]) for s in after) < TOLERANCE
    assert isinstance(later[-1], TrainFinished)


def test_fsdp_shards_the_same_run_and_its_checkpoint_resumes_under_fsdp_only(tmp_path, model_folder,
                                                                           one_process):
    """fully_shard on gloo: the losses of one process, a stop and a resume on two, and a clear no on one."""

    def stop_at_2(event, stop):
        if event.step == 2:
            stop.set()

    config = config_for(tmp_path, model_folder, batch_size=2, gpus="cpu:2", strategy="fsdp")
    stopped, events = run(config, stop_at_2)
    assert stopped.status == "stopped", stopped.reason
    assert "2 processes (FSDP)" in next(e for e in events if isinstance(e, TrainStarted)).device
    folder = Path(stopped.run_dir)
    state = json.loads((complete_checkpoints(folder)[-1] / "state.json").read_text())
    assert (state["processes"], state["strategy"]) == (2, "fsdp")
    assert (folder / "adapter" / "adapter_model.safetensors").exists()

    refused, _ = run(config, resume=str(folder), gpus="")
    assert refused.status == "failed" and "written by FSDP" in refused.reason
    assert "resumes on 2 or more GPUs" in refused.advice

    resumed, later = run(config, resume=str(folder))
    assert resumed.status == "finished", resumed.reason
    mine, reference = {**losses(events), **losses(later)}, losses(one_process)
    assert sorted(mine) == list(range(1, STEPS + 1))
    worst = max(abs(mine[s] - reference[s]) for s in mine)
    assert worst < TOLERANCE, (mine, reference)
    print(f"\nFSDP on 2 processes, stopped and resumed, vs 1: largest loss difference {worst:.2e}")


HOOK = '''
import os
if os.environ.get("FTUI_TEST_FAIL_RANK"):
    import engine.train.loop as loop
    real = loop.optimizer_step

    def failing(parts, micro, step, *args, **kwargs):
        if parts.ranks.rank == int(os.environ["FTUI_TEST_FAIL_RANK"]) and step == 2:
            raise RuntimeError("process 1 broke on purpose")
        return real(parts, micro, step, *args, **kwargs)

    loop.optimizer_step = failing
'''


def test_a_process_that_raises_fails_the_run_with_its_message(tmp_path, model_folder, monkeypatch):
    """Rank 1 raises inside step 2 while rank 0 waits for it in the gradient all-reduce."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(HOOK)  # runs at the start of each spawned process
    monkeypatch.setenv("PYTHONPATH", f"{hooks}:{ROOT}")
    monkeypatch.setenv("FTUI_TEST_FAIL_RANK", "1")
    began = time.monotonic()
    result, events = run(config_for(tmp_path, model_folder, batch_size=2, gpus="cpu:2"))
    assert result.status == "failed"
    assert "process 1 broke on purpose" in result.reason and "(process 1 of 2)" in result.reason, result.reason
    assert "error.rank1.log" in result.advice
    assert [e.step for e in events if isinstance(e, StepLogged)] == [1]
    folder = Path(result.run_dir)
    record = read_run(folder)
    assert record.status == "failed" and "broke on purpose" in record.reason
    last = json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "TrainFailed" and "broke on purpose" in last["reason"]
    assert "RuntimeError" in (folder / "error.rank1.log").read_text()
    print(f"\na failed process ended the run in {time.monotonic() - began:.1f} s ({sys.platform})")


def test_replay_is_made_once_before_the_processes_start(tmp_path, model_folder, monkeypatch):
    """The base model answers the replay prompts here, once; both processes read its cached answers
    (they would fail asking themselves: the base GGUF below is not a file)."""
    import engine.infer.base_answers as base_answers
    from engine.infer.base_answers import Answer

    monkeypatch.setenv("FTUI_CACHE", str(tmp_path / "cache"))
    asked: list[int] = []

    def answer_here(gguf, conversations, system, max_tokens, on_event=None, label=""):
        asked.append(len(conversations))
        return [Answer(f"A: {c[-1]['content']}", True) for c in conversations]

    monkeypatch.setattr(base_answers, "answer", answer_here)
    monkeypatch.setattr(base_answers, "base_gguf_for", lambda ref, quant, on_event=None: tmp_path / "none.gguf")
    result, events = run(config_for(tmp_path, model_folder, batch_size=2, gpus="cpu:2", retention_mix=0.5))

    assert result.status == "finished", result.reason
    assert len(asked) == 1 and asked[0] > 0
    started = next(e for e in events if isinstance(e, TrainStarted))
    assert started.train_examples == 2 * (40 - started.val_examples)  # half of what the processes train is replay


def test_the_processes_meet_through_a_private_file_and_share_no_pickles(tmp_path, model_folder, monkeypatch):
    """No TCP store listening on every interface, no object (pickle) broadcast between processes: a
    rendezvous file in a folder only this user can enter, removed when the run ends."""
    import ast
    import stat
    import tempfile

    import engine.train.launch as launch

    made: list[tuple[str, int]] = []
    real = tempfile.mkdtemp

    def recorded(*args, **kwargs):
        path = real(*args, **kwargs)
        made.append((path, stat.S_IMODE(os.stat(path).st_mode)))
        return path

    monkeypatch.setattr(launch.tempfile, "mkdtemp", recorded)
    result, _ = run(config_for(tmp_path, model_folder, batch_size=2, gpus="cpu:2"))
    assert result.status == "finished", result.reason
    [(folder, mode)] = made
    assert mode == 0o700 and not os.path.exists(folder)

    pickling = {"broadcast_object_list", "all_gather_object", "gather_object", "scatter_object_list",
                "send_object_list", "recv_object_list"}
    for path in (ROOT / "engine").rglob("*.py"):
        names = {n.attr for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Attribute)}
        assert not names & pickling, f"{path} sends pickles between processes"


def preference_pairs(path: Path) -> Path:
    """Pairs in TRL's fields: each chosen reply is the prompt's words, the rejected one them reversed."""
    lines = []
    for i in range(40):
        words = " ".join(f"t{3 + (i + k) % 60}" for k in range(4 + i % 6))
        lines.append(json.dumps({"prompt": words, "chosen": words, "rejected": " ".join(reversed(words.split()))}))
    path.write_text("\n".join(lines) + "\n")
    return path


def dpo_config(tmp_path, model_folder, **changes):
    return config_for(tmp_path, model_folder, objective="dpo", dataset=str(preference_pairs(tmp_path / "pairs.jsonl")),
                      learning_rate=1e-3, dpo_beta=0.5, **changes)


@pytest.fixture(scope="module")
def one_process_dpo(tmp_path_factory, model_folder):
    result, events = run(dpo_config(tmp_path_factory.mktemp("one-dpo"), model_folder, batch_size=4))
    assert result.status == "finished", result.reason
    return events


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_dpo_on_two_processes_learns_what_one_process_learns(tmp_path, model_folder, one_process_dpo, strategy):
    """The reference pass (adapters off) and the pair losses under DDP and FSDP: the same losses, rewards
    and margins step by step as one process at the same global batch."""
    result, events = run(dpo_config(tmp_path, model_folder, batch_size=2, gpus="cpu:2", strategy=strategy))
    assert result.status == "finished", result.reason
    assert f"2 processes ({strategy.upper()})" in next(e for e in events if isinstance(e, TrainStarted)).device
    mine = {e.step: e for e in events if isinstance(e, StepLogged)}
    reference = {e.step: e for e in one_process_dpo if isinstance(e, StepLogged)}
    assert sorted(mine) == sorted(reference) == list(range(1, STEPS + 1))
    assert reference[STEPS].loss < math.log(2) - 1e-3, "the reference run learned nothing to compare"
    for step, event in mine.items():  # the pair figures are small: held far tighter than TOLERANCE
        assert event.loss == pytest.approx(reference[step].loss, abs=1e-5)
        assert event.metrics == pytest.approx(reference[step].metrics, abs=1e-5)
