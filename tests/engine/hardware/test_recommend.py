"""Recommendations across the usual card sizes, several GPUs, no GPU, and the OOM suggestion."""

from __future__ import annotations

import pytest

from engine.config.build import config_from_recommendation
from engine.config.presets import list_presets
from engine.config.schema import RunConfig
from engine.hardware.catalog import get
from engine.hardware.estimate import estimate_for
from engine.hardware.probe import GpuInfo, HardwareReport, probe
from engine.hardware.recommend import CONTEXT_STEP, budget_gib, fits, max_context, plan_fits, recommend, suggest_smaller


def gpu(total: float, used: float = 0.4, index: int = 0, name: str = "NVIDIA GeForce RTX 4090") -> GpuInfo:
    return GpuInfo(index, name, total, total - used, used, (8, 9), True)


# With the chunked loss and 16-bit embeddings under QLoRA (issue 15), at 2048 tokens and 0.4 GiB in
# use, estimated with the low-vram / balanced presets' settings: 4 GiB -> 1B QLoRA (2.6 GiB at batch 2),
# 6 -> 3B QLoRA (4.5 at batch 2), 12 -> 8B QLoRA (8.9 at batch 2), 16 -> 8B QLoRA at batch 4 (11.2),
# 24 -> 8B LoRA (19.2 at batch 2).
@pytest.mark.parametrize(("size", "acceptable"), [
    (4, {("llama-3.2-1b-4bit", "qlora"), ("llama-3.2-1b", "lora")}),
    (6, {("llama-3.2-3b-4bit", "qlora")}),
    (8, {("llama-3.2-3b-4bit", "qlora"), ("llama-3.2-3b", "lora")}),
    (12, {("llama-3.1-8b-4bit", "qlora")}),
    (16, {("llama-3.1-8b-4bit", "qlora")}),
    (24, {("llama-3.1-8b", "lora")}),
    (48, {("llama-3.1-8b", "lora")}),
    (80, {("llama-3.1-8b", "lora")}),
])
def test_card_ladder(size, acceptable):
    rec = recommend([gpu(size)], seq_len=2048)
    assert rec.fits
    assert (rec.model, rec.method) in acceptable
    assert rec.peak_gib <= budget_gib(size - 0.4)
    assert rec.batch_size * rec.grad_accum == 16
    assert f"{size - 0.4:.1f} GiB free" in rec.reason and "RTX 4090" in rec.reason


def test_a_16_gib_card_has_room_beyond_batch_1_for_8b_qlora():
    rec = recommend([gpu(16)])
    assert (rec.model, rec.batch_size) == ("llama-3.1-8b-4bit", 4)


def test_bigger_cards_get_bigger_batches():
    batches = [recommend([gpu(s)]).batch_size for s in (24, 48, 80)]
    assert batches == sorted(batches) and batches[-1] > batches[0]


def test_batch_is_the_largest_that_fits():
    rec = recommend([gpu(80)])
    spec = get(rec.model)
    assert plan_fits(spec, rec.method, rec.batch_size, 2048, 79.6)[0]
    if rec.batch_size < 16:
        assert not plan_fits(spec, rec.method, rec.batch_size * 2, 2048, 79.6)[0]


@pytest.mark.parametrize("size", [4, 6, 8, 12, 16, 24, 48, 80])
def test_the_plans_peak_is_the_forms_for_the_config_it_becomes(size):
    """Accepting a recommendation lays it over a preset; the form then shows estimate_for(that
    config). The plan said 33.9 GiB where the form showed 35.2 for 8B LoRA on a 48 GiB card: the
    plan was estimated without the preset's dropout and rank."""
    card = gpu(size)
    report = HardwareReport((card,), 16, 64.0, "550", "")
    rec = recommend(report)
    config, _ = config_from_recommendation(rec, report, list_presets(), RunConfig())
    assert config.gradient_checkpointing
    assert estimate_for(config).peak_gib == pytest.approx(rec.peak_gib, abs=0.01)


def test_longer_sequences_shrink_the_plan():
    short, long = recommend([gpu(24)], seq_len=512), recommend([gpu(24)], seq_len=8192)
    assert (short.batch_size, short.model) != (long.batch_size, long.model)
    assert long.seq_len == 8192


def test_qlora_reason_says_what_lora_would_need():
    rec = recommend([gpu(16)])
    assert rec.method == "qlora"
    assert "QLoRA" in rec.reason and "16-bit LoRA would need" in rec.reason


def test_several_gpus_plan_for_the_freest_and_say_which():
    busy = gpu(48, used=40.0, index=0, name="NVIDIA RTX A6000")
    free = gpu(24, index=1)
    rec = recommend([busy, free])
    assert rec.gpu_index == 1
    assert "GPU 1" in rec.reason and "single GPU" in rec.reason
    assert rec.free_gib == pytest.approx(23.6)


def test_gpu_that_fits_nothing_says_by_how_much():
    rec = recommend([gpu(4, used=2.0, name="NVIDIA GeForce GTX 1650")])
    assert rec.fits is False
    assert rec.model == "llama-3.2-1b-4bit" and rec.batch_size == 1
    assert "Nothing fits" in rec.reason and "GiB more than the 2.0 GiB free" in rec.reason
    assert "embedded model on the CPU" in rec.reason


