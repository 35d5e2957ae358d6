"""`make run` builds llama.cpp with CUDA on a GPU box and rebuilds it when CMAKE_ARGS change, and `make test`
and `make check` run their two lanes of tests:
checked on the commands the Makefile runs (`make -n`), with nvcc and nvidia-smi faked."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GPU_ARGS = "-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=native"


def dry_run(venv: Path, tmp_path: Path, *args: str, path: str | None = None) -> list[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": path or os.environ["PATH"]}
    env.pop("CMAKE_ARGS", None)
    out = subprocess.run(["make", "-n", "-C", str(ROOT), f"VENV={venv}", *args, f"{venv}/.installed"],
                         env=env, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


@pytest.fixture
def gpu_box(tmp_path):
    """A PATH with an nvcc and an nvidia-smi that lists one GPU."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvcc").write_text("#!/bin/sh\necho 'Cuda compilation tools, release 12.8'\n")
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1234)'\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


def wheel_build(lines: list[str]) -> str:
    [line] = [line for line in lines if "pip wheel" in line]
    return line


def test_a_gpu_box_with_nvcc_builds_llama_cpp_with_cuda_for_its_own_gpu(tmp_path, gpu_box):
    lines = dry_run(tmp_path / "venv", tmp_path, path=gpu_box)
    assert f'CMAKE_ARGS="{GPU_ARGS}"' in wheel_build(lines)
    assert any("llama.cpp: the CUDA build, found an NVIDIA GPU and nvcc" in line for line in lines)


def test_without_a_gpu_or_toolkit_it_is_the_cpu_build_and_says_why(tmp_path):
    lines = dry_run(tmp_path / "venv", tmp_path, "NVCC=", "GPU_SEEN=")
    assert 'CMAKE_ARGS=""' in wheel_build(lines)
    assert any("the CPU build, no NVIDIA GPU with a CUDA toolkit (nvcc) found" in line for line in lines)


def test_pip_never_hands_back_an_earlier_build(tmp_path):
    assert "--no-cache-dir" in wheel_build(dry_run(tmp_path / "venv", tmp_path, "CMAKE_ARGS=-DGGML_CUDA=on"))


def test_a_change_of_cmake_args_rebuilds_and_reinstalls_llama_cpp(tmp_path):
    venv = tmp_path / "venv"
    first = dry_run(venv, tmp_path, "NVCC=", "GPU_SEEN=")
    stamp = next(line.split()[-1] for line in first if line.startswith("touch") and ".llama-cpp-" in line)
    converter = Path(next(line.split()[-1] for line in first if line.startswith("rm -rf") and " mv " in line))
    sdist = Path(next(line.split()[2] for line in first if line.startswith("tar xzf")))
    venv.mkdir()
    converter.mkdir(parents=True)
    sdist.parent.mkdir(parents=True)
    for done in (sdist, converter / "convert_hf_to_gguf.py", stamp, f"{venv}/.installed"):  # set up, the CPU build
        Path(done).touch()
    assert not any("pip" in line for line in dry_run(venv, tmp_path, "NVCC=", "GPU_SEEN="))

    again = dry_run(venv, tmp_path, "CMAKE_ARGS=-DGGML_CUDA=on")
    assert 'CMAKE_ARGS="-DGGML_CUDA=on"' in wheel_build(again)
    assert any("pip install -q --force-reinstall --no-deps" in line and "llama_cpp_python" in line for line in again)


def test_llama_cpps_converter_comes_from_the_sdist_of_the_same_version_into_a_folder_named_by_it(tmp_path):
    lines = dry_run(tmp_path / "venv", tmp_path, "NVCC=", "GPU_SEEN=")
    [download] = [line for line in lines if "pip download" in line]  # once: the wheel is built from it too
    assert "--no-binary :all:" in download and download.endswith("llama-cpp-python==0.3.36")
    assert wheel_build(lines).endswith("/sdists/llama_cpp_python-0.3.36.tar.gz")
    [extract] = [line for line in lines if line.startswith("tar xzf")]
    assert "llama_cpp_python-0.3.36.tar.gz" in extract and "llama-convert/0.3.36.tmp" in extract
    # The archive's own dates (2022) would leave the converter older than the sdist it came from:
    # make would extract it again, and reinstall ftui, on every run.
    assert "--touch" in extract
    assert "'*/vendor/llama.cpp/convert_hf_to_gguf.py'" in "\n".join(lines[lines.index(extract):])



def make_lines(venv: Path, tmp_path: Path, target: str) -> list[str]:
    """The commands `make <target>` runs, the venv already set up."""
    venv.mkdir(exist_ok=True)
    # OMP_NUM_THREADS as a shell (or this suite's worker) may set it: it must not change the test workers.
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(["make", "-n", "-C", str(ROOT), f"VENV={venv}", "-o", f"{venv}/.installed",
                          "-o", f"{venv}/.installed-test", target], env=env, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_make_test_runs_every_test_and_make_check_leaves_out_e2e_slow_and_gpu(tmp_path):
    everything = make_lines(tmp_path / "venv", tmp_path, "test")
    fast = make_lines(tmp_path / "venv", tmp_path, "check")
    for lines in (everything, fast):
        assert [tool for tool in ("ruff check", "lint-imports", "mypy") if any(tool in line for line in lines)] == [
            "ruff check", "lint-imports", "mypy"]
    [all_tests] = [line for line in everything if " -m pytest " in line]
    [fast_tests] = [line for line in fast if " -m pytest " in line]
    assert " -m " not in all_tests.split(" -m pytest ", 1)[1]
    assert '-m "not e2e and not slow and not gpu"' in fast_tests
    assert "--durations=20" in all_tests and "--durations=20" in fast_tests
    workers = min(len(os.sched_getaffinity(0)), 4)  # one per core this process may use, at most 4
    assert f"-n {workers} --dist worksteal" in all_tests and f"-n {workers} --dist worksteal" in fast_tests
