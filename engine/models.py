"""One loader for every model ftui trains, exports or evaluates: a catalog id, a hub id or a folder.

Everything that can go wrong before a single step runs (no network, a gated repo, a typo in an
id, pickle-only weights, code that would run on load) is found here and raised as one
`ModelLoadError` that says what happened and what to do, so the TUI and CLI never show a
traceback for a model that cannot load. Safe by default: weights load from safetensors only
and repository code never runs unless the user turned `trust_remote_code` on for that model.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.catalog import ModelSpec, find, get, load_catalog
from engine.errors import ActionableError
from engine.events import EventSink, Progress, ignore

ALLOW_PICKLE_ENV = "FTUI_ALLOW_PICKLE"
"""Set to 1 to load `.bin`/`.pt` weights, which are Python pickles and can run code when read."""
DOWNLOAD_STAGE = "download model"
LOAD_STAGE = "load model"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# What training, merging and export read from a repository; everything else (ONNX, GGUF,
# original/ consolidated checkpoints, images) is skipped so a download fetches one copy.
HUB_PATTERNS = (
    "*.json",
    "*.safetensors",
    "*.model",
    "*.txt",
    "*.jinja",
    "*.tiktoken",
    "*.py",
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelLoadError(ActionableError):
    """A model that cannot be resolved or loaded."""


@dataclass(frozen=True)
class ResolvedModel:
    ref: str
    """A local folder to pass to `from_pretrained` (hub models are downloaded into the HF cache first)."""
    spec: ModelSpec | None
    """The catalog entry, when the model is one ftui knows."""
    prequantized_4bit: bool
    """The weights are already bitsandbytes 4-bit (a `*-bnb-4bit` repository)."""
    base_16bit_ref: str | None
    """The 16-bit weights an adapter is merged into for export (a hub id or folder); None if unknown."""
    trust_remote_code: bool = False
    """The user allowed this model's own Python code to run."""
    source: str = "local"
    """"embedded", "hub" or "local": where `ref` came from."""
    hub_id: str | None = None
    """The repository `ref` was downloaded from, for display and run records."""

    @property
    def name(self) -> str:
        return self.spec.id if self.spec else (self.hub_id or self.ref)


def allow_pickle() -> bool:
    return os.environ.get(ALLOW_PICKLE_ENV, "").strip().lower() in ("1", "true", "yes")


def resolve_model(model: str, on_event: EventSink = ignore, trust_remote_code: bool = False) -> ResolvedModel:
    """Turn what the user typed into a local folder that loads, downloading or converting once.

    Progress events: stage "convert embedded model" on the first use of the embedded model,
    stage "download model" (unit "B") while a hub repository is fetched.
    """
    text = model.strip()
    if not text:
        raise ModelLoadError("No model given.", f"Pick one of: {', '.join(s.id for s in load_catalog())}.")
    path = Path(text).expanduser()
    if path.exists():
        return _resolve_folder(path, trust_remote_code)
    spec = find(text)
    if spec is not None and spec.source == "embedded":
        from engine.embedded import ensure_embedded_model

        folder = ensure_embedded_model(on_event)
        return ResolvedModel(str(folder), spec, False, str(folder), trust_remote_code, "embedded", spec.hub_id)
    if spec is not None:
        repo = text if "/" in text else spec.hub_id
        return _resolve_hub(repo, spec, on_event, trust_remote_code)
    if text.startswith(("/", ".", "~")) or text.count("/") > 1:
        raise ModelLoadError(f"No model folder at {path}.", "Check the path, or give a catalog id or a hub id.")
    if _HUB_ID.match(text):
        return _resolve_hub(text, None, on_event, trust_remote_code)
    raise ModelLoadError(
        f"{text!r} is neither a catalog id, a hub id (owner/name) nor a model folder.{_did_you_mean(text)}",
        f"Catalog ids: {', '.join(s.id for s in load_catalog())}.",
    )


