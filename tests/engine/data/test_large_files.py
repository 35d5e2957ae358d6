"""Files ftui would read whole are refused above a stated size, with what to do instead."""

from __future__ import annotations

import pytest

from engine.data import DatasetError, load_conversations, readers


def sparse(path, size: int):
    """A file of `size` bytes that takes no disk: its length is all the check reads."""
    with open(path, "wb") as fh:
        fh.write(b"[" + b" " * 8192)  # text for as far as the encoding check reads
        fh.truncate(size)
    return path


def test_a_json_array_too_large_to_parse_whole_points_to_json_lines(tmp_path):
    path = sparse(tmp_path / "big.json", readers.MAX_JSON_BYTES + 1)
    with pytest.raises(DatasetError) as raised:
        list(load_conversations(str(path)))
    assert f"{path}: is 512 MiB of JSON, over the 512 MiB ftui parses whole" in str(raised.value)
    assert "JSON Lines" in str(raised.value)


def test_a_parquet_file_too_large_to_read_is_refused(tmp_path, monkeypatch):
    path = sparse(tmp_path / "big.parquet", 3 * 1024**2)
    monkeypatch.setattr(readers, "MAX_DATASET_BYTES", 1024**2)
    with pytest.raises(DatasetError) as raised:
        list(load_conversations(str(path)))
    assert "this Parquet file come to 3 MiB, over the 1 MiB ftui reads" in str(raised.value)
    assert "take a sample" in str(raised.value)
