"""How busy the run's GPU is and how much memory the card holds, over the last steps, as NVML
sampled them at each logged step (engine/hardware/sampler.py, StepLogged.gpu_util and
gpu_used_gib). A starved GPU (a slow data loader, a CPU-bound step) shows as low, ragged
utilisation here long before it shows in the loss. Hidden for a run without GPU figures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual.widgets import Static

if TYPE_CHECKING:
    from tui.session import Host

BLOCKS = " ▁▂▃▄▅▆▇█"
SHOWN = 12
"""Samples in each sparkline: the last ones, one per logged step."""


def sparkline(values: Sequence[float | None], top: float) -> str:
    """One block per value, its height against `top`; a step NVML could not sample is a space."""
    out = []
    for value in values:
        if value is None or top <= 0:
            out.append(" ")
        else:
            out.append(BLOCKS[max(1, min(len(BLOCKS) - 1, round(value / top * (len(BLOCKS) - 1))))])
    return "".join(out)


def render_gpu_use(points: Sequence[tuple[int, float | None, int | None]], card_gib: float | None = None) -> Text:
    """`card_gib`, the card's size, is what the memory sparkline fills; without it, the peak."""
    recent = points[-SHOWN:]
    text = Text("GPU ", style="bold")
    utils = [u for _, _, u in recent]
    known = [u for u in utils if u is not None]
    if known:
        style = "green" if known[-1] >= 70 else "yellow"
        text.append(f"busy {known[-1]:>3}% ", style=style)
        text.append(sparkline(utils, 100.0), style=style)
        text.append(f" avg {sum(known) / len(known):.0f}%")
    used = [m for _, m, _ in recent]
    held = [m for m in used if m is not None]
    if held:
        text.append(" · " if known else "")
        size = f"/{card_gib:.0f}" if card_gib else ""
        text.append(f"card {held[-1]:.1f}{size} GiB ")
        text.append(sparkline(used, card_gib or max(held)), style="cyan")
        text.append(f" peak {max(m for _, m, _ in points if m is not None):.1f}")
    return text


class GpuUse(Static):
    """The GPU's utilisation and memory over the run's last logged steps."""

    DEFAULT_CSS = """
    GpuUse {
        height: 1;
        width: 1fr;
        padding: 0 1;
    }
    """

    def show(self, points: Sequence[tuple[int, float | None, int | None]]) -> None:
        self.display = bool(points)
        if points:
            self.update(render_gpu_use(points, self._card_gib()), layout=False)

    def _card_gib(self) -> float | None:
        """The largest card the probe found: a run on one GPU of a machine with one kind of card."""
        report = cast("Host", self.app).session.hardware
        totals = [gpu.total_gib for gpu in report.gpus] if report is not None else []
        return max(totals) if totals else None
