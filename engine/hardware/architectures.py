"""What each model architecture calls its projections, so one set of LoRA targets fits every family.

ftui's configs name the Llama projections (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj,
down_proj). Qwen3, Gemma 3 and Mistral use the same names; Phi-3 (and Phi-4-mini, which is a
Phi3ForCausalLM) fuses q/k/v into qkv_proj and gate/up into gate_up_proj. `translate_targets` maps
the Llama names onto a model's own, by the `model_type` in its config.json. Plain data, no imports.
"""

from __future__ import annotations

from collections.abc import Sequence

LLAMA_STYLE = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

FUSED: dict[str, dict[str, str]] = {
    # Phi3Attention.qkv_proj and Phi3MLP.gate_up_proj (transformers models/phi3/modeling_phi3.py).
    "phi3": {"q_proj": "qkv_proj", "k_proj": "qkv_proj", "v_proj": "qkv_proj", "gate_proj": "gate_up_proj",
             "up_proj": "gate_up_proj"},
}
"""model_type -> {Llama name: the fused layer that holds it}; architectures not listed use the Llama names."""

PROJECTIONS: dict[str, tuple[str, ...]] = {
    "llama": LLAMA_STYLE, "mistral": LLAMA_STYLE, "qwen3": LLAMA_STYLE, "gemma3_text": LLAMA_STYLE,
    "gemma3": LLAMA_STYLE, "phi3": ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
}
"""The attention and MLP projections of one decoder layer, per model_type, as tested in
tests/engine/train/test_families.py on tiny models built from each transformers config class."""


def translate_targets(targets: Sequence[str], model_type: str | None) -> tuple[str, ...]:
    """`targets` in the model's own names: Llama names of fused layers become the fused layer (once,
    in order); every other name, dotted paths included, passes unchanged."""
    fused = FUSED.get(model_type or "", {})
    out: list[str] = []
    for target in targets:
        name = fused.get(target, target)
        if name not in out:
            out.append(name)
    return tuple(out)


def model_type_of(config: dict[str, object]) -> str | None:
    """config.json's `model_type` (a multimodal Gemma 3's text tower is `gemma3`'s text_config)."""
    value = config.get("model_type")
    return value if isinstance(value, str) else None
