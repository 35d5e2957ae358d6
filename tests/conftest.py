"""What every test run says at its end: the machine it ran on, since llama.cpp's behaviour depends on the
CPU (an AMX CPU loads GGUFs without weight repacking: engine/native/llama.py)."""

from __future__ import annotations

import os

# Under pytest-xdist (make test runs one worker per core) every worker and the ftui processes its
# tests start share the cores: torch's default of one thread per core in each would oversubscribe
# them, and OpenMP threads that spin waiting for a busy core are slower than one thread each.
# Read before torch is imported, which is why it is set at this module's import.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // _WORKERS)))


def pytest_collection_modifyitems(items: list) -> None:
    """In several workers, the end-to-end tests first and the slow ones next: a worker that started
    `ftui demo` (minutes) last would keep the suite waiting while the other core idles; started
    first, the short tests fill the other core meanwhile and are shared out as the workers free up."""
    if _WORKERS > 1:
        items.sort(key=lambda item: 0 if item.get_closest_marker("e2e") else 1 if item.get_closest_marker("slow") else 2)


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
