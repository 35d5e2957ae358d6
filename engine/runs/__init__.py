"""The run directory: the one place that knows where a run keeps what, and how to read it back.

runs/<YYYY-MM-DD-HHMM>-<name>/
  config.toml     the resolved RunConfig (resume, export, eval and chat read it back)
  run.json        a RunRecord: status, step, best validation loss, model refs, timestamps, pid
  metrics.jsonl   one event per line, appended and flushed as it happens
  checkpoints/step-N/   written under a temporary name, then renamed; config.toml inside
  adapter/ or model/    the final (or best) PEFT adapter, or the full model
  tokenizer/
  export/         merged/, model-<QUANT>.gguf, Modelfile(s), verify.json
  eval.json       the last evaluation
  lock, heartbeat, stop   while a process trains the run: its lock (one writer), its "still
                  alive" and the request to stop it (live.py)
  output.log      what a detached training process printed

Training, export, evaluation, chat, the TUI and the CLI all ask this package; none of them
builds one of these paths itself. Readers never need torch.
"""

from engine.runs.layout import (
    chat_gguf,
    checkpoint_path,
    complete_checkpoints,
    config_path,
    eval_report_path,
    export_dir,
    find_ggufs,
    gguf_path,
    new_run_path,
    read_config,
    run_dir_of,
    tokenizer_dir,
    verify_path,
    weights_dir,
    write_config,
)
from engine.runs.listing import (
    GpuHolder,
    RunInfo,
    delete_run,
    gpu_holders,
    is_live,
    list_runs,
    read_events,
    read_run,
    refuse_if_live,
)
from engine.runs.live import RunBusy, request_stop
from engine.runs.record import RunReadError, RunRecord, read_record
from engine.runs.writer import RunDir

__all__ = [
    "GpuHolder", "RunBusy", "RunDir", "RunInfo", "RunReadError", "RunRecord", "chat_gguf", "checkpoint_path",
    "complete_checkpoints", "config_path", "delete_run", "eval_report_path", "export_dir", "find_ggufs", "gguf_path",
    "gpu_holders", "is_live", "list_runs", "new_run_path", "read_config", "read_events", "read_record", "read_run",
    "refuse_if_live", "run_dir_of", "request_stop", "tokenizer_dir", "verify_path", "weights_dir", "write_config",
]
