"""`ftui push` against a fake HfApi (no network here): what one commit holds, the model card, and
one message for each way it cannot be done. The fake raises huggingface_hub's own error classes."""

from __future__ import annotations

import json
import shutil

import pytest

from cli.main import main
from engine.export.push import push

ME = {"name": "me", "orgs": [{"name": "team"}], "auth": {"accessToken": {"role": "write"}}}


class FakeApi:
    def __init__(self, who=None, errors=None):
        self.who = who or ME
        self.errors = errors or {}
        self.calls: list[tuple] = []
        self.operations: dict[str, bytes | str] = {}

    def _maybe_fail(self, name):
        if name in self.errors:
            raise self.errors[name]

    def whoami(self):
        self._maybe_fail("whoami")
        return self.who

    def create_repo(self, repo_id, private=False, exist_ok=False, repo_type=None):
        self._maybe_fail("create_repo")
        self.calls.append(("create_repo", repo_id, private, exist_ok))
        if self.private is None:  # a new repository takes the visibility asked; an existing one keeps its own
            self.private = private

    def repo_info(self, repo_id, repo_type=None):
        from types import SimpleNamespace

        return SimpleNamespace(private=self.private)

    private: bool | None = None
    """The existing repository's visibility; None when it does not exist yet."""

    def create_commit(self, repo_id, operations, commit_message, repo_type=None):
        self._maybe_fail("create_commit")
        self.calls.append(("create_commit", repo_id, commit_message))
        self.operations = {op.path_in_repo: op.path_or_fileobj for op in operations}


@pytest.fixture
def run(tiny_run, tmp_path):
    run = tmp_path / "2026-01-01-0000-tiny"
    shutil.copytree(tiny_run, run)
    (run / "eval.json").write_text(json.dumps({
        "quant": "Q8_0", "items": [{}] * 43, "base_score": 0.0, "tuned_score": 0.372, "base_val_loss": 2.906,
        "tuned_val_loss": 0.341, "retention": {"exact": {"scored": 20, "base_right": 15, "tuned_right": 14,
                                                         "tuned_kept": 13, "share": 0.8667}}}))
    return run


@pytest.fixture(autouse=True)
def token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test")


def card(api) -> str:
    data = api.operations["README.md"]
    return data.decode() if isinstance(data, bytes) else open(data).read()


def test_adapter_push_is_one_commit_with_tokenizer_and_a_card_with_eval_figures(run):
    api = FakeApi()
    result = push(run, "me/tiny-docker", api=api)
    assert result.ok and result.url == "https://huggingface.co/me/tiny-docker"
    assert api.calls == [("create_repo", "me/tiny-docker", False, True),
                         ("create_commit", "me/tiny-docker", "ftui push: adapter of 2026-01-01-0000-tiny")]
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md"} <= set(api.operations)
    assert result.files[-1] == "README.md"
    text = card(api)
    assert "library_name: peft" in text and "## Results" in text
    assert "| held-out prompts answered as expected (43, Q8_0) | 0% | 37% |" in text
    assert "| retention (base's right answers kept) | | 87% |" in text and "| lora_r | 16 |" in text


def test_an_adapter_from_before_portable_adapters_is_uploaded_portable(run):
    record = json.loads((run / "run.json").read_text())
    record["base_model_ref"] = "/cache/hub/models--someone--tiny-base/snapshots/" + "b" * 40
    (run / "run.json").write_text(json.dumps(record))
    api = FakeApi()
    assert push(run, "me/x", api=api).ok
    config = json.loads(api.operations["adapter_config.json"])
    assert (config["base_model_name_or_path"], config["revision"]) == ("someone/tiny-base", "b" * 40)
    assert "tokenizer.json" in api.operations and "base_model: someone/tiny-base\n" in card(api)


def test_repo_without_namespace_goes_to_the_users(run):
    api = FakeApi()
    assert push(run, "tiny-docker", private=True, api=api).repo == "me/tiny-docker"
    assert api.calls[0] == ("create_repo", "me/tiny-docker", True, True)


def test_gguf_push_takes_the_file_and_its_modelfile(run):
    export = run / "export"
    export.mkdir()
    (export / "model-Q4_K_M.gguf").write_bytes(b"GGUF" + b"\0" * 60)
    (export / "model-Q4_K_M.Modelfile").write_text("FROM ./model-Q4_K_M.gguf\n")
    api = FakeApi()
    result = push(run, "me/tiny-gguf", "gguf", "Q4_K_M", api=api)
    assert result.ok and set(api.operations) == {"model-Q4_K_M.gguf", "Modelfile", "README.md"}
    assert "- gguf\n" in card(api) and "`model-Q4_K_M.gguf`" in card(api)


def test_an_unverified_gguf_is_not_pushed(run):
    export = run / "export"
    export.mkdir()
    (export / "model-Q4_K_M.gguf").write_bytes(b"GGUF")
    (export / "verify.json").write_text(json.dumps({"files": [
        {"path": str(export / "model-Q4_K_M.gguf"), "passed": False, "problems": ["no end-of-turn token"]}]}))
    result = push(run, "me/x", "gguf", "Q4_K_M", api=FakeApi())
    assert not result.ok and result.reason == "model-Q4_K_M.gguf failed verification: no end-of-turn token"


