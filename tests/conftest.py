"""What every test run says at its end: the machine it ran on, since llama.cpp's behaviour depends on the
CPU (an AMX CPU loads GGUFs without weight repacking: engine/native/llama.py)."""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter: object) -> None:
    """Said at the end, where `pytest -q` (make test) still shows it."""
    for line in machine_lines():
        terminalreporter.write_line(line)  # type: ignore[attr-defined]


def machine_lines() -> list[str]:
    from engine.native.llama import cpu_flags, cpu_name, has_amx, plan_load

    flags = cpu_flags()
    plan = plan_load(flags, gpu=False)
    return [f"cpu: {cpu_name()}; AMX {'yes' if has_amx(flags) else 'no'}; llama.cpp weight repacking "
            f"{'on' if plan.repack else 'off'}"]
