"""Which builds of torch and llama.cpp this install has: what they were compiled for and whether
they can use the GPU.

A GPU box can run everything on its CPU without a word: a CPU wheel of torch, or a
llama-cpp-python compiled without CUDA (what a plain `pip install` builds), works and is slow.
These probes say what was built (torch's CUDA version and the GPU architectures it carries,
llama.cpp's backends and the CPU features it reports) for `ftui hardware` and `ftui doctor`.
torch and llama_cpp are imported inside the probes, never with this module, so the TUI's first
screen does not wait for them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LlamaBuild:
    version: str | None
    """llama-cpp-python's version; None when it does not import (then `error` says why)."""
    gpu_offload: bool
    """`llama_supports_gpu_offload()`: built with a GPU backend (CUDA, Metal, Vulkan, ...)."""
    backends: dict[str, dict[str, str]]
    """`llama_print_system_info()` by backend: {"CUDA": {"ARCHS": "890", ...}, "CPU": {"AVX2": "1", ...}}."""
    error: str = ""

    @property
    def cpu_features(self) -> tuple[str, ...]:
        """What the CPU backend reports as on (instruction sets and options such as REPACK, OPENMP)."""
        return tuple(name for name, value in self.backends.get("CPU", {}).items() if value == "1")

    def describe(self) -> str:
        if self.version is None:
            return f"llama-cpp-python does not import ({self.error})"
        gpus = [name for name in self.backends if name != "CPU"]
        if self.gpu_offload:
            offload = "GPU offload through " + (", ".join(_backend(name, self.backends[name]) for name in gpus)
                                                 or "a GPU backend")
        else:
            offload = "CPU only (no GPU offload)"
        features = " ".join(self.cpu_features) or "none reported"
        return f"llama-cpp-python {self.version}, {offload}; CPU backend: {features}"


@dataclass(frozen=True)
class TorchBuild:
    version: str | None
    """torch.__version__; None when torch does not import (then `error` says why)."""
    cuda: str | None
    """torch.version.cuda: the CUDA version it was built for ("12.8"), None for a CPU-only build."""
    cuda_available: bool
    """torch.cuda.is_available(): the driver answers and a GPU is visible to this process."""
    arch_list: tuple[str, ...] = ()
    """torch.cuda.get_arch_list() where CUDA is available: "sm_80" kernels, "compute_90" PTX."""
    error: str = ""

    def describe(self) -> str:
        if self.version is None:
            return f"torch does not import ({self.error})"
        if self.cuda is None:
            return f"torch {self.version}, CPU-only build"
        usable = "usable" if self.cuda_available else "not usable here (torch.cuda.is_available() is False)"
        return f"torch {self.version}, CUDA {self.cuda} build, CUDA {usable}"


def llama_build() -> LlamaBuild:
    """The installed llama-cpp-python as it reports itself; never raises."""
    try:
        import llama_cpp
    except Exception as exc:  # ImportError, or OSError from a shared library that does not load
        return LlamaBuild(None, False, {}, f"{type(exc).__name__}: {exc}")
    info = llama_cpp.llama_print_system_info()
    text = info.decode(errors="replace") if isinstance(info, bytes) else str(info)
    return LlamaBuild(str(getattr(llama_cpp, "__version__", "?")), bool(llama_cpp.llama_supports_gpu_offload()),
                      parse_system_info(text))


def parse_system_info(text: str) -> dict[str, dict[str, str]]:
    """llama.cpp's "CUDA : ARCHS = 890 | USE_GRAPHS = 1 | CPU : SSE3 = 1 | AVX2 = 1 | " by backend.
    Older builds print the CPU's features with no backend name: they count as the CPU's."""
    backends: dict[str, dict[str, str]] = {}
    current = "CPU"
    for part in text.split("|"):
        part = part.strip()
        if " : " in part:
            name, _, part = part.partition(" : ")
            current = name.strip()
            backends.setdefault(current, {})
        if not part:
            continue
        key, _, value = part.partition("=")
        backends.setdefault(current, {})[key.strip()] = value.strip()
    return backends


def torch_build() -> TorchBuild:
    """The installed torch: its CUDA version and whether CUDA works here; never raises."""
    try:
        import torch
    except Exception as exc:  # ImportError, or OSError from a CUDA library that does not load
        return TorchBuild(None, None, False, (), f"{type(exc).__name__}: {exc}")
    available = bool(torch.cuda.is_available())
    arch = tuple(torch.cuda.get_arch_list()) if available else ()
    return TorchBuild(str(torch.__version__), torch.version.cuda, available, arch)


def _backend(name: str, features: dict[str, str]) -> str:
    shown = ", ".join(f"{key} {value}" for key, value in features.items() if key == "ARCHS")
    return f"{name} ({shown})" if shown else name
