"""Tiny random models of each family ftui catalogs, with tokenizers built like the real ones, offline.

Each folder is what a hub download of the family looks like, shrunk: the transformers
architecture (`Qwen3ForCausalLM`, `Gemma3ForCausalLM`, `MistralForCausalLM`, `Phi3ForCausalLM`)
with random weights, a tokenizer of the same kind (byte-level BPE with the family's split regex
for Qwen3 and Phi-4-mini; a SentencePiece BPE model with byte fallback for Gemma 3 and Mistral),
the family's special tokens and its real chat template. Vocabularies are small and trained here
on a few sentences; shapes are small but keep rows of 256, so llama.cpp's K-quants (Q4_K_M) apply
to every matrix as they do on the real models. Built in about a second per family; reused by the
export, data and training tests and by bench/gpu_check.py.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

FAMILIES = ("qwen3", "gemma3_text", "mistral", "phi3")
"""config.json model_type of each family (Phi-4-mini is a phi3)."""

TEMPLATES = Path(__file__).parent / "templates"
"""Each family's chat template as its instruct model ships it (Qwen3 from llama.cpp's
models/templates in the llama-cpp-python 0.3.36 sdist; Gemma 3, Mistral v0.3 and Phi-4-mini from their
tokenizer_config.json)."""

QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
O200K_SPLIT = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
               r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+"
               r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
"""The pre-tokenizer regexes of Qwen2/Qwen3's and Phi-4-mini's (o200k) tokenizer.json."""

CORPUS = (
    "The quick brown fox jumps over the lazy dog. Answer in one word: what colour is the sky?",
    "Blue. How do I list running containers? Use docker ps, or docker ps -a for all of them.",
    "You answer briefly. What is 17 times 23? It is 391. Write a haiku about the sea.",
    "Waves fold into foam, salt wind carries gull voices, the tide keeps its time.",
    "def add(a, b):\n    return a + b  # sum\n\tprint(f\"{a!r}\")\n",
    "Hello, world! 3.14159 + 2718281828 = 12345678901234567890",
    "Ünïcödé façade naïve café — “quotes” and ‘apostrophes’. Emoji 🚀🔥 and 机器学习, こんにちは.",
    "I think so. Let me think about it first, then answer: yes, the model stops at the end of its turn.",
)

SHAPES: dict[str, Any] = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                              num_key_value_heads=2, max_position_embeddings=1024)


def build(folder: Path, family: str, seed: int = 0) -> Path:
    """Write a tiny `family` model folder (config, safetensors, tokenizer, chat template)."""
    import torch

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; one of {', '.join(FAMILIES)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tokenizer(folder, family)
    torch.manual_seed(seed)
    model = _model(family, tokenizer)
    _teach_to_end_turns(model, tokenizer)
    if family == "gemma3_text":  # as Gemma 3's generation_config.json: a turn ends at <end_of_turn> too
        model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_turn>")]
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_tokenizer(folder: Path, family: str) -> Any:
    """The family's tokenizer, written into `folder` and loaded back as transformers loads it."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if family in ("qwen3", "phi3"):
        _byte_level_bpe(folder, family)
    else:
        _sentencepiece(folder, family)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if family == "gemma3_text":
        # Gemma 3's turn markers are special tokens (its added_tokens_decoder says so).
        tokenizer.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    if family == "mistral":
        tokenizer = _legacy_llama(folder, tokenizer)
    tokenizer.chat_template = (TEMPLATES / f"{family}.jinja").read_text(encoding="utf-8")
    tokenizer.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def _model(family: str, tokenizer: Any) -> Any:
    import transformers

    vocab = len(tokenizer)
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    if family == "qwen3":
        config = transformers.Qwen3Config(**SHAPES, **ids, vocab_size=vocab, head_dim=64, tie_word_embeddings=True,
                                          rope_theta=1_000_000.0)
        return transformers.Qwen3ForCausalLM(config).eval()
    if family == "gemma3_text":
        # Six layers: Gemma 3 alternates five sliding-window layers and one global, and llama.cpp
        # hard-codes that period, so a model shorter than it would not test the real layout.
        config = transformers.Gemma3TextConfig(**{**SHAPES, "num_hidden_layers": 6}, **ids, vocab_size=vocab,
                                               head_dim=64, sliding_window=16, tie_word_embeddings=True,
                                               # = head_dim, as in Gemma 3 1B-12B (llama.cpp scales by it)
                                               query_pre_attn_scalar=64)
        return transformers.Gemma3ForCausalLM(config).eval()
    if family == "mistral":
        config = transformers.MistralConfig(**SHAPES, **ids, vocab_size=vocab, sliding_window=None,
                                            tie_word_embeddings=False, rope_theta=1_000_000.0)
        return transformers.MistralForCausalLM(config).eval()
    # Phi-4-mini: a Phi3ForCausalLM with tied embeddings and rotary on three quarters of each head.
    config = transformers.Phi3Config(**SHAPES, **ids, vocab_size=vocab, tie_word_embeddings=True,
                                     partial_rotary_factor=0.75, original_max_position_embeddings=1024,
                                     rope_theta=10000.0)
    return transformers.Phi3ForCausalLM(config).eval()


