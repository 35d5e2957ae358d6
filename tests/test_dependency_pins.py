"""pyproject's torch pin is at least the release that added each torch API the engine calls: an older
torch installs and then fails at the first call (issue 26)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TORCH_APIS = {
    "fully_shard": (2, 6),  # public in torch.distributed.fsdp from 2.6 (FSDP2)
    "set_requires_gradient_sync": (2, 6),  # FSDP2's no_sync
    "enable_gqa": (2, 5),  # scaled_dot_product_attention's grouped-query keyword
    "torch.OutOfMemoryError": (2, 5),  # torch.cuda.OutOfMemoryError before
    "including_emulation": (2, 4),  # torch.cuda.is_bf16_supported's keyword
    "get_autocast_dtype": (2, 4),
}


def engine_source() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "engine").rglob("*.py")))


def torch_pin() -> tuple[int, ...]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (spec,) = [d for d in project["dependencies"] if re.match(r"torch\b", d)]
    found = re.fullmatch(r"torch>=(\d+)\.(\d+)(?:\.\d+)?", spec.replace(" ", ""))
    assert found, f"expected torch>=X.Y, got {spec!r}"
    return int(found[1]), int(found[2])


@pytest.mark.parametrize("api", sorted(TORCH_APIS))
def test_the_torch_pin_covers_every_api_the_engine_calls(api):
    if api not in engine_source():
        pytest.skip(f"{api} is no longer used: take it out of TORCH_APIS")
    assert torch_pin() >= TORCH_APIS[api], f"engine/ uses {api} (torch {TORCH_APIS[api]}), pin is {torch_pin()}"
