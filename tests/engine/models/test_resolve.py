"""Resolving what the user typed: catalog ids, hub ids, folders, and every way that goes wrong."""

from __future__ import annotations

import json
import shutil

import pytest

from engine.events import Progress
from engine.models import DOWNLOAD_STAGE, ModelLoadError, resolve_model
from engine.models.embedded import embedded_model_dir
from tests.engine.models.conftest import http_error


def test_catalog_id_resolves_to_the_converted_embedded_folder():
    resolved = resolve_model("smollm2-135m")
    assert resolved.ref == str(embedded_model_dir())
    assert resolved.source == "embedded"
    assert resolved.spec is not None and resolved.spec.id == "smollm2-135m"
    assert resolved.prequantized_4bit is False
    assert resolved.base_16bit_ref == resolved.ref


def test_embedded_folder_given_as_a_path_is_recognised():
    resolved = resolve_model(str(embedded_model_dir()))
    assert resolved.source == "embedded"
    assert resolved.spec is not None and resolved.spec.id == "smollm2-135m"


def test_local_folder(tiny_folder):
    resolved = resolve_model(str(tiny_folder))
    assert resolved.ref == str(tiny_folder.resolve())
    assert (resolved.source, resolved.spec, resolved.prequantized_4bit) == ("local", None, False)
    assert resolved.base_16bit_ref == resolved.ref


@pytest.mark.parametrize("text", ["./no/such/model", "/tmp/ftui-missing-model-folder", "~/nope/really/not"])
def test_missing_folder_names_the_path(text):
    with pytest.raises(ModelLoadError) as info:
        resolve_model(text)
    assert "No model folder at" in info.value.reason


def test_unknown_id_suggests_the_closest_catalog_id():
    with pytest.raises(ModelLoadError) as info:
        resolve_model("smollm-135m")
    assert "Did you mean 'smollm2-135m'?" in info.value.reason
    assert "llama-3.2-1b" in info.value.advice


def test_empty_model_lists_the_choices():
    with pytest.raises(ModelLoadError) as info:
        resolve_model("  ")
    assert "smollm2-135m" in info.value.advice


def test_folder_without_config_json(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError) as info:
        resolve_model(str(tmp_path))
    assert "no config.json" in info.value.reason


def test_gguf_file_is_not_a_training_model(tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(ModelLoadError) as info:
        resolve_model(str(gguf))
    assert "is a file" in info.value.reason and "training needs" in info.value.reason


def _pickle_folder(tiny_folder, tmp_path):
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(tiny_folder / name, folder / name)
    torch.save(load_file(tiny_folder / "model.safetensors"), folder / "pytorch_model.bin")
    return folder


def test_pickle_only_folder_is_refused_with_the_opt_in(tiny_folder, tmp_path, monkeypatch):
    monkeypatch.delenv("FTUI_ALLOW_PICKLE", raising=False)
    folder = _pickle_folder(tiny_folder, tmp_path)
    with pytest.raises(ModelLoadError) as info:
        resolve_model(str(folder))
    assert "pytorch_model.bin" in info.value.reason and "pickle" in info.value.reason
    assert "FTUI_ALLOW_PICKLE=1" in info.value.advice


def test_pickle_folder_loads_after_opting_in(tiny_folder, tmp_path, monkeypatch):
    from engine.models import load_causal_lm

    monkeypatch.setenv("FTUI_ALLOW_PICKLE", "1")
    folder = _pickle_folder(tiny_folder, tmp_path)
    model = load_causal_lm(resolve_model(str(folder)))
    assert model.config.hidden_size == 64


def test_repository_code_needs_trust_remote_code(tiny_folder, tmp_path):
    folder = tmp_path / "custom"
    shutil.copytree(tiny_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="my_custom_arch", auto_map={"AutoConfig": "modeling_custom.CustomConfig"})
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError) as info:
        resolve_model(str(folder))
    assert "its own Python code" in info.value.reason
    assert "trust_remote_code = true" in info.value.advice
    assert resolve_model(str(folder), trust_remote_code=True).trust_remote_code is True


