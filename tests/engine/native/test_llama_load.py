"""Every GGUF opens through engine/native/llama.py with this machine's settings: no weight repacking
on a CPU with AMX (whose repacked path segfaults), the CPU when the GPU cannot hold the model."""

from __future__ import annotations

from pathlib import Path

import pytest

import engine.native.llama as llama_load
from engine.infer.chat import ChatSession
from engine.native.llama import LoadPlan, cpu_flags, cpu_name, has_amx, load_llama, plan_load

SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8

processor\t: 1
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8
"""
EPYC = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse sse2 avx avx2 avx512f avx512_bf16\n"
GRACE = "processor\t: 0\nBogoMIPS\t: 2000.00\nFeatures\t: fp asimd evtstrm aes sha2 crc32 atomics sve sve2 bf16 i8mm\n"


@pytest.fixture
def cpuinfo(tmp_path, monkeypatch):
    def machine(text: str) -> Path:
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        monkeypatch.setattr(llama_load, "CPUINFO", path)
        return path
    return machine


@pytest.fixture(scope="module")
def gguf():
    from engine.models.embedded import embedded_gguf_path

    return embedded_gguf_path()  # the embedded Q4_1 file: the one that crashed on a Sapphire Rapids Xeon


def test_cpu_flags_read_x86_and_arm_and_no_file(cpuinfo, tmp_path, monkeypatch):
    cpuinfo(SAPPHIRE_RAPIDS)
    assert has_amx(cpu_flags()) and "avx512_fp16" in cpu_flags()
    assert cpu_name() == "Intel(R) Xeon(R) Platinum 8480+"
    cpuinfo(EPYC)
    assert "avx2" in cpu_flags() and not has_amx(cpu_flags())
    cpuinfo(GRACE)  # aarch64 says "Features", not "flags"
    assert {"sve2", "bf16"} <= cpu_flags() and not has_amx(cpu_flags())
    monkeypatch.setattr(llama_load, "CPUINFO", tmp_path / "no-such-file")  # macOS, Windows
    assert cpu_flags() == frozenset() and plan_load(gpu=False).repack


@pytest.mark.slow
def test_an_amx_cpu_loads_without_repacking_and_says_why(cpuinfo, gguf, monkeypatch):
    monkeypatch.delenv(llama_load.REPACK_ENV, raising=False)
    cpuinfo(SAPPHIRE_RAPIDS)
    with ChatSession(gguf, temperature=0.0, max_tokens=4) as chat:
        assert chat._llm.model_params.use_extra_bufts is False
        assert any("AMX" in note for note in chat.notes)
        assert "".join(chat.send("Hi")).strip()  # it still answers
    cpuinfo(EPYC)
    with ChatSession(gguf, temperature=0.0, max_tokens=4) as chat:
        assert chat._llm.model_params.use_extra_bufts is True and chat.notes == ()


def test_the_environment_overrides_the_choice(cpuinfo, monkeypatch):
    cpuinfo(SAPPHIRE_RAPIDS)
    monkeypatch.setenv(llama_load.REPACK_ENV, "1")
    assert plan_load(gpu=False).repack
    cpuinfo(EPYC)
    monkeypatch.setenv(llama_load.REPACK_ENV, "0")
    assert not plan_load(gpu=False).repack


def test_a_gpu_that_cannot_hold_the_model_falls_back_to_the_cpu_and_says_so(gguf, monkeypatch):
    import llama_cpp

    real = llama_cpp.Llama
    tried: list[int] = []

    def busy_gpu(**kwargs):
        tried.append(kwargs["n_gpu_layers"])
        if kwargs["n_gpu_layers"] != 0:  # what llama.cpp raises when the card is full
            raise ValueError(f"Failed to load model from file: {kwargs['model_path']}")
        return real(**kwargs)

    monkeypatch.setattr(llama_cpp, "Llama", busy_gpu)
    llm, plan = load_llama(gguf, n_ctx=256, plan=LoadPlan(repack=True, gpu_layers=-1))
    llm.close()
    assert tried == [-1, 0] and plan.gpu_layers == 0
    assert "the GPU could not hold it" in plan.notes[-1] and "busy training" in plan.notes[-1]


def test_a_file_that_does_not_load_on_the_cpu_either_is_not_blamed_on_the_gpu(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ValueError):
        load_llama(bad, n_ctx=256, plan=LoadPlan(repack=True, gpu_layers=-1))
