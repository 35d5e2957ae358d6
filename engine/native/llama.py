"""Every GGUF ftui runs in llama.cpp is opened here, with load settings chosen for this machine.

Two things differ between machines. On CPUs with AMX (Intel Sapphire Rapids and later, the CPU
of most cloud GPU servers) llama.cpp repacks weights into its AMX buffer, and that path
segfaults at the first decode (ggml-org/llama.cpp#20824, closed without a fix); loading with
`use_extra_bufts = False` keeps the weights in plain CPU buffers and works. That flag also turns
off the AVX2 repacking of Q4_0/Q4_K weights, which other CPUs keep (bench/llama_repack.py
measures what it is worth). And on a GPU box the card may be full (a training run holds it):
the model then loads on the CPU, and the caller is told so.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")
REPACK_ENV = "FTUI_LLAMA_REPACK"
"""1 or 0 overrides the choice (a llama.cpp whose AMX path is fixed, or a CPU that crashes without AMX)."""
_DEFAULTS_LOCK = threading.Lock()


@dataclass(frozen=True)
class LoadPlan:
    """How a GGUF is loaded on this machine, and why."""

    repack: bool
    """llama.cpp's extra buffer types (weight repacking for AMX/AVX2) are used."""
    gpu_layers: int
    """-1 for every layer on the GPU, 0 for the CPU."""
    notes: tuple[str, ...] = ()


def cpu_flags(cpuinfo: Path | None = None) -> frozenset[str]:
    """The feature flags of the first CPU in /proc/cpuinfo (x86's "flags", ARM's "Features");
    empty where there is no such file (macOS, Windows)."""
    fields = _cpu_fields(cpuinfo)
    return frozenset((fields.get("flags") or fields.get("features") or "").split())


def cpu_name(cpuinfo: Path | None = None) -> str:
    """The first CPU's model name, for figures and reports ("AMD EPYC"), or the machine type."""
    import platform

    return _cpu_fields(cpuinfo).get("model name") or platform.processor() or platform.machine()


def _cpu_fields(cpuinfo: Path | None) -> dict[str, str]:
    """The first CPU's lines of /proc/cpuinfo, keys lower-cased; {} where there is no such file."""
    try:
        text = (cpuinfo or CPUINFO).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "processor" and fields:
            break  # the next CPU
        fields.setdefault(key, value.strip())
    return fields


def has_amx(flags: frozenset[str]) -> bool:
    return any(flag.startswith("amx") for flag in flags)


def plan_load(flags: frozenset[str] | None = None, gpu: bool | None = None) -> LoadPlan:
    """The load settings for this machine (or for `flags`/`gpu` given by a caller or a test):
    no repacking on an AMX CPU unless FTUI_LLAMA_REPACK says otherwise, every layer on a GPU."""
    flags = cpu_flags() if flags is None else flags
    if gpu is None:
        import llama_cpp

        gpu = bool(llama_cpp.llama_supports_gpu_offload())
    asked = os.environ.get(REPACK_ENV, "").strip()
    if asked in ("0", "1"):
        return LoadPlan(repack=asked == "1", gpu_layers=-1 if gpu else 0, notes=(f"{REPACK_ENV}={asked}",))
    notes: tuple[str, ...] = ()
    if has_amx(flags):
        notes = (f"this CPU has AMX, whose weight repacking crashes llama.cpp: loading without repacking "
                 f"({REPACK_ENV}=1 turns it on)",)
    return LoadPlan(repack=not has_amx(flags), gpu_layers=-1 if gpu else 0, notes=notes)


def load_llama(path: str | Path, *, n_ctx: int, logits_all: bool = False, vocab_only: bool = False,
               flash_attn: bool = False, seed: int = 0, plan: LoadPlan | None = None) -> tuple[Any, LoadPlan]:
    """A `llama_cpp.Llama` for `path` loaded by `plan` (this machine's by default), and the plan it
    loaded with: a GPU that cannot hold the model or its context falls back to the CPU, noted.
    Raises llama_cpp's ValueError when the file does not load on the CPU either."""
    plan = plan or plan_load()
    try:
        return _load(path, plan, n_ctx, logits_all, vocab_only, flash_attn, seed), plan
    except ValueError as exc:
        if plan.gpu_layers == 0:
            raise
        cpu = LoadPlan(plan.repack, 0, (*plan.notes, f"the GPU could not hold it ({exc}), so it runs on the CPU; "
                                        "it may be busy training: chat is faster once it is free"))
        return _load(path, cpu, n_ctx, logits_all, vocab_only, flash_attn, seed), cpu


def _load(path: str | Path, plan: LoadPlan, n_ctx: int, logits_all: bool, vocab_only: bool, flash_attn: bool,
          seed: int) -> Any:
    import llama_cpp

    with _model_defaults(use_extra_bufts=plan.repack):
        return llama_cpp.Llama(
            model_path=str(path), n_ctx=n_ctx, logits_all=logits_all, vocab_only=vocab_only, verbose=False,
            n_gpu_layers=plan.gpu_layers, n_threads=max(1, min(8, os.cpu_count() or 1)), seed=seed,
            flash_attn=flash_attn,
        )


@contextlib.contextmanager
def _model_defaults(**fields: Any) -> Any:
    """`Llama()` takes no argument for some model parameters (use_extra_bufts among them): it starts
    from `llama_model_default_params()`, so that function answers with `fields` set while one
    model loads (one at a time: the override is process-wide)."""
    import llama_cpp.llama_cpp as lib

    with _DEFAULTS_LOCK:
        original = lib.llama_model_default_params

        def defaults() -> Any:
            params = original()
            for name, value in fields.items():
                setattr(params, name, value)
            return params

        lib.llama_model_default_params = defaults
        try:
            yield
        finally:
            lib.llama_model_default_params = original
