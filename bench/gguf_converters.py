"""ftui's own GGUF writer against llama.cpp's convert_hf_to_gguf.py on the embedded SmolLM2-135M (F16):
the figures behind engine/export/to_gguf.py's choice of converter per architecture.

    .venv/bin/python bench/gguf_converters.py [--rounds 3]

Each round writes the F16 file both ways as an export does (the writer in this process, the
converter in its child process with the sdist's gguf-py), alternating which goes first. Prints the
median seconds of each and their ratio, whether every tensor is byte-identical, the metadata keys
that differ, and llama.cpp's logits of both files against transformers' on the verification prompts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(fn, *args, **kwargs) -> float:
    started = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - started


def compare(own: Path, converted: Path, converter: Path) -> tuple[int, int, list[str]]:
    """(identical tensors, tensors, metadata keys that differ), read with the sdist's gguf-py."""
    sys.path.insert(0, str(converter / "gguf-py"))
    import gguf
    import numpy as np

    a, b = gguf.GGUFReader(own), gguf.GGUFReader(converted)
    ta, tb = {t.name: t for t in a.tensors}, {t.name: t for t in b.tensors}
    same = sum(1 for n in ta if n in tb and ta[n].tensor_type == tb[n].tensor_type
               and np.array_equal(ta[n].data, tb[n].data))
    keys = sorted(k for k in set(a.fields) | set(b.fields) if k != "GGUF.kv_count" and (
        k not in a.fields or k not in b.fields or a.fields[k].contents() != b.fields[k].contents()))
    return same, len(set(ta) | set(tb)), keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.export.gguf_writer import write_gguf
    from engine.export.hf_converter import convert, find_converter
    from engine.export.verify import build_reference, check_file
    from engine.models.embedded import ensure_embedded_model

    model_dir = ensure_embedded_model()
    converter = find_converter()
    out = Path(tempfile.mkdtemp(prefix="ftui-bench-"))
    own_s, conv_s = [], []
    for i in range(args.rounds):
        jobs = [("own", lambda: write_gguf(model_dir, out / "own.gguf")),
                ("llama.cpp", lambda: convert(model_dir, out / "converted.gguf"))]
        for name, job in jobs if i % 2 == 0 else reversed(jobs):
            (own_s if name == "own" else conv_s).append(timed(job))
    same, total, keys = compare(out / "own.gguf", out / "converted.gguf", converter)

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ref = build_reference(model, AutoTokenizer.from_pretrained(model_dir))
    checks = {name: check_file(out / f"{name}.gguf", "F16", ref, min_agreement=0.95, require_stop=False)
              for name in ("own", "converted")}

    print(f"{date.today()}  SmolLM2-135M F16, {args.rounds} rounds, `python bench/gguf_converters.py`")
    own, conv = statistics.median(own_s), statistics.median(conv_s)
    print(f"ftui writer       {own:6.2f} s (median; {', '.join(f'{s:.2f}' for s in own_s)})")
    print(f"convert_hf_to_gguf {conv:5.2f} s (median; {', '.join(f'{s:.2f}' for s in conv_s)}; child process)")
    print(f"converter / writer {conv / own:.2f}x")
    print(f"tensors byte-identical: {same} of {total}")
    print(f"metadata keys that differ: {', '.join(keys) or 'none'}")
    for name, c in checks.items():
        print(f"{name:10s} vs transformers: argmax agreement {c.argmax_agreement:.2%} over {c.positions} positions, "
              f"max |logit diff| {c.max_abs_logit_diff}, token ids match: {c.token_ids_match}")


if __name__ == "__main__":
    main()
