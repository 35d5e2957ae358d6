"""Fetching a model from the Hugging Face hub, and saying what to do when that fails.

Only the files training, merging and export read are downloaded, with progress events, and a
repository already in the cache loads without network. Every hub failure (gated licence, typo,
offline, server error) becomes a `ModelLoadError` with advice instead of a traceback.
"""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

from engine.events import EventSink, ignore
from engine.hardware.catalog import ModelSpec, find
from engine.models.errors import ModelLoadError, did_you_mean
from engine.models.hub_progress import DownloadProgress
from engine.models.safety import allow_pickle, check_weights

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


def download(repo: str, on_event: EventSink = ignore, spec: ModelSpec | None = None) -> str:
    """Fetch the files training needs from `repo` into the HF cache and return the snapshot folder.

    Respects HF_HOME, HF_TOKEN and HF_HUB_OFFLINE; a repository already cached loads without
    network. Hub errors become ModelLoadError with advice.
    """
    from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download

    unreachable = network_errors()
    patterns = list(HUB_PATTERNS) + (["*.bin"] if allow_pickle() else [])
    try:
        if constants.HF_HUB_OFFLINE:
            return snapshot_download(repo, allow_patterns=patterns, local_files_only=True)
        try:
            info = HfApi().model_info(repo, files_metadata=True)
        except unreachable:
            return snapshot_download(repo, allow_patterns=patterns, local_files_only=True)
        names = [s.rfilename for s in info.siblings or ()]
        check_weights(names, repo)
        wanted = [s for s in info.siblings or () if _wanted(s.rfilename, patterns)]
        total = sum(s.size or 0 for s in wanted)
        progress = DownloadProgress(on_event, repo, total, len(wanted))
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
    return "/" not in name and any(fnmatch(name, p) for p in patterns)


def network_errors() -> tuple[type[BaseException], ...]:
    """What the hub client raises when huggingface.co cannot be reached (DNS, refused, timeout)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        import httpx2

        errors.append(httpx2.TransportError)
    except ImportError:
        pass
    try:
        import httpx  # type: ignore[import-not-found]

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
            f"There is no model {repo!r} on the Hugging Face hub (or it is private).{did_you_mean(repo)}",
            "Check the id on huggingface.co; a private repository needs HF_TOKEN set.",
        )
    if isinstance(exc, (LocalEntryNotFoundError, *network_errors())):
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
