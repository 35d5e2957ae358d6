"""HF Llama-family folder -> GGUF (F16 or BF16), with no llama.cpp checkout or build.

llama.cpp's own converter moves with llama.cpp and breaks when its build does; this writer
uses only the `gguf` package's GGUFWriter and tensor-name map and mirrors what
convert_hf_to_gguf.py does for `LlamaForCausalLM` (SmolLM2, Llama 3.x): q/k weights permuted
from HF's rotary layout to llama.cpp's, a `rope_freqs` tensor for Llama 3.1 `llama3` rope
scaling, tied embeddings without an output tensor, and a `gpt2` BPE vocabulary with the
pre-tokenizer that matches the tokenizer's own splitting rules. Tensors are streamed one at a
time, so an 8B model does not need its F16 copy in RAM.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.events import EventSink, Progress, ignore
from engine.files.atomic import atomic_file
from engine.models.hf_import import hf_imported

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM",)
GGUF_DTYPES = ("F16", "BF16")


class UnsupportedModel(ValueError):
    """The folder holds a model this writer cannot convert faithfully; raised before any work."""


@dataclass(frozen=True)
class LlamaParams:
    """What the writer needs from config.json, read the same way for transformers v4 and v5 files."""

    n_layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    context: int
    rms_eps: float
    rope_theta: float
    rope_scaling: dict[str, Any] | None
    tied: bool


def read_params(model_dir: Path) -> LlamaParams:
    """Check the architecture and rope scaling before any work; say what is supported when not."""
    config_file = Path(model_dir) / "config.json"
    if not config_file.is_file():
        raise UnsupportedModel(f"{model_dir} has no config.json: not a Hugging Face model folder")
    cfg = json.loads(config_file.read_text(encoding="utf-8"))
    archs = cfg.get("architectures") or [cfg.get("model_type", "?")]
    if cfg.get("model_type") != "llama" or not set(archs) & set(SUPPORTED_ARCHITECTURES):
        raise UnsupportedModel(
            f"{model_dir}: architecture {', '.join(map(str, archs))} is not supported for GGUF export; "
            f"supported: {', '.join(SUPPORTED_ARCHITECTURES)} (Llama 3.x, SmolLM2)")
    rope = dict(cfg.get("rope_parameters") or cfg.get("rope_scaling") or {})
    theta = float(cfg.get("rope_theta") or rope.get("rope_theta") or 10000.0)
    rope_type = rope.get("rope_type") or rope.get("type") or "default"
    if rope_type not in ("default", "llama3", "linear"):
        raise UnsupportedModel(
            f"{model_dir}: rope scaling {rope_type!r} is not supported; supported: none, llama3, linear")
    heads = int(cfg["num_attention_heads"])
    hidden = int(cfg["hidden_size"])
    return LlamaParams(
        n_layers=int(cfg["num_hidden_layers"]),
        hidden=hidden,
        heads=heads,
        kv_heads=int(cfg.get("num_key_value_heads") or heads),
        head_dim=int(cfg.get("head_dim") or hidden // heads),
        intermediate=int(cfg["intermediate_size"]),
        vocab=int(cfg["vocab_size"]),
        context=int(cfg.get("max_position_embeddings") or 2048),
        rms_eps=float(cfg.get("rms_norm_eps") or 1e-5),
        rope_theta=theta,
        rope_scaling=None if rope_type == "default" else {**rope, "rope_type": rope_type},
        tied=bool(cfg.get("tie_word_embeddings", False)),
    )


def write_gguf(model_dir: Path, out_path: Path, *, dtype: str = "F16", name: str | None = None,
               on_event: EventSink = ignore) -> Path:
    """Write `out_path` from a merged HF folder; the file appears only once complete."""
    import gguf

    if dtype not in GGUF_DTYPES:
        raise ValueError(f"GGUF dtype {dtype!r} is not one of {', '.join(GGUF_DTYPES)}")
    model_dir = Path(model_dir)
    params = read_params(model_dir)
    tokenizer = _load_tokenizer(model_dir)
    pre = pre_tokenizer_name(model_dir)
    tensors = list(_tensor_plan(model_dir, params))

    with atomic_file(Path(out_path)) as tmp:
        writer = gguf.GGUFWriter(tmp, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
        try:
            _add_metadata(writer, params, dtype)
            _add_model_metadata(writer, model_dir, name or model_dir.name, tensors)
            _add_vocab(writer, model_dir, tokenizer, params, pre)
            for t in tensors:
                writer.add_tensor_info(t.gguf_name, t.shape, t.np_dtype(dtype), t.nbytes(dtype),
                                       raw_dtype=t.raw_dtype(dtype))
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            total = len(tensors)
            for i, t in enumerate(tensors, 1):
                writer.write_tensor_data(t.load(dtype))
                if i % 16 == 0 or i == total:
                    on_event(Progress("write", i, total, "tensors", f"{Path(out_path).name}: {t.gguf_name}"))
        finally:
            writer.close()
    return Path(out_path)


def pre_tokenizer_name(model_dir: Path) -> str:
    """llama.cpp's pre-tokenizer for this tokenizer, read from its splitting rules.

    llama.cpp picks the name by hashing a test tokenization; reading the rules is equivalent for
    the families ftui supports, and the token-id check after export proves the choice. The
    converter's child (convert_child.py) falls back to it for a vocabulary the hash does not know.
    """
    data = json.loads((Path(model_dir) / "tokenizer.json").read_text(encoding="utf-8"))
    pre = data.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits"):
        return "smollm"
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds and kinds[0] == "Split":
        pattern = steps[0].get("pattern", {}).get("Regex", "")
        if "[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*" in pattern and "\\p{N}{1,3}" in pattern:
            return "gpt-4o"
        if "\\p{N}{1,3}" in pattern and "(?i:'s|'t|'re|'ve|'m|'ll|'d)" in pattern:
            return "llama-bpe"
        if "\\p{L}+|\\p{N}|" in pattern and "(?i:'s|'t|'re|'ve|'m|'ll|'d)" in pattern:
            return "qwen2"
    raise UnsupportedModel(
        f"{model_dir}: tokenizer pre-tokenizer {kinds} is not one ftui can map to llama.cpp; "
        "supported: SmolLM2 (smollm), GPT-2 byte level (gpt-2), Llama 3 (llama-bpe), Qwen2/Qwen3 (qwen2), "
        "Phi-4-mini/o200k (gpt-4o)")


def llama3_rope_factors(params: LlamaParams) -> list[float]:
    """Per-frequency divisors llama.cpp applies for Llama 3.1 rope scaling (its `rope_freqs`)."""
    rope = params.rope_scaling or {}
    factor = float(rope.get("factor", 8.0))
    low = float(rope.get("low_freq_factor", 1.0))
    high = float(rope.get("high_freq_factor", 4.0))
    old_ctx = float(rope.get("original_max_position_embeddings", 8192))
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    out = []
    for i in range(0, params.head_dim, 2):
        freq = 1.0 / (params.rope_theta ** (i / params.head_dim))
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return out


@dataclass
class _Tensor:
    gguf_name: str
    shape: tuple[int, ...]
    source: Any
    """A callable returning the float32 numpy array in GGUF layout."""

    def keep_f32(self) -> bool:
        # llama.cpp keeps norms and rope factors in F32 whatever the file type.
        return len(self.shape) <= 1

    def np_dtype(self, dtype: str) -> Any:
        import numpy as np

        if self.keep_f32():
            return np.float32
        return np.float16 if dtype == "F16" else np.uint8

    def raw_dtype(self, dtype: str) -> Any:
        import gguf

        if self.keep_f32() or dtype == "F16":
            return None
        return gguf.GGMLQuantizationType.BF16

    def nbytes(self, dtype: str) -> int:
        return math.prod(self.shape) * (4 if self.keep_f32() else 2)

    def load(self, dtype: str) -> Any:
        import gguf
        import numpy as np

        data = self.source()
        if self.keep_f32():
            return data.astype(np.float32)
        if dtype == "F16":
            return data.astype(np.float16)
        return gguf.quants.quantize(data.astype(np.float32), gguf.GGMLQuantizationType.BF16)


def _tensor_plan(model_dir: Path, params: LlamaParams) -> Iterator[_Tensor]:
    import gguf

    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, params.n_layers)
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise UnsupportedModel(f"{model_dir} has no .safetensors weights")
    if params.rope_scaling and params.rope_scaling["rope_type"] == "llama3":
        factors = llama3_rope_factors(params)
        yield _Tensor(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", (len(factors),),
                      lambda: _np(factors))
    for file in files:
        for key, shape in _safetensors_shapes(file).items():
            if key.endswith("rotary_emb.inv_freq"):
                continue
            if key == "lm_head.weight" and params.tied:
                continue
            gguf_name = name_map.get_name(key, try_suffixes=(".weight", ".bias"))
            if gguf_name is None:
                raise UnsupportedModel(f"{file.name}: tensor {key!r} has no GGUF name for the llama architecture")
            n_head = params.heads if key.endswith("q_proj.weight") else params.kv_heads
            permute = key.endswith(("q_proj.weight", "k_proj.weight"))
            yield _Tensor(gguf_name, tuple(shape), _loader(file, key, n_head if permute else None))


def _loader(file: Path, key: str, permute_heads: int | None) -> Any:
    def load() -> Any:
        import torch
        from safetensors import safe_open

        with safe_open(file, framework="pt") as f:
            tensor = f.get_tensor(key).to(torch.float32)
        if permute_heads is not None:
            tensor = _permute(tensor, permute_heads)
        return tensor.numpy()

    return load


def _permute(weights: Any, n_head: int) -> Any:
    """HF stores rotary pairs as two halves; llama.cpp wants them interleaved per head."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def _safetensors_shapes(file: Path) -> dict[str, list[int]]:
    # The header alone gives names and shapes, so planning reads no weights.
    with open(file, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(size))
    header.pop("__metadata__", None)
    return {k: v["shape"] for k, v in header.items()}


