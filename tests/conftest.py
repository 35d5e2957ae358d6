"""What every test run says at its end: the machine it ran on, since llama.cpp's behaviour depends on the
CPU (an AMX CPU loads GGUFs without weight repacking: engine/native/llama.py)."""

from __future__ import annotations

import platform


def pytest_terminal_summary(terminalreporter: object) -> None:
    """Said at the end, where `pytest -q` (make test) still shows it."""
    for line in machine_lines():
        terminalreporter.write_line(line)  # type: ignore[attr-defined]


def machine_lines() -> list[str]:
    from engine.native.llama import cpu_flags, has_amx, plan_load

    flags = cpu_flags()
    name = next((line.split(":", 1)[1].strip() for line in _cpuinfo_lines() if line.startswith("model name")),
                platform.processor() or platform.machine())
    plan = plan_load(flags, gpu=False)
    return [f"cpu: {name}; AMX {'yes' if has_amx(flags) else 'no'}; llama.cpp weight repacking "
            f"{'on' if plan.repack else 'off'}"]


def _cpuinfo_lines() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            return fh.read().splitlines()
    except OSError:
        return []
