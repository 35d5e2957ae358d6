"""Tiny real models and data for the training tests: a 2-layer Llama and patterned sequences."""

from __future__ import annotations

import random
import threading
from pathlib import Path

from engine.config.schema import RunConfig
from engine.data.types import PreparedData, TokenizedExample
from engine.train import Loaded, run_loaded

VOCAB = 64


def make_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, **{f"t{i}": i for i in range(3, VOCAB)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>")


def make_model_folder(folder: Path, hidden: int = 32) -> Path:
    """bitsandbytes' CPU 4-bit kernels need inputs of at least 64 features: pass hidden=64 for QLoRA."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=256,
        pad_token_id=0, eos_token_id=1, bos_token_id=2,
    ))
    model.save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return folder


def make_examples(n: int, seed: int = 0) -> tuple[TokenizedExample, ...]:
    """Counting sequences (learnable) of varied length; the first third is prompt (no loss)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        length = rng.randint(8, 40)
        start = rng.randint(3, VOCAB - 1)
        ids = tuple(3 + (start + k) % (VOCAB - 3) for k in range(length)) + (1,)
        prompt = len(ids) // 3
        out.append(TokenizedExample(ids, (-100,) * prompt + ids[prompt:], i + 1))
    return tuple(out)


def tiny_data(n_train: int = 48, n_val: int = 8) -> PreparedData:
    return PreparedData(make_examples(n_train), make_examples(n_val, seed=1), format="messages")


def tiny_config(tmp_path: Path, **changes) -> RunConfig:
    values = dict(
        name="tiny", model="tiny-llama", output_dir=str(tmp_path / "runs"), method="lora", lora_r=4,
        lora_alpha=8, lora_dropout=0.0, target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                        "up_proj", "down_proj"),
        learning_rate=1e-3, batch_size=4, grad_accum=2, max_seq_len=64, epochs=1.0, max_steps=0,
        warmup_steps=1, scheduler="linear", eval_interval=3, save_interval=4, val_split=0.1,
        # Exact comparisons (resume, checkpointing, several processes) on any CPU, bf16 or not.
        precision="fp32",
    )
    values.update(changes)
    return RunConfig.from_dict(values)


def loaded_for(folder: Path, data: PreparedData | None = None, wrap=None) -> Loaded:
    """A Loaded over the tiny model folder; `wrap(model, config)` can swap in a fake at the boundary."""

    def build(config: RunConfig, precision):
        from transformers import AutoModelForCausalLM

        if config.method == "qlora":
            import torch
            from transformers import BitsAndBytesConfig

            model = AutoModelForCausalLM.from_pretrained(folder, quantization_config=BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch.float32))
        else:
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=precision.load_dtype)
        return wrap(model, config) if wrap else model

    return Loaded(build, make_tokenizer(), data or tiny_data(), str(folder))


def run_tiny(config: RunConfig, folder: Path, stop: threading.Event | None = None, on_step=None,
             resume: str | None = None, data: PreparedData | None = None, wrap=None):
    """Run and record every event; `on_step(event, stop)` can act during the run."""
    events = []
    stop = stop or threading.Event()

    def on_event(event):
        events.append(event)
        if on_step is not None:
            on_step(event, stop)

    result = run_loaded(config, loaded_for(folder, data, wrap), on_event, stop, resume=resume)
    return result, events