@pytest.mark.parametrize("what, quant, reason, advice", [
    ("merged", None, "holds no model", "run `ftui export"),
    ("gguf", "Q8_0", "has no Q8_0 GGUF", "--quant Q8_0"),
])
def test_missing_artefacts_say_how_to_make_them(run, what, quant, reason, advice):
    result = push(run, "me/x", what, quant, api=FakeApi())
    assert not result.ok and reason in result.reason and advice in result.advice


def test_no_token_says_how_to_get_one(run, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    result = push(run, "me/x", api=FakeApi())
    assert (result.ok, result.reason) == (False, "no Hugging Face token")
    assert "HF_TOKEN" in result.advice and "hf auth login" in result.advice


def test_no_network_nothing_uploaded(run):
    import httpx2

    api = FakeApi(errors={"whoami": httpx2.ConnectError("[Errno -3] Temporary failure in name resolution")})
    result = push(run, "me/x", api=api)
    assert not result.ok and result.reason.startswith("cannot reach huggingface.co (ConnectError")
    assert "nothing was uploaded" in result.reason and api.calls == []


def test_offline_mode_says_so(run):
    from huggingface_hub.errors import OfflineModeIsEnabled

    result = push(run, "me/x", api=FakeApi(errors={"whoami": OfflineModeIsEnabled("offline")}))
    assert result.reason == "HF_HUB_OFFLINE is set, so nothing can be uploaded"


@pytest.mark.parametrize("who, errors, repo, reason", [
    ({**ME, "auth": {"accessToken": {"role": "read"}}}, {}, "me/x", "the token of me is read-only"),
    (ME, {}, "someone/x", "the token of me cannot write to someone/ (its namespaces: me, team)"),
    (ME, {"create_repo": 403}, "team/x", "no write access to team/x"),
    (ME, {"whoami": 401}, "me/x", "the hub rejected the token (expired, revoked or mistyped)"),
])
def test_no_write_access(run, who, errors, repo, reason):
    from huggingface_hub.errors import HfHubHTTPError

    from tests.engine.models.conftest import http_error

    api = FakeApi(who, {k: http_error(HfHubHTTPError, v) for k, v in errors.items()})
    result = push(run, repo, api=api)
    assert (result.ok, result.reason) == (False, reason)
    assert not any(c[0] == "create_commit" for c in api.calls)


def test_cli_push(run, monkeypatch, capsys):
    import huggingface_hub

    api = FakeApi()
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda token=None: api)
    assert main(["push", str(run), "--repo", "me/tiny-docker"]) == 0
    assert "Pushed" in capsys.readouterr().out and "README.md" in api.operations
    assert main(["push", str(run), "--repo", "me/x", "--merged"]) == 1
    assert "ftui: push failed:" in capsys.readouterr().err


def test_a_run_reached_through_a_dot_folder_or_a_relative_path_uploads_every_weight(run, tmp_path, monkeypatch):
    hidden = tmp_path / ".runs" / run.name
    hidden.parent.mkdir()
    shutil.move(run, hidden)
    monkeypatch.chdir(tmp_path / ".runs")
    api = FakeApi()
    result = push(f"../.runs/{run.name}", "me/tiny", api=api)
    assert result.ok, result.reason
    weights = {p.name for p in (hidden / "adapter").iterdir() if not p.name.startswith(".")}
    assert weights and weights <= set(api.operations)
    assert "adapter_model.safetensors" in api.operations


def test_a_link_in_the_folder_is_refused_not_followed(run, tmp_path):
    secret = tmp_path / "token"
    secret.write_text("hf_secret")
    (run / "adapter" / "notes.txt").symlink_to(secret)
    api = FakeApi()
    result = push(run, "me/tiny", api=api)
    assert not result.ok and "notes.txt is a symbolic link" in result.reason
    assert api.operations == {}


def test_private_asked_of_an_existing_public_repository_is_refused_before_the_upload(run):
    api = FakeApi()
    api.private = False  # the repository exists and is public: create_repo(exist_ok=True) leaves it so
    result = push(run, "me/tiny", private=True, api=api)
    assert not result.ok and "already exists and is public, and --private was asked" in result.reason
    assert not any(call[0] == "create_commit" for call in api.calls)
    assert push(run, "me/new", private=True, api=FakeApi()).ok  # a new repository is made private


def test_the_card_names_no_local_path_and_not_the_system_prompt(run):
    config = (run / "config.toml").read_text()
    secret_prompt = "You are the internal support bot of ACME; never mention project Zeus."
    config = "\n".join(line for line in config.splitlines()
                       if not line.startswith(("dataset =", "system_prompt =")))
    (run / "config.toml").write_text(f'dataset = "/home/alice/private/customers.jsonl"\n'
                                     f'system_prompt = "{secret_prompt}"\n' + config)
    record = json.loads((run / "run.json").read_text())
    record["base_model_ref"] = record["model_ref"] = "/home/alice/models/base-7b"
    (run / "run.json").write_text(json.dumps(record))
    api = FakeApi()
    assert push(run, "me/tiny", api=api).ok
    text = card(api)
    assert "/home/alice" not in text and "Zeus" not in text
    assert "customers.jsonl (a local file)" in text and "base-7b (a local" in text
    assert f"system prompt: {len(secret_prompt)} characters (not published here)" in text
