"""Fold a run's adapter into 16-bit base weights and save a plain HF folder.

QLoRA adapters are merged into the 16-bit base named in run.json (`base_model_ref`), never
into dequantised 4-bit weights: those carry the 4-bit rounding error into every layer.

Where a CUDA GPU has room for the model in 16 bits, the merge runs there in 16 bits: an 8B base
in float32 on the CPU needs about 32 GB of RAM and minutes of CPU matmuls, in bf16 on the GPU
16 GB of VRAM and seconds. The saved weights are 16-bit either way, so only the rounding of the
adapter's product differs (computed in 16 bits rather than 32).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config.schema import RunConfig
from engine.errors import ActionableError
from engine.events import EventSink, Progress, ignore
from engine.export.artefacts import finish_merged
from engine.files.atomic import atomic_dir
from engine.models.hf_import import hf_imported
from engine.runs import RunReadError, config_path, read_config, read_record, tokenizer_dir, weights_dir

GIB = 1024**3
MERGE_HEADROOM = 1.2
"""Room beyond the weights: activations of the reference pass and the allocator's slack."""


class MergeError(ActionableError):
    """A run that cannot be merged: not a run, no weights, or a base that does not load."""


@dataclass(frozen=True)
class RunSource:
    """What export needs from a run directory."""

    run_dir: Path
    config: RunConfig
    method: str
    weights: Path
    """adapter/ (PEFT) or model/ (full fine-tuning)."""
    base_ref: str | None
    """16-bit base to merge into; None for full fine-tuning."""
    tokenizer_ref: str
    origin_ref: str
    """The model the run started from (for full fine-tuning, the "before" of an evaluation)."""


def read_run_source(run_dir: Path, trust_remote_code: bool = False) -> RunSource:
    """What a run exports from; refused when its config turns repository code on and
    `trust_remote_code` (the user's own word for this command) does not."""
    from engine.models.errors import ModelLoadError
    from engine.models.safety import check_run_code_consent

    run_dir = Path(run_dir)
    if not config_path(run_dir).is_file():
        raise MergeError(f"{run_dir} is not a run directory (no config.toml)",
                         "pass a folder under runs/, e.g. `ftui export runs/<date>-<name>`")
    config = read_config(run_dir)
    try:
        check_run_code_consent(run_dir, config.model, config.trust_remote_code, trust_remote_code)
    except ModelLoadError as exc:
        raise MergeError(exc.reason, exc.advice) from None
    try:
        record = read_record(run_dir)
        method, origin, base = record.method, record.model_ref, record.base_model_ref
    except RunReadError:
        method, origin, base = config.method, config.model, config.model
    tokenizer_ref = str(tokenizer_dir(run_dir)) if tokenizer_dir(run_dir).is_dir() else ""
    weights = weights_dir(run_dir, method)
    if method == "full":
        if not (weights / "config.json").is_file():
            raise MergeError(f"{weights} holds no model", "the run has not finished; export a finished run")
        return RunSource(run_dir, config, method, weights, None, tokenizer_ref or str(weights), origin)
    if not (weights / "adapter_config.json").is_file():
        raise MergeError(f"{weights} holds no adapter (adapter_config.json)",
                         "the run has not saved its adapter yet; export a finished or stopped run")
    return RunSource(run_dir, config, method, weights, base, tokenizer_ref or base, origin)


def base_config_dir(ref: str) -> Path:
    """The folder holding the base model's config.json (local, or the hub cache)."""
    if Path(ref).is_dir():
        return Path(ref)
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(ref, "config.json")).parent
    except Exception as exc:  # noqa: BLE001 - the hub raises many types for one meaning here
        raise MergeError(f"cannot read the base model {ref!r}: {exc}",
                         "the base model must be in the local Hugging Face cache or reachable") from exc


def check_not_4bit(config_dir: Path, ref: str) -> None:
    cfg = json.loads((config_dir / "config.json").read_text(encoding="utf-8"))
    if cfg.get("quantization_config"):
        raise MergeError(
            f"the base {ref!r} is a pre-quantised 4-bit model; merging into it would bake in 4-bit error",
            "train from a catalog 4-bit entry (which names its 16-bit weights) or set model to the 16-bit repo")


@dataclass(frozen=True)
class MergePlace:
    """Where and in what precision the merge runs, and what the verification's reference computes in."""

    device: str
    dtype: Any
    reference_dtype: Any
    """float32 where it fits: the reference logits llama.cpp's are compared with."""
    why: str


