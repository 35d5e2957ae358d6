"""`ftui push`: a run's adapter, merged model or one GGUF to a Hugging Face model repository.

One commit holds the files and a model card written for the upload: base model and revision,
data, settings, and the figures eval.json has (held-out scores, validation loss, retention). The
token is HF_TOKEN or the one `hf auth login` saved; the hub is asked who it belongs to before
anything is created, so a missing, rejected or read-only token, a namespace the token cannot
write to, and an unreachable hub each end in one message that says what to do, with nothing
uploaded (a hub commit is all or nothing).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from shlex import quote
from typing import Any, Literal

from engine.errors import ActionableError
from engine.events import EventSink, Progress, ignore
from engine.export.card import Kind, model_card, read_eval
from engine.export.portable import TOKENIZER_FILES, base_model
from engine.runs import (
    RunReadError,
    export_dir,
    gguf_path,
    read_config,
    read_record,
    tokenizer_dir,
    verify_path,
    weights_dir,
)

What = Literal["adapter", "merged", "gguf"]
TOKENS_URL = "https://huggingface.co/settings/tokens"


class PushError(ActionableError):
    """A push that cannot be done; `push` turns it into its result."""


@dataclass(frozen=True)
class PushResult:
    ok: bool
    repo: str
    url: str = ""
    files: tuple[str, ...] = ()
    """Paths in the repository, README.md last."""
    reason: str = ""
    advice: str = ""


def push(run_dir: str | Path, repo: str, what: What = "adapter", quant: str | None = None, *, private: bool = False,
         token: str | None = None, api: Any = None, on_event: EventSink = ignore) -> PushResult:
    """Upload one artefact of a run; every outcome is the result, nothing is raised."""
    try:
        return _push(Path(run_dir), repo, what, quant, private, token, api, on_event)
    except PushError as exc:
        return PushResult(False, repo, reason=exc.reason, advice=exc.advice)


def _push(run_dir: Path, repo: str, what: What, quant: str | None, private: bool, token: str | None, api: Any,
          on_event: EventSink) -> PushResult:
    files, kind = _artefact(run_dir, what, quant)
    token = token or _saved_token()
    if not token:
        raise PushError("no Hugging Face token", f"set HF_TOKEN to a token with write access ({TOKENS_URL}) or "
                                                 "run `hf auth login`")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    on_event(Progress("push", 0, 3, "steps", "checking the token"))
    who = _hub(lambda: api.whoami(), repo)
    repo = _writable(repo, who)
    on_event(Progress("push", 1, 3, "steps", f"creating {repo}"))
    _hub(lambda: api.create_repo(repo, private=private, exist_ok=True, repo_type="model"), repo)
    # create_repo leaves a repository that already exists as it is: a public one stays public.
    if private and not _hub(lambda: api.repo_info(repo, repo_type="model"), repo).private:
        raise PushError(f"{repo} already exists and is public, and --private was asked; nothing was uploaded",
                        f"make it private on https://huggingface.co/{repo}/settings, or push to a new repository")
    card = _card(run_dir, kind, [name for name, _ in files])
    from huggingface_hub import CommitOperationAdd

    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=data if isinstance(data, bytes) else str(data))
                  for name, data in files]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode("utf-8")))
    size = sum(len(data) if isinstance(data, bytes) else data.stat().st_size for _, data in files)
    on_event(Progress("push", 2, 3, "steps", f"uploading {len(operations)} files, {size / 2**20:.1f} MiB"))
    _hub(lambda: api.create_commit(repo, operations, commit_message=f"ftui push: {what} of {run_dir.name}",
                                   repo_type="model"), repo)
    on_event(Progress("push", 3, 3, "steps", f"pushed to https://huggingface.co/{repo}"))
    return PushResult(True, repo, f"https://huggingface.co/{repo}", (*(name for name, _ in files), "README.md"))


def _artefact(run_dir: Path, what: What, quant: str | None) -> tuple[list[tuple[str, Path | bytes]], Kind]:
    """The files to upload as (path in the repository, local path), and the card's kind."""
    try:
        method = read_record(run_dir).method or read_config(run_dir).method
    except (RunReadError, OSError, ValueError) as exc:
        raise PushError(f"{run_dir} is not a run directory ({exc})", "pass a folder under runs/") from None
    if what == "gguf":
        quant = quant or "Q4_K_M"
        path = gguf_path(export_dir(run_dir), quant)
        if not path.is_file():
            have = sorted(p.stem.removeprefix("model-") for p in export_dir(run_dir).glob("model-*.gguf"))
            exported = f"; it has {', '.join(have)}" if have else ""
            raise PushError(f"{run_dir} has no {quant} GGUF{exported}", f"run `ftui export {quote(str(run_dir))} --quant {quant}`")
        failed = _failed_verification(run_dir, path)
        if failed:
            raise PushError(f"{path.name} failed verification: {failed}", "export again and push a verified file")
        files: list[tuple[str, Path | bytes]] = [(path.name, path)]
        modelfile = path.with_suffix(".Modelfile")
        if modelfile.is_file():
            files.append(("Modelfile", modelfile))
        return files, "gguf"
    folder = export_dir(run_dir) / "merged" if what == "merged" else weights_dir(run_dir, method)
    if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
        advice = f"run `ftui export {quote(str(run_dir))}` first" if what == "merged" else "push a run that has trained"
        raise PushError(f"{folder} holds no model", advice)
    files = _folder_files(folder)
    kind: Kind = "merged" if what == "merged" else ("model" if method == "full" else "adapter")
    if kind == "adapter":
        files = _portable_adapter(run_dir, dict(files))
    return files, kind