def test_hub_id_downloads_with_byte_progress(fake_hub):
    events: list[Progress] = []
    resolved = resolve_model("someone/tiny-chat", on_event=events.append)
    assert resolved.source == "hub" and resolved.hub_id == "someone/tiny-chat"
    assert (fake_hub.cache / "models--someone--tiny-chat").is_dir()
    assert resolved.ref.startswith(str(fake_hub.cache))
    total = sum(p.stat().st_size for p in fake_hub.source.iterdir())
    downloads = [e for e in events if e.stage == DOWNLOAD_STAGE]
    assert all(e.unit == "B" and e.total == total for e in downloads)
    assert [e.done for e in downloads] == sorted(e.done for e in downloads)
    assert downloads[-1].done == total
    # written bytes are counted once even though the hub also reports network bytes
    assert max(e.done for e in downloads) == total
    assert "model.safetensors" in fake_hub.downloaded


def test_hub_download_skips_files_training_does_not_read(fake_hub):
    fake_hub.extra = {"original/consolidated.00.pth": 10, "model.gguf": 10, "onnx/model.onnx": 10}
    resolve_model("someone/tiny-chat")
    assert not [f for f in fake_hub.downloaded if f.endswith((".pth", ".gguf", ".onnx"))]


def test_catalog_4bit_entry_is_prequantized_and_merges_into_the_ungated_16bit_repo(fake_hub):
    resolved = resolve_model("llama-3.2-1b-4bit")
    assert resolved.hub_id == "unsloth/Llama-3.2-1B-Instruct-bnb-4bit"
    assert resolved.prequantized_4bit is True
    assert resolved.base_16bit_ref == "unsloth/Llama-3.2-1B-Instruct"


def test_gated_repo_says_accept_the_licence_and_offers_the_mirror(fake_hub):
    from huggingface_hub.errors import GatedRepoError

    fake_hub.download_error = http_error(GatedRepoError, 403)
    with pytest.raises(ModelLoadError) as info:
        resolve_model("llama-3.2-1b")
    assert "meta-llama/Llama-3.2-1B-Instruct is gated" in info.value.reason
    assert "https://huggingface.co/meta-llama/Llama-3.2-1B-Instruct" in info.value.advice
    assert "HF_TOKEN" in info.value.advice
    assert "unsloth/Llama-3.2-1B-Instruct" in info.value.advice


def test_unknown_hub_repo(fake_hub):
    from huggingface_hub.errors import RepositoryNotFoundError

    fake_hub.info_error = http_error(RepositoryNotFoundError, 404)
    with pytest.raises(ModelLoadError) as info:
        resolve_model("nobody/does-not-exist")
    assert "no model 'nobody/does-not-exist'" in info.value.reason


def test_no_network_and_not_cached(fake_hub):
    import httpx2

    fake_hub.info_error = httpx2.ConnectError("Name or service not known")
    with pytest.raises(ModelLoadError) as info:
        resolve_model("someone/tiny-chat")
    assert "not in the local Hugging Face cache" in info.value.reason
    assert "cannot be reached" in info.value.reason
    assert "smollm2-135m" in info.value.advice


def test_hf_hub_offline_and_not_cached(fake_hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError) as info:
        resolve_model("someone/tiny-chat")
    assert "HF_HUB_OFFLINE is set" in info.value.reason
    assert fake_hub.downloaded == []


def test_no_network_uses_a_cached_snapshot(fake_hub, tiny_folder):
    import httpx2

    commit = "1" * 40
    repo = fake_hub.cache / "models--someone--cached"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(tiny_folder, repo / "snapshots" / commit)
    fake_hub.info_error = httpx2.ConnectError("offline")
    resolved = resolve_model("someone/cached")
    assert resolved.ref == str(repo / "snapshots" / commit)
    assert fake_hub.downloaded == []


def test_hub_repo_with_only_pickle_weights_is_refused_before_download(fake_hub, monkeypatch, tmp_path):
    monkeypatch.delenv("FTUI_ALLOW_PICKLE", raising=False)
    source = tmp_path / "pickle-repo"
    source.mkdir()
    (source / "config.json").write_text("{}")
    (source / "pytorch_model.bin").write_bytes(b"\x80")
    fake_hub.source = source
    with pytest.raises(ModelLoadError) as info:
        resolve_model("someone/old-model")
    assert "FTUI_ALLOW_PICKLE=1" in info.value.advice
    assert fake_hub.downloaded == []