def _did_you_mean(text: str) -> str:
    import difflib

    known = [s.id for s in load_catalog()] + [s.hub_id for s in load_catalog()]
    close = difflib.get_close_matches(text, known, n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def _resolve_folder(path: Path, trust_remote_code: bool) -> ResolvedModel:
    from engine.embedded import embedded_model_dir

    folder = path.resolve()
    if not folder.is_dir():
        hint = " A .gguf is for chat; training needs a Hugging Face folder." if folder.suffix == ".gguf" else ""
        raise ModelLoadError(f"{folder} is a file, not a model folder.{hint}", "Give the folder that holds config.json.")
    config = _read_config(folder)
    _check_weights([p.name for p in folder.iterdir() if p.is_file()], str(folder))
    _check_remote_code(config, str(folder), trust_remote_code)
    embedded = folder == embedded_model_dir().resolve()
    spec = find("smollm2-135m") if embedded else None
    four_bit = _is_bnb_4bit(config)
    return ResolvedModel(
        str(folder), spec, four_bit, None if four_bit else str(folder), trust_remote_code,
        "embedded" if embedded else "local",
    )


def _read_config(folder: Path) -> dict[str, Any]:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelLoadError(
            f"{folder} has no config.json, so it is not a Hugging Face model folder.",
            "Give the folder written by save_pretrained (or a run's model/ or merged/ folder).",
        )
    try:
        return json.loads(config_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ModelLoadError(f"{config_path} is not valid JSON: {exc}.", "Restore the file from its source.") from None


def _check_weights(names: list[str], where: str) -> None:
    """Refuse folders and repositories whose only weights are pickles, unless the user opted in."""
    if any(n.endswith(".safetensors") for n in names):
        return
    pickles = sorted(n for n in names if n.endswith(PICKLE_SUFFIXES))
    if pickles and not allow_pickle():
        raise ModelLoadError(
            f"{where} only has pickle weights ({', '.join(pickles[:3])}), which can run arbitrary code when loaded.",
            f"Convert them to safetensors, or if you trust the source set {ALLOW_PICKLE_ENV}=1 and try again.",
        )
    if not pickles:
        gguf = " It holds GGUF files, which are for chat; training needs safetensors." if any(
            n.endswith(".gguf") for n in names
        ) else ""
        raise ModelLoadError(f"{where} has no model weights (*.safetensors).{gguf}", "Give a complete model folder.")


def _check_remote_code(config: dict[str, Any], where: str, trust_remote_code: bool) -> None:
    if trust_remote_code or "auto_map" not in config:
        return
    from transformers import CONFIG_MAPPING

    if config.get("model_type") not in CONFIG_MAPPING:
        raise ModelLoadError(
            f"{where} needs its own Python code to load (model type {config.get('model_type')!r}).",
            "Set trust_remote_code = true for this run only if you trust the repository.",
        )


def _is_bnb_4bit(config: dict[str, Any]) -> bool:
    quant = config.get("quantization_config") or {}
    return quant.get("quant_method") == "bitsandbytes" and bool(quant.get("load_in_4bit"))


def _resolve_hub(repo: str, spec: ModelSpec | None, on_event: EventSink, trust_remote_code: bool) -> ResolvedModel:
    folder = Path(download(repo, on_event, spec))
    config = _read_config(folder)
    _check_weights([p.name for p in folder.iterdir()], repo)
    _check_remote_code(config, repo, trust_remote_code)
    four_bit = (spec is not None and spec.bits == 4) or _is_bnb_4bit(config)
    if not four_bit:
        base: str | None = str(folder)
    elif spec is not None and spec.base_16bit:
        base = _base_repo(get(spec.base_16bit))
    else:
        base = None
    return ResolvedModel(str(folder), spec, four_bit, base, trust_remote_code, "hub", repo)


def _base_repo(base: ModelSpec) -> str:
    """The 16-bit repository to merge into: one already cached, else one that needs no licence click."""
    from huggingface_hub import try_to_load_from_cache

    candidates = [base.hub_id] + ([base.ungated] if base.ungated else [])
    for repo in candidates:
        if isinstance(try_to_load_from_cache(repo, "config.json"), str):
            return repo
    return base.ungated if base.gated and base.ungated else base.hub_id


def download(repo: str, on_event: EventSink = ignore, spec: ModelSpec | None = None) -> str:
    """Fetch the files training needs from `repo` into the HF cache and return the snapshot folder.

    Respects HF_HOME, HF_TOKEN and HF_HUB_OFFLINE; a repository already cached loads without
    network. Hub errors become ModelLoadError with advice.
    """
    from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download

    network_errors = _network_errors()
    patterns = list(HUB_PATTERNS) + (["*.bin"] if allow_pickle() else [])
    try:
        if constants.HF_HUB_OFFLINE:
            return snapshot_download(repo, allow_patterns=patterns, local_files_only=True)
        try:
            info = HfApi().model_info(repo, files_metadata=True)
        except network_errors:
            return snapshot_download(repo, allow_patterns=patterns, local_files_only=True)
        names = [s.rfilename for s in info.siblings or ()]
        _check_weights(names, repo)
        wanted = [s for s in info.siblings or () if _wanted(s.rfilename, patterns)]
        total = sum(s.size or 0 for s in wanted)
        progress = _DownloadProgress(on_event, repo, total, len(wanted))
        folder = None
        for sibling in wanted:
            progress.next_file(sibling.rfilename)
            path = hf_hub_download(repo, sibling.rfilename, revision=info.sha, tqdm_class=progress.bar_class())
            if sibling.rfilename == "config.json":
                folder = str(Path(path).parent)
        progress.finish()
        if folder is None:
            raise ModelLoadError(f"{repo} has no config.json, so it is not a transformers model.", "Pick another repository.")
        return folder
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - every hub failure is translated, the rest re-raised
        raise _hub_error(repo, exc, spec) from exc


def _wanted(name: str, patterns: list[str]) -> bool:
    from fnmatch import fnmatch

    return "/" not in name and any(fnmatch(name, p) for p in patterns)


def _network_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        import httpx2

        errors.append(httpx2.TransportError)
    except ImportError:
        pass
    try:
        import httpx

        errors.append(httpx.TransportError)
    except ImportError:
        pass
    return tuple(errors)


def _hub_error(repo: str, exc: Exception, spec: ModelSpec | None) -> Exception:
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    spec = spec or find(repo)
    if isinstance(exc, GatedRepoError) or _status(exc) in (401, 403) and spec is not None and spec.gated:
        alternative = spec.ungated if spec and spec.ungated else None
        alt = f" Or use the non-gated copy of the same weights: {alternative}." if alternative else ""
        return ModelLoadError(
            f"{repo} is gated: its licence must be accepted before it can be downloaded.",
            f"Accept the licence at https://huggingface.co/{repo}, create a read token at "
            f"https://huggingface.co/settings/tokens and export HF_TOKEN=<token>.{alt}",
        )
    if isinstance(exc, RepositoryNotFoundError) or _status(exc) in (401, 404):
        return ModelLoadError(
            f"There is no model {repo!r} on the Hugging Face hub (or it is private).{_did_you_mean(repo)}",
            "Check the id on huggingface.co; a private repository needs HF_TOKEN set.",
        )
    if isinstance(exc, (LocalEntryNotFoundError, *_network_errors())):
        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "huggingface.co cannot be reached"
        return ModelLoadError(
            f"{repo} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and {why}.",
            "Connect to the network and try again, copy the cache from a machine that has it "
            "(`hf download` there), or use the embedded model smollm2-135m, which needs no download.",
        )
    if isinstance(exc, HfHubHTTPError):
        return ModelLoadError(f"The hub answered {_status(exc)} for {repo}: {exc}", "Try again in a few minutes.")
    return exc


def _status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


class _DownloadProgress:
    """Sums the bytes of a multi-file download into one Progress stream, at most 5 events a second."""

    def __init__(self, on_event: EventSink, repo: str, total: int, files: int):
        self.on_event, self.repo, self.total, self.files = on_event, repo, total, files
        self.done = 0
        self.file_index = 0
        self.file_name = ""
        self.last_emit = 0.0

    def next_file(self, name: str) -> None:
        self.file_index += 1
        self.file_name = name
        self.emit(force=True)

    def add(self, n: float) -> None:
        self.done += int(n)
        self.emit()

    def emit(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last_emit >= 0.2:
            self.last_emit = now
            message = f"{self.repo}: file {self.file_index}/{self.files} {self.file_name}"
            self.on_event(Progress(DOWNLOAD_STAGE, self.done, self.total or None, "B", message))

    def finish(self) -> None:
        self.done = max(self.done, self.total)
        self.on_event(Progress(DOWNLOAD_STAGE, self.done, self.total or None, "B", f"{self.repo}: {self.files} files ready"))

    def bar_class(self) -> type:
        """A tqdm class for hf_hub_download that shows nothing and forwards the bytes here."""
        from tqdm.auto import tqdm

        sink = self

        class _Bar(tqdm):  # type: ignore[misc]
            def __init__(self, *args: Any, **kwargs: Any):
                kwargs["disable"] = True
                super().__init__(*args, **kwargs)
                sink.add(kwargs.get("initial") or 0)  # bytes already on disk from an interrupted download

            def update(self, n: float | None = 1) -> bool | None:
                sink.add(n or 0)
                return None

            # hf_hub_download reports network bytes here as well as written bytes to update();
            # counting both would double the total.
            def update_transfer(self, n: float | None = 1) -> None:
                return None

            def set_transfer_postfix_str(self, postfix: str, refresh: bool = False) -> None:
                return None

        return _Bar


def load_tokenizer(resolved: ResolvedModel) -> Any:
    """The tokenizer with a chat template and a pad token that is not the end-of-turn token.

    A pad equal to eos would be masked out of the labels with the padding, and the tuned model
    would never learn to end its turn.
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.ref, trust_remote_code=resolved.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"The tokenizer of {resolved.name} does not load: {exc}", "Check the model folder.") from None
    if not tokenizer.chat_template:
        tokenizer.chat_template = _fallback_template(tokenizer)
    if tokenizer.pad_token is None or tokenizer.pad_token == tokenizer.eos_token:
        vocab = tokenizer.get_vocab()
        for candidate in ("<|finetune_right_pad_id|>", "<|endoftext|>", "<pad>", "<|pad|>", tokenizer.unk_token):
            if candidate and candidate in vocab and candidate != tokenizer.eos_token:
                tokenizer.pad_token = candidate
                break
        else:
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _fallback_template(tokenizer: Any) -> str:
    """ChatML when the vocabulary has its markers, else plain role headers ending turns with eos."""
    if "<|im_start|>" in tokenizer.get_vocab():
        return (
            "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
            "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
        )
    return (
        "{% for message in messages %}{{ '### ' + message['role'] | capitalize + ':\n' + message['content'] }}"
        "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\n\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '### Assistant:\n' }}{% endif %}"
    )


def default_dtype(device: str) -> Any:
    """fp32 on CPU (bf16 matmuls there are slow and lossy), bf16 on GPUs that have it, else fp16."""
    import torch

    if not device.startswith("cuda"):
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load_causal_lm(
    resolved: ResolvedModel,
    *,
    load_in_4bit: bool = False,
    dtype: Any = None,
    device: str = "cpu",
    on_event: EventSink = ignore,
) -> Any:
    """Load the model for training or merging; 4-bit (QLoRA) quantises on load with bitsandbytes NF4.

    A repository that is already bitsandbytes 4-bit carries its own quantisation config and is
    loaded as it is.
    """
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype or default_dtype(device)
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "trust_remote_code": resolved.trust_remote_code,
        "use_safetensors": not (allow_pickle() and not any(Path(resolved.ref).glob("*.safetensors"))),
    }
    four_bit = load_in_4bit or resolved.prequantized_4bit
    if four_bit:
        kwargs["device_map"] = {"": device}
    if load_in_4bit and not resolved.prequantized_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype if dtype in (torch.bfloat16, torch.float16) else torch.float32,
        )
    how = "4-bit NF4" if four_bit else str(dtype).removeprefix("torch.")
    on_event(Progress(LOAD_STAGE, 0, 1, "models", f"loading {resolved.name} ({how}) on {device}"))
    # Progress is reported through on_event; transformers' own bar would write over the TUI/CLI.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(resolved.ref, **kwargs)
    except torch.OutOfMemoryError:
        raise ModelLoadError(
            f"{resolved.name} does not fit in {device} memory ({how}).",
            "Pick a smaller model or method=qlora, or close what else uses the GPU (see the hardware screen).",
        ) from None
    except ImportError as exc:
        raise ModelLoadError(f"Loading {resolved.name} ({how}) needs a missing library: {exc}", "Reinstall ftui.") from None
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        # RuntimeError: shape mismatches between config.json and the weights.
        raise ModelLoadError(f"{resolved.name} does not load: {exc}", "Check the model folder or hub id.") from None
    if not four_bit:
        model.to(device)
    on_event(Progress(LOAD_STAGE, 1, 1, "models", f"loaded {resolved.name}"))
    return model


__all__ = [
    "ALLOW_PICKLE_ENV",
    "ModelLoadError",
    "ResolvedModel",
    "download",
    "load_causal_lm",
    "load_tokenizer",
    "resolve_model",
]
