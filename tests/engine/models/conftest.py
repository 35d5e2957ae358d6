"""Fixtures for the model loader: a tiny real Llama on disk, an empty HF cache, a fake hub.

The hub is faked at the boundary only (`HfApi.model_info` and `hf_hub_download`), raising the
real huggingface_hub exception classes, because this machine has no network.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    """A random 2-layer Llama (dims multiple of 64 for bitsandbytes) with the embedded tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from engine.models.embedded import ensure_embedded_model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    config = LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=49152, max_position_embeddings=256, tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    embedded = ensure_embedded_model()
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(embedded / name, folder / name)
    return folder


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache, online unless a test says otherwise."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return cache


class FakeHub:
    """Serves one folder as every repository, downloading into a cache-shaped snapshot folder."""

    def __init__(self, source: Path, cache: Path):
        self.source = source
        self.cache = cache
        self.extra: dict[str, int] = {}
        self.info_error: Exception | None = None
        self.download_error: Exception | None = None
        self.downloaded: list[str] = []

    def model_info(self, repo_id, files_metadata=False, **_):
        if self.info_error is not None:
            raise self.info_error
        siblings = [SimpleNamespace(rfilename=p.name, size=p.stat().st_size) for p in sorted(self.source.iterdir())]
        siblings += [SimpleNamespace(rfilename=name, size=size) for name, size in self.extra.items()]
        return SimpleNamespace(id=repo_id, sha="0" * 40, siblings=siblings)

    def hf_hub_download(self, repo_id, filename, revision=None, tqdm_class=None, **_):
        if self.download_error is not None:
            raise self.download_error
        self.downloaded.append(filename)
        data = (self.source / filename).read_bytes()
        target = self.cache / f"models--{repo_id.replace('/', '--')}" / "snapshots" / revision / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        bar = tqdm_class(total=len(data), desc=filename, unit="B")
        with target.open("wb") as fh:
            for start in range(0, len(data), 1 << 20):
                chunk = data[start : start + (1 << 20)]
                fh.write(chunk)
                bar.update(len(chunk))
                bar.update_transfer(len(chunk))
        bar.close()
        return str(target)


@pytest.fixture
def fake_hub(tiny_folder, hf_cache, monkeypatch) -> FakeHub:
    import huggingface_hub

    hub = FakeHub(tiny_folder, hf_cache)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda self, *a, **k: hub.model_info(*a, **k))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub.hf_hub_download)
    return hub


def http_error(cls, status: int, url: str = "https://huggingface.co/api/models/x"):
    """A real huggingface_hub HTTP error class carrying a response with `status`."""
    import httpx2

    response = httpx2.Response(status, request=httpx2.Request("GET", url))
    return cls(f"{status} Client Error", response=response)
