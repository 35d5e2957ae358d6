"""Chat on a file that is not a whole GGUF says what is wrong with it, before llama.cpp sees it.

llama.cpp itself says only "Failed to load model from file: X" for all of these.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from engine.infer.chat import ChatSession, GGUFFileError, check_gguf


def _tiny_gguf(path: Path) -> Path:
    """A small, whole GGUF: two tensors and a chat template, not enough for llama.cpp to run."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_string("tokenizer.chat_template", "{{ messages }}")
    writer.add_tensor("token_embd.weight", np.ones((64, 16), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones(16, dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _data_end(path: Path) -> int:
    """Where the tensor data ends, by the gguf package's own reader."""
    from gguf import GGUFReader

    return max(int(t.data_offset) + int(t.n_bytes) for t in GGUFReader(path).tensors)


def _refusal(path: Path) -> str:
    with pytest.raises(GGUFFileError) as exc:
        ChatSession(path)
    assert isinstance(exc.value, ValueError)  # the CLI and the TUI catch ValueError
    return str(exc.value)


def test_a_missing_file_is_named(tmp_path):
    assert _refusal(tmp_path / "nope.gguf").startswith(f"{tmp_path / 'nope.gguf'} does not exist.")


def test_a_folder_is_not_a_file(tmp_path):
    assert f"{tmp_path} is a folder, not a GGUF file." in _refusal(tmp_path)


def test_a_link_to_nothing_is_not_called_missing(tmp_path):
    link = tmp_path / "model.gguf"
    link.symlink_to(link)
    assert "symbolic link to nothing (or a loop of links)" in _refusal(link)


def test_an_empty_file_says_it_is_empty(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"")
    message = _refusal(path)
    assert f"{path} is empty (0 bytes)." in message and "export the run again" in message


def _safetensors(path: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(4, dtype=np.float32)}, str(path))


def _zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02")


@pytest.mark.parametrize(
    ("write", "looks_like"),
    [
        (_safetensors, "a safetensors header"),
        (_zip, "a zip signature (PyTorch .bin and .pt checkpoints are zip files)"),
        (lambda p: p.write_text("<!DOCTYPE html><html>Not found</html>"), "text: '<!DOCTYPE html><html>Not'"),
        (lambda p: p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\n"), "a Git LFS pointer"),
        (lambda p: p.write_bytes(b"lmgg" + bytes(60)), "an old GGML signature"),
        (lambda p: p.write_bytes(bytes([0, 1, 2, 0xFF]) * 8), "the bytes 00 01 02 ff"),
    ],
)
def test_a_file_without_the_gguf_magic_says_what_it_looks_like(tmp_path, write, looks_like):
    path = tmp_path / "model.gguf"
    write(path)
    message = _refusal(path)
    assert message.startswith(f"{path} is not a GGUF file: it starts with {looks_like}")
    assert "ftui export" in message


def test_a_file_cut_in_the_tensor_data_says_where(tmp_path):
    path = _tiny_gguf(tmp_path / "model.gguf")
    end = _data_end(path)
    with path.open("r+b") as f:
        f.truncate(end - 100)

    assert f"{path} is truncated at byte {end - 100:,} of {end:,} expected." in _refusal(path)


def test_a_file_cut_in_the_header_says_so(tmp_path):
    path = _tiny_gguf(tmp_path / "model.gguf")
    with path.open("r+b") as f:
        f.truncate(40)

    assert f"{path} is truncated: its 40 bytes end inside the GGUF header." in _refusal(path)


def test_a_header_of_arrays_nested_deep_is_damaged_not_a_crash(tmp_path):
    """A crafted header: one key whose value is an array of arrays ~12 KB deep (recursion, not data)."""
    import struct

    depth = 1000  # 12 bytes a level: deeper than Python's recursion limit allows
    key = b"general.crafted"
    nested = b"".join(struct.pack("<IQ", 9, 1) for _ in range(depth)) + struct.pack("<IQ", 4, 0)
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key + struct.pack("<I", 9) + nested
    path = tmp_path / "crafted.gguf"
    path.write_bytes(header)

    assert f"{path} has a damaged GGUF header: arrays nested more than 8 deep" in _refusal(path)


def test_an_unreadable_version_is_named(tmp_path):
    path = _tiny_gguf(tmp_path / "model.gguf")
    data = bytearray(path.read_bytes())
    data[4:8] = (1).to_bytes(4, "little")
    path.write_bytes(bytes(data))

    assert "is GGUF version 1; llama.cpp reads versions 2 and 3." in _refusal(path)


def test_a_whole_gguf_passes_and_llama_cpp_refusals_are_still_explained(tmp_path):
    path = _tiny_gguf(tmp_path / "model.gguf")
    check_gguf(path)
    # Whole, but not a model llama.cpp can build: its own refusal, with the file's soundness stated.
    assert "though its GGUF header and size are sound" in _refusal(path)


def test_the_embedded_models_gguf_passes_the_check():
    from engine.models.embedded import embedded_gguf_path

    check_gguf(embedded_gguf_path())