def _folder_files(folder: Path) -> list[tuple[str, Path | bytes]]:
    """Every file under `folder` by its path inside it, leaving out hidden ones (judged inside the
    folder, so a run under a dot-folder or reached through ../ keeps its weights); a symbolic link
    is refused, since it would upload whatever it points at."""
    files: list[tuple[str, Path | bytes]] = []
    for path in sorted(folder.rglob("*")):
        inside = path.relative_to(folder)
        if any(part.startswith(".") for part in inside.parts):
            continue
        if path.is_symlink():
            raise PushError(f"{path} is a symbolic link (to {path.readlink()}); ftui uploads only the files a run "
                            "wrote, never what a link points at", "replace the link with the file itself, or remove "
                            "it, and push again")
        if path.is_file() and path.name != "README.md":
            files.append((inside.as_posix(), path))
    return files


def _portable_adapter(run_dir: Path, files: dict[str, Path | bytes]) -> list[tuple[str, Path | bytes]]:
    """An adapter written before ftui made them portable: its base named as on the hub, and the
    run's tokenizer beside it."""
    record = read_record(run_dir)
    base = base_model(record.base_model_ref or record.model_ref)
    config_file = files.get("adapter_config.json")
    if isinstance(config_file, Path):
        cfg = json.loads(config_file.read_text(encoding="utf-8"))
        if cfg.get("base_model_name_or_path") != base.id:
            cfg["base_model_name_or_path"], cfg["revision"] = base.id, base.revision
            files["adapter_config.json"] = (json.dumps(cfg, indent=2) + "\n").encode("utf-8")
    tokenizer = tokenizer_dir(run_dir)
    if "tokenizer.json" not in files and tokenizer.is_dir():
        files.update({name: tokenizer / name for name in TOKENIZER_FILES if (tokenizer / name).is_file()})
    return sorted(files.items())


def _failed_verification(run_dir: Path, path: Path) -> str:
    try:
        checks = json.loads(verify_path(export_dir(run_dir)).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    for check in checks:
        if Path(check.get("path", "")).name == path.name and not check.get("passed", True):
            return ", ".join(check.get("problems") or ["not passed"])
    return ""


def _card(run_dir: Path, kind: Kind, files: list[str]) -> str:
    config = read_config(run_dir)
    record = read_record(run_dir)
    base = base_model(record.base_model_ref or record.model_ref)
    return model_card(kind, config, base, asdict(record), read_eval(run_dir), files)


def _saved_token() -> str | None:
    from huggingface_hub import get_token

    return get_token()


def _writable(repo: str, who: dict[str, Any]) -> str:
    """`repo` with the user's namespace when it has none; refused when the token cannot write there."""
    user = str(who.get("name") or "")
    repo = repo if "/" in repo else f"{user}/{repo}"
    role = ((who.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise PushError(f"the token of {user} is read-only", f"create a token with write access at {TOKENS_URL} "
                                                            "and set HF_TOKEN to it")
    namespaces = {user, *(str(o.get("name")) for o in who.get("orgs") or [] if isinstance(o, dict))}
    namespace = repo.split("/", 1)[0]
    if namespace not in namespaces:
        raise PushError(f"the token of {user} cannot write to {namespace}/ (its namespaces: "
                        f"{', '.join(sorted(namespaces))})", f"push to {user}/{repo.split('/', 1)[1]}, or use a "
                                                             f"token of a member of {namespace}")
    return repo


def _hub(call: Any, repo: str) -> Any:
    """One hub call, its failures as PushError."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError

    from engine.models.hub import network_errors

    try:
        return call()
    except OfflineModeIsEnabled:
        raise PushError("HF_HUB_OFFLINE is set, so nothing can be uploaded",
                        "unset HF_HUB_OFFLINE and push again") from None
    except network_errors() as exc:
        raise PushError(f"cannot reach huggingface.co ({type(exc).__name__}: {exc}); nothing was uploaded",
                        "check the network (or a proxy setting) and push again") from None
    except (RepositoryNotFoundError, HfHubHTTPError) as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 401:
            raise PushError("the hub rejected the token (expired, revoked or mistyped)",
                            f"create a new token at {TOKENS_URL} and set HF_TOKEN, or run `hf auth login`") from None
        if status in (403, 404) or isinstance(exc, RepositoryNotFoundError):
            raise PushError(f"no write access to {repo}", f"push to a repository in your own namespace, or use a "
                                                          f"token with write access to it ({TOKENS_URL})") from None
        raise PushError(f"the hub answered {status}: {exc}", "try again in a few minutes") from None
