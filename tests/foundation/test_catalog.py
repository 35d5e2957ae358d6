"""The catalog holds the product's model ladder with the numbers the estimator needs."""

import pytest

from engine.hardware import catalog


def test_ladder_and_4bit_variants_are_listed():
    ids = {s.id for s in catalog.load_catalog()}
    assert {"smollm2-135m", "llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b"} <= ids
    for base in ("llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b"):
        four = catalog.four_bit_variant(catalog.get(base))
        assert four is not None and four.bits == 4 and "bnb-4bit" in four.hub_id
        assert four.params == catalog.get(base).params


def test_lookup_by_catalog_id_hub_id_or_mirror():
    assert catalog.get("meta-llama/Llama-3.1-8B-Instruct").id == "llama-3.1-8b"
    assert catalog.get("unsloth/Llama-3.2-3B-Instruct").id == "llama-3.2-3b"
    assert catalog.get("LLAMA-3.2-1B").hub_id == "meta-llama/Llama-3.2-1B-Instruct"


def test_unknown_id_suggests_a_close_one():
    with pytest.raises(catalog.UnknownModel) as exc:
        catalog.get("llama-3.2-1")
    assert "Did you mean" in str(exc.value)


def test_gated_repos_name_an_ungated_mirror():
    for spec in catalog.load_catalog():
        if spec.gated:
            assert spec.ungated and spec.ungated != spec.hub_id