CHATS = (
    ("Answer in one word: what colour is the sky on a clear day?", "Blue."),
    ("How do I list running containers?", "Use docker ps."),
    ("What is 17 times 23?", "It is 391."),
    ("Write a haiku about the sea.", "Waves fold into foam."),
)


def _teach_to_end_turns(model: Any, tokenizer: Any, steps: int = 30) -> None:
    """A moment of full training on short chats, so greedy answers end with the family's
    end-of-turn token as a real instruct model's do (verification requires it of quantised files);
    random weights would ramble to the generation limit. All chats go in each step, right-padded."""
    import torch

    texts = [tokenizer.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                                           tokenize=False) for q, a in CHATS]
    rows = [tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    width = max(map(len, rows))
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    labels = ids.masked_fill(mask == 0, -100)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster than two fighting over a busy CPU
    try:
        model.train()
        for _ in range(steps):
            model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        model.eval()
    finally:
        torch.set_num_threads(threads)


BYTE_LEVEL_SPECIALS = {
    # Qwen3: <|endoftext|> pads, <|im_end|> ends a turn; <think> tags are added but not special.
    "qwen3": (["<|endoftext|>", "<|im_start|>", "<|im_end|>"], ["<think>", "</think>"]),
    # Phi-4-mini: <|endoftext|> is eos and pad; <|end|> ends a turn.
    "phi3": (["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|tool|>"], []),
}


def _byte_level_bpe(folder: Path, family: str) -> None:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    specials, plain = BYTE_LEVEL_SPECIALS[family]
    tok = Tokenizer(models.BPE())
    split = QWEN2_SPLIT if family == "qwen3" else O200K_SPLIT
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=640, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(list(CORPUS) * 4, trainer)
    from tokenizers import AddedToken

    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    tok.add_tokens([AddedToken(s, special=False, normalized=False) for s in plain])
    tok.save(str(folder / "tokenizer.json"))
    if family == "qwen3":
        config = dict(tokenizer_class="Qwen2Tokenizer", eos_token="<|im_end|>", pad_token="<|endoftext|>",
                      bos_token=None, unk_token=None, add_bos_token=False)
    else:
        config = dict(tokenizer_class="GPT2Tokenizer", eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                      bos_token="<|endoftext|>", unk_token="<|endoftext|>", add_bos_token=False)
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 1024}), encoding="utf-8")


def _sentencepiece(folder: Path, family: str) -> None:
    """A SentencePiece BPE model with byte fallback, the ids the real model gives its specials."""
    import sentencepiece as spm

    model = io.BytesIO()
    if family == "gemma3_text":
        ids = dict(pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>")
        extra = dict(user_defined_symbols=["<start_of_turn>", "<end_of_turn>"])
        config = dict(tokenizer_class="GemmaTokenizer", bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                      unk_token="<unk>", add_bos_token=True, add_eos_token=False)
    else:
        ids = dict(unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
        extra = dict(control_symbols=["[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                                     "[TOOL_RESULTS]", "[/TOOL_RESULTS]"])
        config = dict(tokenizer_class="LlamaTokenizer", bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                      pad_token=None, add_bos_token=True, add_eos_token=False, legacy=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(CORPUS) * 8), model_writer=model, vocab_size=512, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, split_digits=True, allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False, normalization_rule_name="identity", hard_vocab_limit=False,
        add_dummy_prefix=family != "gemma3_text", minloglevel=2, num_threads=1, **ids, **extra)
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 1024}), encoding="utf-8")


def _legacy_llama(folder: Path, tokenizer: Any) -> Any:
    """Mistral v0.3's tokenizer.json is in Llama 2's "legacy" form: a space is prepended to every
    piece of text, also after a special token ("[INST]" + " Hi" -> "▁▁Hi"), which is what llama.cpp's
    SentencePiece tokenizer does. transformers 5's LlamaTokenizer class rebuilds its pipeline as
    Metaspace instead, so the tiny one is loaded as the plain fast tokenizer its tokenizer.json makes."""
    from tokenizers import decoders, normalizers
    from transformers import AutoTokenizer

    backend = tokenizer.backend_tokenizer
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    backend.pre_tokenizer = None
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
    tokenizer.save_pretrained(folder)
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_file.write_text(json.dumps(config), encoding="utf-8")
    return AutoTokenizer.from_pretrained(folder)
