"""`ftui models`: what a user sees before choosing a model, and a fetch that fails with advice."""

from __future__ import annotations

import json

from cli.main import main
from engine.models.embedded import embedded_model_dir, ensure_embedded_model


def test_lists_the_catalog_with_offline_availability(capsys, hf_cache):
    ensure_embedded_model()
    assert main(["models", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["smollm2-135m"]["available"] == "ready"
    assert rows["llama-3.2-1b"]["available"] == "download"
    assert rows["llama-3.2-1b"]["gated"] is True


def test_a_cached_ungated_mirror_counts_as_available(capsys, hf_cache):
    snapshot = hf_cache / "models--unsloth--Llama-3.2-1B-Instruct" / "snapshots" / ("2" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (hf_cache / "models--unsloth--Llama-3.2-1B-Instruct" / "refs").mkdir()
    (hf_cache / "models--unsloth--Llama-3.2-1B-Instruct" / "refs" / "main").write_text("2" * 40)
    assert main(["models", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["llama-3.2-1b"]["available"] == "ready (unsloth/Llama-3.2-1B-Instruct)"


def test_fetch_prints_the_folder(capsys):
    assert main(["models", "fetch", "smollm2-135m"]) == 0
    assert capsys.readouterr().out.strip() == str(embedded_model_dir())


def test_fetch_of_an_unknown_id_fails_with_advice(capsys):
    assert main(["models", "fetch", "smollm-135m"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean 'smollm2-135m'?" in err
    assert "Catalog ids:" in err