def test_no_gpu_means_embedded_model_on_cpu(fake_nvml):
    import pynvml

    report = probe(fake_nvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    rec = recommend(report)
    assert rec.model == "smollm2-135m"
    assert rec.fits and rec.gpu_index is None and not rec.grad_checkpointing
    # What the card recommends is what accepting it trains: the demo preset.
    assert (rec.method, rec.batch_size, rec.grad_accum, rec.seq_len) == ("lora", 8, 1, 256)
    assert "No NVIDIA GPU" in rec.reason and "CPU" in rec.reason
    assert rec.free_gib == pytest.approx(report.ram_gib, abs=0.01)


def test_vram_plans_for_a_card_you_do_not_have():
    rec = recommend([], vram_gib=80)
    assert (rec.model, rec.method) == ("llama-3.1-8b", "lora")
    assert rec.gpu_index is None
    assert "80 GiB card you plan for" in rec.reason


@pytest.mark.parametrize(("kwargs", "words"), [({"seq_len": 4}, "too short"), ({"vram_gib": 0}, "positive")])
def test_bad_inputs(kwargs, words):
    with pytest.raises(ValueError, match=words):
        recommend([], **kwargs)


def test_suggest_smaller_keeps_the_effective_batch():
    spec = get("llama-3.2-3b")
    assert not fits(spec, "lora", 8, 2048, 12.0, grad_checkpointing=True)[0]
    plan = suggest_smaller(spec, "lora", 8, 2048, 12.0, grad_accum=4, grad_checkpointing=True)
    assert plan is not None and plan.batch_size < 8
    assert plan.batch_size * plan.grad_accum == 32
    assert plan.seq_len == 2048
    assert plan.peak_gib <= budget_gib(12.0)
    msg = plan.describe(8, 2048)
    assert msg.startswith("batch 8 at 2048 tokens failed; batch ")
    assert f"accumulation {plan.grad_accum}" in msg and f"{plan.peak_gib:.1f} GiB" in msg


def test_suggest_smaller_turns_on_checkpointing_then_shortens():
    spec = get("llama-3.1-8b")
    plan = suggest_smaller(spec, "lora", 4, 4096, 20.0, grad_accum=4)
    assert plan is not None and plan.grad_checkpointing and plan.batch_size == 1
    assert plan.seq_len < 4096 and "longer examples are truncated" in plan.describe(4, 4096)
    assert suggest_smaller(spec, "lora", 1, 2048, 10.0) is None


def test_max_context_is_the_edge_of_what_fits():
    for fit in max_context(15.6):
        spec = get(fit.model)
        if fit.seq_len:
            assert plan_fits(spec, fit.method, 1, fit.seq_len, 15.6)[0]
        if not fit.model_limit:
            assert not plan_fits(spec, fit.method, 1, fit.seq_len + CONTEXT_STEP, 15.6)[0]
    lengths = {f.model: f.seq_len for f in max_context(15.6)}
    assert lengths["llama-3.1-8b"] == 0 < lengths["llama-3.1-8b-4bit"] < lengths["llama-3.2-3b-4bit"]


def test_max_context_stops_at_the_models_own_limit():
    fit = next(f for f in max_context(200.0) if f.model == "llama-3.2-1b")
    assert fit.model_limit and fit.seq_len == get("llama-3.2-1b").context


def test_family_plans_within_that_family_and_llama_stays_the_default():
    from engine.hardware.catalog import get
    from engine.hardware.recommend import FAMILIES, best_per_family, recommend

    default = recommend([], vram_gib=12)
    assert default == recommend([], vram_gib=12, family="llama")
    assert get(default.model).family == "llama"
    for family in FAMILIES:
        assert get(recommend([], vram_gib=24, family=family).model).family == family
    assert [get(p.model).family for p in best_per_family(12.0)] == list(FAMILIES)


def test_an_unknown_family_is_refused():
    from engine.hardware.recommend import recommend

    with pytest.raises(ValueError, match="not one of llama, qwen3"):
        recommend([], vram_gib=12, family="falcon")


def test_qwen3_adapters_are_sized_by_its_head_dim_not_hidden_over_heads():
    from engine.hardware.catalog import get
    from engine.hardware.estimate import linear_shapes

    shapes = linear_shapes(get("qwen3-0.6b"))
    assert shapes["q_proj"] == (1024, 16 * 128) and shapes["k_proj"] == (1024, 8 * 128)
    assert set(linear_shapes(get("phi-4-mini"))) == {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}


def test_on_a_cpu_the_recommendation_shows_the_figure_the_form_shows_for_it():
    """The home screen said 2.1 GiB and the form, opened on the same demo selection, 2.4 GiB: both
    now estimate the demo preset's whole config (what the form's memory bar counts on a CPU)."""
    from engine.config.presets import load_preset
    from engine.hardware.estimate import estimate_for

    rec = recommend([], seq_len=2048)
    demo = load_preset("demo").apply()
    form = estimate_for(demo.replace(max_seq_len=rec.seq_len))
    assert form is not None and rec.peak_gib == round(form.tensors_gib, 2)