def merge_place(params: int, save_dtype: Any, cuda_free: int | None, bf16: bool) -> MergePlace:
    """The GPU in 16 bits when the model fits there with room to spare, else float32 on the CPU.

    params: the model's parameter count; cuda_free: free bytes on the current CUDA device (None: no GPU);
    bf16: whether that GPU computes bf16 natively (fp16 is not used: adapter products can overflow it).
    """
    import torch

    if cuda_free is None:
        return MergePlace("cpu", torch.float32, torch.float32, "no CUDA GPU: float32 on the CPU")
    sixteen = 2 * params * MERGE_HEADROOM
    if not bf16 or save_dtype == torch.float32:
        reason = "the GPU has no native bf16" if not bf16 else "the base is stored in float32"
        return MergePlace("cpu", torch.float32, torch.float32, f"{reason}: float32 on the CPU")
    if cuda_free < sixteen:
        return MergePlace("cpu", torch.float32, torch.float32,
                          f"the GPU has {cuda_free / GIB:.1f} GiB free, the merge needs {sixteen / GIB:.1f} GiB: "
                          "float32 on the CPU")
    # The float32 copy is made while the 16-bit one is still there.
    fp32_fits = cuda_free >= 6 * params * MERGE_HEADROOM
    return MergePlace("cuda", torch.bfloat16, torch.float32 if fp32_fits else torch.bfloat16,
                      f"bf16 on the GPU ({cuda_free / GIB:.1f} GiB free); reference logits in "
                      f"{'float32' if fp32_fits else 'bf16 (float32 would not fit)'}")


def merge(source: RunSource, merged_dir: Path, on_event: EventSink = ignore,
          place: MergePlace | None = None) -> tuple[Any, Any]:
    """Write merged_dir (safetensors, tokenizer, chat template, a model card; configs that transformers
    4.x loads too); return the model (in `place.reference_dtype`, on its device) and tokenizer.

    place: where to merge (default: `merge_place` for this machine).
    """
    hf_imported()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    trust = source.config.trust_remote_code
    weights_ref = str(source.weights) if source.base_ref is None else source.base_ref
    config_dir = source.weights if source.base_ref is None else base_config_dir(source.base_ref)
    save_dtype = _declared_dtype(config_dir)
    if source.base_ref is not None:
        check_not_4bit(config_dir, source.base_ref)
    place = place or _place_here(config_dir, save_dtype, trust)
    on_event(Progress("merge", 0, 3, "steps", f"loading base weights; merging in {place.why}"))
    model = AutoModelForCausalLM.from_pretrained(weights_ref, dtype=place.dtype, trust_remote_code=trust,
                                                 device_map={"": place.device})
    if source.base_ref is not None:
        from peft import PeftModel

        on_event(Progress("merge", 1, 3, "steps", "merging the adapter"))
        model = PeftModel.from_pretrained(model, str(source.weights)).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(source.tokenizer_ref, trust_remote_code=trust)
    model.eval()
    on_event(Progress("merge", 2, 3, "steps", f"saving {merged_dir.name}/ as {save_dtype}"))
    with atomic_dir(merged_dir) as tmp:
        # Saved in the base's own precision; the copy returned holds the saved values.
        model.to(save_dtype).save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        _keep_sentencepiece_model(tokenizer, source, tmp)
        finish_merged(tmp, source)
    model.to(place.reference_dtype)
    on_event(Progress("merge", 3, 3, "steps", "merged"))
    return model, tokenizer


def _place_here(config_dir: Path, save_dtype: Any, trust: bool) -> MergePlace:
    import torch

    if not torch.cuda.is_available():
        return merge_place(0, save_dtype, None, False)
    from engine.hardware.probe import cuda_computes_bf16

    free, _total = torch.cuda.mem_get_info()
    return merge_place(count_parameters(config_dir, trust), save_dtype, free, cuda_computes_bf16())


def count_parameters(config_dir: Path, trust: bool = False) -> int:
    """The model's parameter count from its config alone (built on the meta device: no memory)."""
    import torch
    hf_imported()
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(config_dir, trust_remote_code=trust)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust)
    return sum(p.numel() for p in model.parameters())


def _keep_sentencepiece_model(tokenizer: Any, source: RunSource, folder: Path) -> None:
    """tokenizer.model beside the merged weights when the model has one: transformers 5 does not
    save it, and llama.cpp's converter reads Gemma's and Mistral's vocabulary from it."""
    import shutil

    if (folder / "tokenizer.model").is_file():
        return
    places = [Path(p) for p in (getattr(tokenizer, "vocab_file", None), Path(source.tokenizer_ref) / "tokenizer.model")
              if p]
    if source.base_ref is not None:  # a local folder, or the hub cache's copy of the base
        places.append(base_config_dir(source.base_ref) / "tokenizer.model")
    for place in places:
        if place.name == "tokenizer.model" and place.is_file():
            shutil.copyfile(place, folder / "tokenizer.model")
            return


def _declared_dtype(config_dir: Path) -> Any:
    import torch

    cfg = json.loads((Path(config_dir) / "config.json").read_text(encoding="utf-8"))
    name = cfg.get("dtype") or cfg.get("torch_dtype") or "float32"
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(str(name), torch.float32)
