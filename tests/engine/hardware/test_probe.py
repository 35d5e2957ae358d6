"""The GPU probe over a fake NVML: every card size, several GPUs, busy GPUs and NVML failures."""

from __future__ import annotations

import pynvml
import pytest

from engine.hardware.probe import probe


@pytest.mark.parametrize("size", [8, 12, 16, 24, 48, 80])
def test_each_card_size_is_reported(card, size, fake_nvml):
    nvml = fake_nvml([card(size)])
    report = probe(nvml)
    (gpu,) = report.gpus
    assert gpu.total_gib == pytest.approx(size)
    assert gpu.free_gib == pytest.approx(size - 0.4)
    assert gpu.used_gib == pytest.approx(0.4)
    assert gpu.bf16 is True
    assert report.driver == "550.54.14"
    assert gpu.name in report.note and f"{size - 0.4:.1f} GiB" in report.note
    assert nvml.shutdowns == 1


def test_turing_card_has_no_bf16(card, fake_nvml):
    (gpu,) = probe(fake_nvml([card(8, name="NVIDIA GeForce RTX 2080", cc=(7, 5))])).gpus
    assert gpu.compute_capability == (7, 5)
    assert gpu.bf16 is False


def test_two_gpus_report_both_and_name_the_freer_one(card, fake_nvml):
    busy = card(24, used_gib=20.0)
    report = probe(fake_nvml([busy, card(12)]))
    assert [g.index for g in report.gpus] == [0, 1]
    assert report.best_gpu.index == 1
    assert "2 GPUs; training uses one" in report.note
    assert "GPU 1" in report.note


def test_each_gpu_carries_nvmls_uuid_which_cuda_also_reports(card, fake_nvml):
    """CUDA numbers GPUs in another order than NVML; the UUID is how a run finds the GPU it was given."""
    report = probe(fake_nvml([card(24, uuid="GPU-1a2b3c4d-0000-0000-0000-000000000000"), card(12)]))
    assert [g.uuid for g in report.gpus] == ["GPU-1a2b3c4d-0000-0000-0000-000000000000",
                                             "GPU-00000001-0000-0000-0000-000000000000"]

    class OldDriver(fake_nvml):
        nvmlDeviceGetUUID = None

    (gpu,) = probe(OldDriver([card(24)])).gpus
    assert gpu.uuid == "" and gpu.problems == ()


def test_busy_gpu_lists_processes_with_names_and_memory(card, fake_nvml):
    gpu0 = card(24, used_gib=9.5, processes=[(4242, "/usr/bin/python3", 8.0), (77, None, None)])
    (gpu,) = probe(fake_nvml([gpu0])).gpus
    assert gpu.free_gib == pytest.approx(14.5)
    by_pid = {p.pid: p for p in gpu.processes}
    assert by_pid[4242].name == "/usr/bin/python3"
    assert by_pid[4242].used_gib == pytest.approx(8.0)
    # Another user's process: NVML refuses the name and has no memory figure; still listed.
    assert by_pid[77].name is None and by_pid[77].used_gib is None


@pytest.mark.parametrize(("code", "words"), [
    (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "no NVIDIA driver found"),
    (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "driver is installed but not loaded"),
    (pynvml.NVML_ERROR_UNKNOWN, "NVML could not start"),
])
def test_no_driver_is_cpu_mode_not_a_crash(code, words, fake_nvml):
    report = probe(fake_nvml(init_error=code))
    assert report.gpus == ()
    assert report.best_gpu is None
    assert report.cpu_cores >= 1 and report.ram_gib > 0
    assert words in report.note
    assert "only the embedded model" in report.note


def test_driver_without_gpus_is_cpu_mode(fake_nvml):
    report = probe(fake_nvml([]))
    assert report.gpus == ()
    assert report.driver == "550.54.14"
    assert "reports no GPU" in report.note


@pytest.mark.parametrize(("failing", "check"), [
    ("nvmlDeviceGetCudaComputeCapability", lambda g: g.compute_capability == (0, 0) and not g.bf16),
    ("nvmlDeviceGetComputeRunningProcesses", lambda g: g.processes == () and g.free_gib > 20),
    ("nvmlDeviceGetName", lambda g: g.name == "GPU 1" and g.total_gib == pytest.approx(24)),
    ("nvmlDeviceGetMemoryInfo", lambda g: g.total_gib == 0 and g.bf16),
])
def test_one_failing_query_degrades_one_field_of_one_gpu(card, failing, check, fake_nvml):
    broken = card(24, processes=[(9, "x", 1.0)], fail={failing: pynvml.NVML_ERROR_NOT_SUPPORTED})
    healthy = card(12, processes=[(10, "y", 1.0)])
    report = probe(fake_nvml([healthy, broken]))
    ok, bad = report.gpus
    assert check(bad)
    assert any("Not Supported" in p for p in bad.problems)
    assert ok.problems == () and ok.name == "NVIDIA GeForce RTX 3060" and len(ok.processes) == 1


@pytest.mark.slow
def test_probe_imports_pynvml_lazily():
    import subprocess
    import sys

    code = "import engine.hardware.probe, sys; print('pynvml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_real_probe_on_this_machine_never_raises():
    report = probe()
    assert report.cpu_cores >= 1
    assert report.note
