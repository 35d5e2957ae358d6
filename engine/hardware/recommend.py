"""Which model, method and batch size to start with on this GPU, and the plain reason why.

The ladder is Llama 3.1 8B, 3.2 3B, 3.2 1B: the largest that fits wins, with 16-bit LoRA when
it fits and QLoRA on the catalog's 4-bit repository when only that does, at the largest batch
that fits and gradient accumulation up to an effective batch of about 16. "Fits" keeps
headroom for what the estimate cannot see (other programs growing, longer-than-usual batches).
The same arithmetic answers the training engine's out-of-memory question: what smaller setting
is predicted to fit (`suggest_smaller`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from engine.hardware.catalog import ModelSpec, four_bit_variant, get
from engine.hardware.estimate import MemoryEstimate, estimate, estimate_for
from engine.hardware.probe import GpuInfo, HardwareReport, ram_gib

if TYPE_CHECKING:
    from engine.runs.memory import MeasuredMemory

LADDER = ("llama-3.1-8b", "llama-3.2-3b", "llama-3.2-1b")
"""Largest first; each has a 4-bit variant in the catalog for QLoRA. The default family's ladder."""
FAMILIES = ("llama", "qwen3", "gemma3", "mistral", "phi4")
"""`ftui recommend --family`: each plans within its own catalog entries, largest first."""


def ladder_of(family: str) -> tuple[str, ...]:
    """The 16-bit catalog ids of a family, largest first (Llama's is LADDER)."""
    from engine.hardware.catalog import load_catalog

    if family not in FAMILIES:
        raise ValueError(f"family {family!r} is not one of {', '.join(FAMILIES)}")
    if family == "llama":
        return LADDER
    specs = [s for s in load_catalog() if s.family == family and s.bits == 16]
    return tuple(s.id for s in sorted(specs, key=lambda s: -s.params))
CPU_PRESET = "demo"
"""On the CPU only the embedded model is practical; the demo preset holds its settings."""
PRESET_FOR_METHOD = {"qlora": "low-vram", "lora": "balanced", "dora": "quality", "full": "full"}
"""The preset a GPU recommendation for each method is laid over (engine.config.build): its settings
(rank, dropout, optimizer, targets) are the ones the plan is estimated with."""
HEADROOM_SHARE = 0.10
HEADROOM_GIB = 0.5
"""A plan fits when its estimate stays under free x (1 - 10%) - 0.5 GiB."""
MAX_BATCH_SIZE = 16
EFFECTIVE_BATCH = 16
"""Examples per optimizer step the plan aims for through gradient accumulation."""
MIN_SEQ_LEN = 256
"""suggest_smaller shortens sequences no further than this."""
METHOD_LABELS = {"lora": "LoRA", "qlora": "QLoRA", "dora": "DoRA", "full": "full fine-tuning"}


@dataclass(frozen=True)
class Recommendation:
    model: str
    """Catalog id (the -4bit entry for QLoRA)."""
    method: str
    batch_size: int
    grad_accum: int
    seq_len: int
    peak_gib: float
    free_gib: float
    reason: str
    fits: bool
    grad_checkpointing: bool = True
    gpu_index: int | None = None
    """The GPU planned for; None on the CPU or for a card given with --vram."""
    gpus: str = ""
    """The `gpus` setting of a plan across several GPUs ("0,1"); "" for one."""
    strategy: str = ""
    """"ddp" or "fsdp" across several GPUs; peak_gib is then per GPU and batch_size each one's."""
    measured_from: str = ""
    """The finished run whose measured peak this plan's estimates were checked against (engine.runs.memory)."""
    measured_ratio: float = 1.0
    """How far that run went above its estimate: every figure planned here is raised by it (`memory_need`)."""


@dataclass(frozen=True)
class SmallerPlan:
    batch_size: int
    grad_accum: int
    seq_len: int
    grad_checkpointing: bool
    peak_gib: float

    def describe(self, failed_batch: int, failed_seq_len: int) -> str:
        """The out-of-memory message: what failed and what is predicted to fit."""
        what = f"batch {self.batch_size} with accumulation {self.grad_accum}"
        if self.seq_len != failed_seq_len:
            what += f" at {self.seq_len} tokens (longer examples are truncated)"
        if self.grad_checkpointing:
            what += ", with gradient checkpointing,"
        return (f"batch {failed_batch} at {failed_seq_len} tokens failed; "
                f"{what} is predicted to fit in {self.peak_gib:.1f} GiB")


