"""`train()`: the run in this process, or one process per device of `gpus`, started and watched here.

Several processes are started with `torch.multiprocessing` and set up as torchrun would set them
up (RANK, WORLD_SIZE, LOCAL_RANK; NCCL on GPUs, gloo on the CPU), each seeing only its own GPU; they
meet through a file in a private folder and talk over loopback, so nothing listens on the network. Each runs `train_here` with its `Ranks`; rank 0 writes the run directory
as a single process does and sends its events here through a queue, so callers (the CLI's worker
thread, a detached run, the tests) receive them through the same `on_event`. A set `stop` reaches
every process; they agree on it at the next step (engine.train.parallel) and save together.

A process that fails sends its TrainFailed here before it exits; the first one to arrive is the
cause (the others fail because it went), so it is what the run ends with, written to run.json
and metrics.jsonl here once every process is gone. Started by torchrun instead (`python -m
engine.train.launch`, for several machines), each process reads the same variables and rank 0
writes everything itself.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.config.schema import ConfigError, RunConfig, load_toml, parse_gpus
from engine.events import TrainFailed, TrainFinished, TrainStarted, from_record, to_record
from engine.models.errors import ModelLoadError
from engine.models.safety import check_run_code_consent
from engine.runs.writer import record_failure
from engine.train.checkpoint import choose_checkpoint
from engine.train.devices import child_environments, training_environment
from engine.train.load import Failure, prepare_replay_once, refuse, saved_config, train_here
from engine.train.loop import RunResult, result_of
from engine.train.parallel import Ranks
from engine.train.preflight import PreflightError

GRACE_S = 3.0
"""After one process fails: how long the others get to end by themselves before SIGTERM, then SIGKILL."""


def train(config: RunConfig, on_event: Callable[[Any], None], stop: threading.Event,
          resume: str | None = None, gpus: str | None = None, trust_remote_code: bool = False) -> RunResult:
    """Fine-tune as `config` says, reporting through `on_event`; `stop.set()` ends it with a checkpoint.

    With `resume` (a run directory or one of its checkpoints) the run continues in its own
    directory with the config saved there; `gpus` resumes it on other devices. A saved config
    that turns trust_remote_code on is refused unless `trust_remote_code` (the user's word now).
    """
    training_environment()  # before CUDA starts here or in the processes started below, which inherit it
    try:
        planned = saved_config(Path(resume), gpus) if resume else config
    except Failure:
        planned = config  # train_here says why
    if resume:
        try:
            check_run_code_consent(resume, planned.model, planned.trust_remote_code, trust_remote_code)
        except ModelLoadError as exc:
            return refuse(on_event, exc.reason, exc.advice)
    if planned.world_size == 1:
        return train_here(config, on_event, stop, resume, gpus)
    return train_on_ranks(planned, on_event, stop, resume)


def train_on_ranks(config: RunConfig, on_event: Callable[[Any], None], stop: threading.Event,
                   resume: str | None) -> RunResult:
    """One process per device of `config.gpus`; returns once every one of them has ended."""
    import torch.multiprocessing as mp

    try:  # here, not in every process: a config error is no process's failure
        config.validate()
    except ConfigError as exc:
        return refuse(on_event, f"the config has problems:\n{exc}", "fix the fields named above")
    try:
        prepare_replay_once(config, on_event)
    except Failure as failure:
        return refuse(on_event, failure.reason, failure.advice)
    kind, ids = parse_gpus(config.gpus)
    try:
        # Each process sees only its GPU; "cpu:N" processes see none.
        devices = (child_environments(ids, config.gpus) if kind == "cuda"
                   else [{"CUDA_VISIBLE_DEVICES": ""}] * len(ids))
    except PreflightError as exc:
        return refuse(on_event, exc.reason, exc.advice)
    strategy = _resumed_strategy(resume) or choose_strategy(config)
    context = mp.get_context("spawn")
    messages = context.Queue()
    shared_stop = context.Event()
    # The processes meet through a file in a folder only this user can enter, not a TCP store that
    # listens on every interface unauthenticated (pytorch#173909); removed when they are gone.
    private = tempfile.mkdtemp(prefix="ftui-rendezvous-")
    args = (len(ids), str(Path(private) / "store"), config.to_toml(), resume, config.gpus, strategy, kind, devices,
            messages, shared_stop)
    try:
        processes = mp.start_processes(_rank_main, args=args, nprocs=len(ids), join=False, start_method="spawn")
        return _watch(processes, messages, shared_stop, stop, on_event, len(ids))
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _watch(processes: Any, messages: Any, shared_stop: Any, stop: threading.Event, on_event: Callable[[Any], None],
           count: int) -> RunResult:
    """Pass the processes' events on until every one has ended; the run's outcome."""
    from torch.multiprocessing.spawn import ProcessException

    run_dir: str | None = None
    end: TrainFinished | TrainFailed | None = None
    cause: tuple[int, TrainFailed] | None = None
    exited: tuple[int, TrainFailed] = (0, TrainFailed("the training processes ended without a word",
                                                      "the run's output.log (or this terminal) shows what they printed"))

    def take(timeout: float) -> bool:
        nonlocal run_dir, end, cause
        try:
            kind_of, rank, record = messages.get(timeout=timeout)
        except queue.Empty:
            return False
        if kind_of == "failed":
            failed = from_record(record)
            if cause is None and isinstance(failed, TrainFailed):
                cause = (rank, failed)
            return True
        event = from_record(record)
        if isinstance(event, TrainStarted):
            run_dir = event.run_dir
        if isinstance(event, TrainFinished):
            end = event
        on_event(event)
        return True

    done = False
    while not done:
        take(0.1)
        if stop.is_set():
            shared_stop.set()
        try:
            done = processes.join(timeout=0, grace_period=GRACE_S)
        except ProcessException as exc:
            # Without a TrainFailed of its own (killed, or it crashed outside the loop): how it ended.
            exited = (exc.error_index, TrainFailed(f"it ended without a word: {str(exc).strip()}",
                                                   "the run's output.log (or this terminal) shows what it printed"))
            done = True
    while take(0.2):  # what they sent before they ended
        pass
    if cause is None and end is None:
        cause = exited
    if cause is not None:
        rank, failed = cause
        where = f" (process {rank} of {count})"
        end = TrainFailed(failed.reason + where, failed.advice, failed.step)
        if run_dir is not None:
            record_failure(Path(run_dir), end)
        on_event(end)
    result = result_of(end, run_dir)
    assert result is not None
    return result


def choose_strategy(config: RunConfig) -> str:
    """ddp when a whole copy of the model fits on each GPU (and always for QLoRA), fsdp when it does not (or
    when asked)."""
    if config.strategy != "auto":
        return config.strategy
    kind, ids = parse_gpus(config.gpus)
    if kind != "cuda" or config.method == "qlora":  # FSDP cannot shard 4-bit weights (RunConfig.strategy_problems)
        return "ddp"
    from engine.hardware.estimate import estimate_for
    from engine.hardware.probe import probe
    from engine.hardware.recommend import budget_gib

    planned = estimate_for(config.replace(strategy="ddp"))
    free = [g.free_gib for g in probe().gpus if g.index in ids]
    if planned is None or not free or planned.peak_gib <= budget_gib(min(free)):
        return "ddp"
    return "fsdp"


def _resumed_strategy(resume: str | None) -> str:
    """A resumed run keeps the strategy its checkpoint was written under (see load_checkpoint)."""
    if not resume:
        return ""
    choice = choose_checkpoint(Path(resume))
    if choice.path is None:
        return ""
    state = json.loads((choice.path / "state.json").read_text(encoding="utf-8"))
    return "fsdp" if state.get("strategy") == "fsdp" else "ddp"


def _rank_main(rank: int, world: int, store: str, config_toml: str, resume: str | None, gpus: str, strategy: str,
               kind: str, devices: list[dict[str, str]], messages: Any, stop: Any) -> None:
    """One process of the run, as torch.multiprocessing starts it."""
    # Only its own GPU (by UUID: engine.train.devices): "cuda" is that GPU for every library, as in a
    # one-GPU run. cpu:N sees none.
    os.environ.update(devices[rank])
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), FTUI_RENDEZVOUS=f"file://{store}")
    if sys.platform == "linux":
        # The backends' own connections between the processes stay on this machine's loopback too.
        for name in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"):
            os.environ.setdefault(name, "lo")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        # A terminal's Ctrl-C or hangup reaches every process of its group: each asks for the stop.
        signal.signal(sig, lambda *_: stop.set())

    def report(failed: TrainFailed) -> None:
        messages.put(("failed", rank, to_record(failed)))

    def send(event: Any) -> None:
        messages.put(("event", rank, to_record(event)))

    config = RunConfig.from_dict(tomllib.loads(config_toml))
    ok = _run_rank(config, send if rank == 0 else _ignore, stop, resume, gpus, strategy, kind, report)
    if not ok:
        sys.exit(1)


def _run_rank(config: RunConfig, on_event: Callable[[Any], None], stop: Any, resume: str | None, gpus: str | None,
              strategy: str, kind: str, report: Callable[[TrainFailed], None] | None) -> bool:
    """Join the process group the environment describes, train, leave; False when the run failed."""
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    backend = "nccl" if kind == "cuda" else "gloo"
    if backend == "nccl":
        import torch

        if torch.cuda.device_count() > 1:  # under torchrun; ftui's own processes each see one GPU
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        # ftui's own processes meet through their private file; under torchrun, the environment it set.
        dist.init_process_group(backend, init_method=os.environ.get("FTUI_RENDEZVOUS", "env://"), rank=rank,
                                world_size=world)
    except Exception as exc:  # noqa: BLE001 - a rank that cannot join says why, like any failure
        failed = TrainFailed(f"could not join the other training processes: {type(exc).__name__}: {exc}",
                             "check that MASTER_ADDR and MASTER_PORT are reachable and the devices are free")
        (report or on_event)(failed)
        return False
    ranks = Ranks(rank, world, strategy, "cuda" if backend == "nccl" else "cpu", report)
    result = train_here(config, on_event, stop, resume, gpus, ranks)
    if result.ok:
        dist.barrier()  # gloo can abort a process that leaves while another still talks to it
    dist.destroy_process_group()
    return result.ok


def _ignore(_event: Any) -> None:
    pass


def main(argv: list[str] | None = None) -> int:
    """Under torchrun: one process of a run that torchrun started (several machines); rank 0
    writes the run directory and prints its events as JSON lines (`ftui attach RUN` follows it)."""
    parser = argparse.ArgumentParser(prog="torchrun ... -m engine.train.launch")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config")
    source.add_argument("--resume")
    parser.add_argument("--strategy", choices=["ddp", "fsdp"], default="ddp")
    args = parser.parse_args(argv)
    training_environment()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    config = RunConfig.from_dict(load_toml(Path(args.config))) if args.config else RunConfig()
    rank = int(os.environ.get("RANK", "0"))

    def show(event: Any) -> None:
        print(json.dumps(to_record(event)), flush=True)

    import torch

    kind = "cuda" if torch.cuda.is_available() else "cpu"
    return 0 if _run_rank(config, show if rank == 0 else _ignore, stop, args.resume, None, args.strategy, kind,
                          None) else 1


if __name__ == "__main__":
    sys.exit(main())
