"""What each preset's description says about memory is what the estimator says.

A description may claim "fits 8B training on a 12 GB card" (any "<N>B ... on a <M> GB card/one"),
or "most memory" / "least memory": every preset file is read and each claim checked against the
estimate of the preset's own settings on the ladder model of that size.
"""

from __future__ import annotations

import re

import pytest

from engine.config.presets import load_preset_file
from engine.files.paths import presets_dir
from engine.hardware.catalog import get
from engine.hardware.estimate import estimate_for
from engine.hardware.recommend import LADDER, budget_gib

PRESETS = sorted(p for p in presets_dir().glob("*.toml") if p.name != "models.toml")
CLAIM = re.compile(r"(\d+)B(?: training)? on an? (\d+) GB (?:card|one)")


def size_model(billions: int) -> str:
    return next(m for m in LADDER if round(get(m).params / 1e9) == billions)


def peak(path, model: str) -> float:
    config = load_preset_file(path).apply().replace(model=model)
    est = estimate_for(config)
    assert est is not None
    return est.peak_gib


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_memory_claims_in_the_description_hold(path):
    description = load_preset_file(path).description
    for billions, card in CLAIM.findall(description):
        model = size_model(int(billions))
        need = peak(path, model)
        assert need <= budget_gib(float(card)), (
            f"{path.name} says {billions}B fits a {card} GB card; the estimate is {need:.1f} GiB "
            f"against a budget of {budget_gib(float(card)):.1f}")
    for words, pick in (("most memory", max), ("least memory", min)):
        if words in description:
            by_preset = {p.stem: peak(p, "llama-3.2-1b") for p in PRESETS}
            assert by_preset[path.stem] == pick(by_preset.values()), (words, by_preset)


def test_low_vram_claims_are_there_to_check():
    assert len(CLAIM.findall(load_preset_file(presets_dir() / "low-vram.toml").description)) >= 2