def budget_gib(free_gib: float) -> float:
    """How much of the free memory a plan may use."""
    return free_gib * (1 - HEADROOM_SHARE) - HEADROOM_GIB


def memory_need(planned: MemoryEstimate, on_gpu: bool, measured_ratio: float = 1.0) -> float:
    """What a run takes from its budget: the whole peak on a GPU; on the CPU, with no CUDA context
    or caching allocator, the tensors alone. `measured_ratio` raises the tensors' part by how far
    this machine's runs went above their estimates (engine.runs.memory), so the home screen's plan,
    the presets list and the form show one figure."""
    base = planned.peak_gib if on_gpu else planned.tensors_gib
    return base + planned.tensors_gib * (measured_ratio - 1)


def fits(spec: ModelSpec, method: str, batch_size: int, seq_len: int, free_gib: float,
         measured_ratio: float = 1.0, **estimate_options: Any) -> tuple[bool, float]:
    """(fits with headroom, predicted peak GiB); options as for `engine.hardware.estimate.estimate`."""
    peak = memory_need(estimate(spec, method, batch_size, seq_len, **estimate_options), True, measured_ratio)
    return peak <= budget_gib(free_gib), peak


def plan_options(method: str) -> dict[str, Any]:
    """The estimate options of the config a plan for `method` becomes, with gradient checkpointing:
    the same `estimate_options` that `estimate_for` reads, so the plan's peak is the form's."""
    from engine.config.presets import load_preset
    from engine.config.schema import ConfigError, RunConfig
    from engine.hardware.estimate import estimate_options as options_of

    try:
        config = load_preset(PRESET_FOR_METHOD[method]).apply()
    except ConfigError:
        config = RunConfig()
    return {**options_of(config), "grad_checkpointing": True}


def plan_fits(spec: ModelSpec, method: str, batch_size: int, seq_len: int, free_gib: float,
              world_size: int = 1, strategy: str = "ddp", measured_ratio: float = 1.0) -> tuple[bool, float]:
    return fits(spec, method, batch_size, seq_len, free_gib, measured_ratio,
                **{**plan_options(method), "world_size": world_size, "strategy": strategy})