def _np(values: list[float]) -> Any:
    import numpy as np

    return np.asarray(values, dtype=np.float32)


def _add_metadata(writer: Any, p: LlamaParams, dtype: str) -> None:
    import gguf

    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_block_count(p.n_layers)
    writer.add_context_length(p.context)
    writer.add_embedding_length(p.hidden)
    writer.add_feed_forward_length(p.intermediate)
    writer.add_head_count(p.heads)
    writer.add_head_count_kv(p.kv_heads)
    writer.add_rope_freq_base(p.rope_theta)
    writer.add_layer_norm_rms_eps(p.rms_eps)
    writer.add_vocab_size(p.vocab)
    writer.add_rope_dimension_count(p.head_dim)
    if p.head_dim != p.hidden // p.heads:
        writer.add_key_length(p.head_dim)
        writer.add_value_length(p.head_dim)
    if p.rope_scaling and p.rope_scaling["rope_type"] == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(p.rope_scaling["factor"]))
    ftype = gguf.LlamaFileType.MOSTLY_F16 if dtype == "F16" else gguf.LlamaFileType.MOSTLY_BF16
    writer.add_file_type(ftype)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _add_model_metadata(writer: Any, model_dir: Path, run_name: str, tensors: list[_Tensor]) -> None:
    """`general.*` as llama.cpp's converter writes them, read the same way (gguf.Metadata): the
    folder's model card gives `general.base_model.*`, licence and tags; the base's repository name
    gives the basename; the run is the fine-tune, so the name says both; the size label is counted."""
    import gguf

    total = sum(math.prod(t.shape) for t in tensors if len(t.shape) > 1)
    meta = gguf.Metadata.load(None, model_dir, run_name, total)
    base = meta.base_models[0] if meta.base_models else {}
    repo = str(base.get("repo_url") or "").removeprefix("https://huggingface.co/")
    basename = gguf.Metadata.get_model_id_components(repo, total)[2] if repo else None
    meta.name = f"{base['name']} ({run_name})" if base.get("name") else run_name
    meta.basename = basename or run_name
    meta.finetune = run_name
    meta.size_label = gguf.size_label(total, 0, 0, 0)  # measured, as llama.cpp's converter does
    meta.set_gguf_meta_model(writer)


def _load_tokenizer(model_dir: Path) -> Any:
    hf_imported()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def _add_vocab(writer: Any, model_dir: Path, tokenizer: Any, p: LlamaParams, pre: str) -> None:
    import gguf

    vocab = tokenizer.get_vocab()
    reverse = {i: tok for tok, i in vocab.items()}
    added = tokenizer.get_added_vocab()
    decoder = tokenizer.added_tokens_decoder
    tokens: list[str] = []
    types: list[int] = []
    for i in range(p.vocab):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        token = reverse[i]
        if token in added:
            special = decoder[i].special if i in decoder else False
            if special or (token.startswith("<|") and token.endswith("|>")):
                types.append(gguf.TokenType.CONTROL)
            else:
                types.append(gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(token)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=p.vocab)
    # What the tokenizer actually does decides BOS, not a flag that may be missing from its config.
    probe = tokenizer("a").input_ids
    special.add_special_token["bos"] = bool(probe) and probe[0] == tokenizer.bos_token_id
    if not special.chat_template and getattr(tokenizer, "chat_template", None):
        special.chat_template = tokenizer.chat_template
    special.add_to_gguf(writer, quiet=True)
