"""Hub dataset splits: `train`, else the one SFT split, else an error listing the splits.

`datasets` is faked at the boundary (`get_dataset_split_names`, `load_dataset`): no network here.
"""

import pytest

from cli.main import main
from engine.config.schema import RunConfig
from engine.data import DatasetError, load_conversations
from engine.data.readers import pick_split

ROW = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}


@pytest.fixture
def hub(monkeypatch):
    """A fake hub whose datasets have the splits in `hub.splits`; records the split loaded."""
    import datasets

    class Hub:
        splits = ["train_sft", "test_sft", "train_gen", "test_gen"]
        loaded: list[str] = []

    def split_names(dataset_id, **_):
        return list(Hub.splits)

    def load_dataset(dataset_id, split=None, **_):
        assert split in Hub.splits, f"load_dataset asked for {split!r}"
        Hub.loaded.append(split)
        return [ROW, ROW]

    monkeypatch.setattr(datasets, "get_dataset_split_names", split_names)
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr("huggingface_hub.HfApi.dataset_info", lambda self, dataset_id, **_: None)
    return Hub


@pytest.mark.parametrize("names, asked, expected", [
    (["train", "test"], "", "train"),
    (["train_sft", "test_sft", "train_gen", "test_gen"], "", "train_sft"),
    (["train_prefs", "train_sft", "test_sft"], "", "train_sft"),
    (["data"], "", "data"),
    (["train", "validation"], "validation", "validation"),
])
def test_pick_split(names, asked, expected):
    assert pick_split("o/d", names, asked) == expected


def test_no_obvious_split_lists_them():
    with pytest.raises(DatasetError, match="no single SFT split; its splits: a, b: choose one with dataset_split"):
        pick_split("o/d", ["a", "b"])
    with pytest.raises(DatasetError, match=r"has no split 'trian' \(did you mean 'train'\?\); its splits: train, test"):
        pick_split("o/d", ["train", "test"], "trian")


@pytest.mark.slow
def test_ultrachat_style_dataset_loads_train_sft(hub):
    result = load_conversations("HuggingFaceH4/ultrachat_200k")
    assert (result.rows, hub.loaded) == (2, ["train_sft"])


def test_dataset_split_reaches_the_loader(hub, tokenizer):
    from engine.data import prepare

    prepare(RunConfig(dataset="HuggingFaceH4/ultrachat_200k", dataset_split="test_sft", val_split=0), tokenizer)
    assert hub.loaded == ["test_sft"]


def test_check_names_the_splits_when_none_fits(hub, capsys):
    hub.splits = ["alpha", "beta"]
    assert main(["data", "check", "someone/odd", "--no-tokenizer"]) == 1
    assert "someone/odd: has no 'train' split and no single SFT split; its splits: alpha, beta" in capsys.readouterr().out
    assert main(["data", "check", "someone/odd", "--no-tokenizer", "--split", "beta"]) == 0
    assert hub.loaded == ["beta"]


def _hub_answers(monkeypatch, exc: Exception) -> list[str]:
    """The hub's first answer is `exc`; returns the datasets calls made after it (none, we hope)."""
    import datasets

    called: list[str] = []
    monkeypatch.setattr(datasets, "get_dataset_split_names", lambda *a, **k: called.append("split names"))
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: called.append("load_dataset"))

    def dataset_info(self, dataset_id, **_):
        raise exc

    monkeypatch.setattr("huggingface_hub.HfApi.dataset_info", dataset_info)
    return called


def test_an_unreachable_hub_is_said_at_once_without_retries(monkeypatch):
    """Offline, datasets retried every request five times with a line each: 69 s of noise."""
    import httpx2

    called = _hub_answers(monkeypatch, httpx2.ConnectError("[Errno -2] Name or service not known"))
    with pytest.raises(DatasetError, match="cannot reach the Hugging Face hub .* HF_HUB_OFFLINE=1"):
        load_conversations("someone/chat-data")
    assert called == []


def test_a_dataset_the_hub_does_not_have_is_said_at_once(monkeypatch):
    from huggingface_hub.errors import RepositoryNotFoundError

    from tests.engine.models.conftest import http_error

    called = _hub_answers(monkeypatch, http_error(RepositoryNotFoundError, 404))
    with pytest.raises(DatasetError, match="no such dataset on the Hugging Face hub"):
        load_conversations("someone/no-such-data")
    assert called == []


def test_a_hub_dataset_too_large_to_read_is_refused_before_the_download(hub, monkeypatch):
    from types import SimpleNamespace

    files = [SimpleNamespace(rfilename=f"data/part-{i}.parquet", size=6 * 1024**3) for i in range(4)]
    monkeypatch.setattr("huggingface_hub.HfApi.dataset_info",
                        lambda self, dataset_id, **_: SimpleNamespace(siblings=files))
    with pytest.raises(DatasetError) as raised:
        list(load_conversations("big/corpus"))
    assert "this hub dataset's files come to 24.0 GiB, over the 20.0 GiB ftui reads" in str(raised.value)
    assert hub.loaded == []  # nothing was downloaded
