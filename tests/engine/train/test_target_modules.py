"""A wrong `target_modules` name is refused before training, naming the model's real layers."""

from __future__ import annotations

import pytest

from engine.events import TrainFailed
from engine.train.methods import TargetModulesError, apply_method
from tests.engine.train.tiny import run_tiny, tiny_config

LLAMA_LINEAR = "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, lm_head"


def _tiny_model(folder):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder)


@pytest.mark.slow
def test_an_unknown_name_fails_the_run_with_the_real_names_and_a_close_one(tmp_path, model_folder):
    # peft raised NoMatchingPeftModuleError here, which the run reported as an "unexpected error".
    config = tiny_config(tmp_path, target_modules=("qproj", "attention"), max_steps=2, val_split=0.0)

    result, events = run_tiny(config, model_folder)

    assert result.status == "failed"
    assert result.reason == ("target_modules 'qproj' (did you mean 'q_proj'?), 'attention' match no layer "
                             "of tiny-llama that LoRA can adapt.")
    assert result.advice == f"Its linear layers are {LLAMA_LINEAR}; set target_modules to some of these."
    assert "unexpected" not in result.reason
    assert [type(e) for e in events if isinstance(e, TrainFailed)] == [TrainFailed]


def test_a_misspelt_name_beside_good_ones_is_refused_not_skipped(tmp_path, model_folder):
    # peft adapts the names that match and silently leaves the misspelt layer untrained.
    config = tiny_config(tmp_path, target_modules=("q_proj", "v_projj"))

    with pytest.raises(TargetModulesError) as exc:
        apply_method(_tiny_model(model_folder), config)

    assert exc.value.reason.startswith("target_modules 'v_projj' (did you mean 'v_proj'?) matches no layer")


def test_a_module_that_is_not_a_layer_lora_adapts_is_refused(tmp_path, model_folder):
    config = tiny_config(tmp_path, target_modules=("mlp",))

    with pytest.raises(TargetModulesError, match="'mlp' matches no layer"):
        apply_method(_tiny_model(model_folder), config)


@pytest.mark.parametrize("targets", [("q_proj", "v_proj"), ("self_attn.o_proj", "lm_head")])
def test_real_names_and_dotted_suffixes_are_accepted(tmp_path, model_folder, targets):
    model = apply_method(_tiny_model(model_folder), tiny_config(tmp_path, target_modules=targets))

    wrapped = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if hasattr(m, "lora_A")}
    assert wrapped == {t.rsplit(".", 1)[-1] for t in targets}


def test_full_fine_tuning_ignores_target_modules(tmp_path, model_folder):
    apply_method(_tiny_model(model_folder), tiny_config(tmp_path, method="full", target_modules=("nothing",)))