def suggest_smaller(spec: ModelSpec, method: str, batch_size: int, seq_len: int, free_gib: float, *,
                    grad_accum: int = 1, grad_checkpointing: bool = False,
                    **estimate_options: Any) -> SmallerPlan | None:
    """The least change predicted to fit: smaller batches at the same effective batch, then
    gradient checkpointing, then shorter sequences. None when even the smallest does not fit."""
    effective = batch_size * grad_accum
    halvings = [b for b in (batch_size >> k for k in range(batch_size.bit_length())) if b < batch_size]
    tries = [(b, seq_len, grad_checkpointing) for b in halvings]
    if not grad_checkpointing:
        tries += [(b, seq_len, True) for b in [batch_size, *halvings]]
    seq = seq_len // 2
    while seq >= MIN_SEQ_LEN:
        tries.append((1, seq, True))
        seq //= 2
    for b, s, ckpt in tries:
        ok, peak = fits(spec, method, b, s, free_gib, grad_checkpointing=ckpt, **estimate_options)
        if ok:
            return SmallerPlan(b, max(1, -(-effective // b)), s, ckpt, peak)
    return None


def recommend(report_or_gpus: HardwareReport | Sequence[GpuInfo], seq_len: int = 2048,
              vram_gib: float | None = None, gpus: int | None = None, family: str = "llama",
              measured: MeasuredMemory | None = None) -> Recommendation:
    """A starting plan across the detected GPUs (the `gpus` with the most free memory, when given),
    for `gpus` cards of `vram_gib` you do not have, or for the CPU.

    Several GPUs win over one when they train at least as large a model with as good a method; a
    GPU whose free memory holds the others back is left out. `family` plans within that family's
    catalog entries (FAMILIES); Llama's ladder is the default. `measured`, the newest finished run
    of this machine (engine.runs.memory), raises every estimate by how far that run went above
    its own, and the reason says so; a measurement of the other device (CPU, CUDA) is not used.
    """
    ladder = ladder_of(family)
    if seq_len < 16:
        raise ValueError(f"seq_len {seq_len} is too short to hold a prompt and a reply")
    if vram_gib is not None and vram_gib <= 0:
        raise ValueError(f"vram_gib must be positive, not {vram_gib:g}")
    if gpus is not None and gpus < 1:
        raise ValueError(f"gpus must be at least 1, not {gpus}")
    report = report_or_gpus if isinstance(report_or_gpus, HardwareReport) else None
    found = report.gpus if report else tuple(report_or_gpus)  # type: ignore[arg-type]
    if vram_gib is not None:
        card = f"the {vram_gib:g} GiB card you plan for"
        single = _plan_gpu(vram_gib, seq_len, card, None, "", ladder)
        several = _plan_several([vram_gib] * (gpus or 1), seq_len, f"each of the {gpus} cards of {vram_gib:g} GiB "
                                "you plan for", tuple(range(gpus or 1)), single, ladder)
        return several or single  # a card you do not have: this machine's measurements say nothing of it
    if gpus is not None and gpus > len(found):
        raise ValueError(f"{gpus} GPUs asked for, {len(found)} found; pass --vram GiB to plan for cards you do not have")
    freest = sorted(found, key=lambda g: (-g.free_gib, g.index))[:gpus or len(found)]
    if not freest:
        return _plan_cpu(seq_len, report.ram_gib if report else ram_gib(),
                         measured if measured is not None and measured.device == "cpu" else None)
    used = measured if measured is not None and measured.device == "cuda" else None
    ratio = used.ratio if used is not None else 1.0
    gpu = freest[0]
    which = ""
    if len(freest) > 1:
        which = (f" Planned for GPU {gpu.index}, the one with the most free memory; "
                 "training uses a single GPU: more would not train a larger model or a better method.")
    # On unified memory (DGX Spark) the GPU's free memory is the system's MemAvailable: the same
    # arithmetic plans on it, and the reason says that programs on the CPU take from it too.
    card = f"your {gpu.name}" + (" (unified memory, shared with the CPU)" if gpu.unified_memory else "")
    single = _plan_gpu(gpu.free_gib, seq_len, card, gpu.index, which, ladder, ratio)
    best = None
    for count in range(2, len(freest) + 1):
        chosen = freest[:count]
        plan = _plan_several([g.free_gib for g in chosen], seq_len, f"each of your {count} GPUs",
                             tuple(sorted(g.index for g in chosen)), best or single, ladder, ratio)
        best = plan or best
    chosen_plan = best or single
    if used is None:
        return chosen_plan
    return replace(chosen_plan, reason=f"{chosen_plan.reason} Planned with this machine's measurement: {used.describe()}.",
                   measured_from=used.run_dir, measured_ratio=used.ratio)


def _plan_several(frees: Sequence[float], seq_len: int, cards: str, indices: tuple[int, ...],
                  rival: Recommendation, ladder: tuple[str, ...] = LADDER,
                  measured_ratio: float = 1.0) -> Recommendation | None:
    """The plan across these GPUs (each as free as the least free of them), when it trains at least
    as large a model with as good a method as `rival`; None otherwise or for one GPU."""
    count, free = len(frees), min(frees)
    if count < 2:
        return None
    for rank, model_id in enumerate(ladder):
        spec = get(model_id)
        for method, candidate in (("lora", spec), ("qlora", four_bit_variant(spec))):
            if candidate is None:
                continue
            if rival.fits and (rank, method != "lora") > _standing(rival, ladder):
                return None
            for strategy in ("ddp", "fsdp"):
                if method == "qlora" and strategy == "fsdp":
                    continue  # FSDP cannot shard 4-bit weights (RunConfig.strategy_problems)
                # Up to the effective batch over all GPUs: more GPUs mean fewer, not larger, steps.
                plan = _largest_batch(candidate, method, seq_len, free, count, strategy,
                                      largest=max(1, EFFECTIVE_BATCH // count), measured_ratio=measured_ratio)
                if plan is None:
                    continue
                batch, peak = plan
                accum = max(1, EFFECTIVE_BATCH // (batch * count))
                if strategy == "ddp":
                    why = (f"DDP: {spec.name} with {METHOD_LABELS[method]} fits whole on each GPU, so each holds a "
                           f"copy and trains its share of every batch: {peak:.1f} GiB per GPU at batch {batch} and "
                           f"{seq_len} tokens with gradient checkpointing; {cards} has {free:.1f} GiB free.")
                else:
                    whole = plan_fits(candidate, method, 1, seq_len, free, measured_ratio=measured_ratio)[1]
                    why = (f"FSDP: {spec.name} with {METHOD_LABELS[method]} needs {whole:.1f} GiB whole at batch 1, "
                           f"more than one GPU holds with headroom, so its weights, gradients and optimizer states are sharded "
                           f"across {count} GPUs: {peak:.1f} GiB per GPU at batch {batch} and {seq_len} tokens with "
                           f"gradient checkpointing; {cards} has {free:.1f} GiB free.")
                why += f" Effective batch {batch} x {count} GPUs x {accum} accumulation = {batch * count * accum}."
                return Recommendation(candidate.id, method, batch, accum, seq_len, round(peak, 2), round(free, 2),
                                      why, True, True, None, ",".join(str(i) for i in indices), strategy)
    return None


def _standing(rec: Recommendation, ladder: tuple[str, ...] = LADDER) -> tuple[int, bool]:
    """(place on the ladder, not 16-bit LoRA): smaller is better."""
    base = next(i for i, m in enumerate(ladder) if rec.model in (m, f"{m}-4bit"))
    return base, rec.method != "lora"


def _plan_gpu(free: float, seq_len: int, card: str, index: int | None, which: str,
              ladder: tuple[str, ...] = LADDER, measured_ratio: float = 1.0) -> Recommendation:
    lora_peak: tuple[str, float] | None = None
    for model_id in ladder:
        spec = get(model_id)
        for method, candidate in (("lora", spec), ("qlora", four_bit_variant(spec))):
            if candidate is None:
                continue
            plan = _largest_batch(candidate, method, seq_len, free, measured_ratio=measured_ratio)
            if plan is None:
                if method == "lora" and lora_peak is None:
                    lora_peak = (spec.name, plan_fits(spec, "lora", 1, seq_len, free, measured_ratio=measured_ratio)[1])
                continue
            batch, peak = plan
            reason = (f"{spec.name} with {METHOD_LABELS[method]} needs {peak:.1f} GiB at batch {batch} "
                      f"and {seq_len} tokens with gradient checkpointing; {card} has {free:.1f} GiB free.")
            if method == "qlora" and lora_peak and lora_peak[0] == spec.name:
                reason += f" 16-bit LoRA would need {lora_peak[1]:.1f} GiB at batch 1."
            return Recommendation(candidate.id, method, batch, max(1, EFFECTIVE_BATCH // batch), seq_len,
                                  round(peak, 2), round(free, 2), reason + which, True, True, index)
    smallest = four_bit_variant(get(ladder[-1])) or get(ladder[-1])
    peak = plan_fits(smallest, "qlora", 1, seq_len, free, measured_ratio=measured_ratio)[1]
    needed = (peak + HEADROOM_GIB) / (1 - HEADROOM_SHARE)
    reason = (f"Nothing fits: even {smallest.name} with QLoRA at batch 1 and {seq_len} tokens needs "
              f"{peak:.1f} GiB ({needed:.1f} GiB with headroom), {needed - free:.1f} GiB more than the "
              f"{free:.1f} GiB free on {card}. "
              "Free memory by closing other GPU programs, lower the sequence length, "
              "or train the embedded model on the CPU.")
    return Recommendation(smallest.id, "qlora", 1, EFFECTIVE_BATCH, seq_len, round(peak, 2), round(free, 2),
                          reason + which, False, True, index)


def best_per_family(free_gib: float, seq_len: int = 2048, card: str = "the card") -> list[Recommendation]:
    """For each family, the plan `recommend` makes within it on one card with `free_gib` free."""
    return [_plan_gpu(free_gib, seq_len, card, None, "", ladder_of(f)) for f in FAMILIES]


def _largest_batch(spec: ModelSpec, method: str, seq_len: int, free: float, world_size: int = 1,
                   strategy: str = "ddp", largest: int = MAX_BATCH_SIZE,
                   measured_ratio: float = 1.0) -> tuple[int, float] | None:
    batch = 1 << (largest.bit_length() - 1)
    while batch >= 1:
        ok, peak = plan_fits(spec, method, batch, seq_len, free, world_size, strategy, measured_ratio)
        if ok:
            return batch, peak
        batch //= 2
    return None


@dataclass(frozen=True)
class ContextFit:
    """The longest sequence one model and method trains on a card (batch 1, gradient checkpointing)."""

    model: str
    """Catalog id (the -4bit entry for QLoRA)."""
    method: str
    seq_len: int
    """A multiple of CONTEXT_STEP; 0 when not even CONTEXT_STEP tokens fit."""
    peak_gib: float
    """Predicted peak at seq_len (at CONTEXT_STEP when nothing fits)."""
    model_limit: bool
    """The model's own context length, not memory, is what stops it."""


CONTEXT_STEP = 256
"""--max-context answers in steps of this many tokens."""


def max_context(free_gib: float, batch_size: int = 1) -> list[ContextFit]:
    """For each ladder model, 16-bit LoRA and QLoRA: the longest sequence predicted to fit `free_gib`.

    The estimate grows with length (activations and the loss's kept rows; the chunked loss's logits
    do not), so a binary search over multiples of CONTEXT_STEP finds the edge.
    """
    out = []
    for model_id in LADDER:
        spec = get(model_id)
        for method, candidate in (("lora", spec), ("qlora", four_bit_variant(spec))):
            if candidate is None:
                continue
            lo, hi = 0, candidate.context // CONTEXT_STEP  # lo fits (0: nothing yet), hi + 1 does not
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if plan_fits(candidate, method, batch_size, mid * CONTEXT_STEP, free_gib)[0]:
                    lo = mid
                else:
                    hi = mid - 1
            seq = lo * CONTEXT_STEP
            peak = plan_fits(candidate, method, batch_size, max(seq, CONTEXT_STEP), free_gib)[1]
            out.append(ContextFit(candidate.id, method, seq, round(peak, 2),
                                  seq == candidate.context // CONTEXT_STEP * CONTEXT_STEP and seq > 0))
    return out


def _plan_cpu(seq_len: int, ram: float, measured: MeasuredMemory | None = None) -> Recommendation:
    from engine.config.presets import load_preset

    # The card shows what accepting it trains: the demo preset's own settings.
    demo = load_preset(CPU_PRESET).apply()
    spec = get(demo.model)
    seq = min(seq_len, demo.max_seq_len)
    # Estimated from the preset's whole config, as the form estimates it, so the two show one figure.
    planned = estimate_for(demo.replace(max_seq_len=seq), spec)
    assert planned is not None
    ratio = measured.ratio if measured is not None else 1.0
    need = memory_need(planned, False, ratio)
    reason = (f"No NVIDIA GPU found, so training runs on the CPU, where only the embedded {spec.name.split(' (')[0]} "
              f"is practical (the {CPU_PRESET} preset): about {need:.1f} GiB of RAM at batch {demo.batch_size} "
              f"and {seq} tokens.")
    if measured is not None:
        reason += f" Planned with this machine's measurement: {measured.describe()}."
    return Recommendation(spec.id, demo.method, demo.batch_size, demo.grad_accum, seq,
                          round(need, 2), round(ram, 2), reason, need <= ram or ram == 0, False, None,
                          measured_from=measured.run_dir if measured is not None else "", measured_ratio=ratio)
