"""ftui's merged folders in transformers 4.57 (what llama.cpp's converter pins) against 5.x.

Run: .venv/bin/python bench/portable_artefacts.py OLD_PYTHON
where OLD_PYTHON is a Python with transformers 4.57 (and huggingface_hub < 1.0), for example a
venv made with `pip install "transformers==4.57.1" "huggingface_hub<1.0" "tokenizers<0.23"` and a
.pth line pointing at this venv's site-packages for torch. For the embedded SmolLM2 and a tiny
Llama with Llama 3.1 rope scaling, each as transformers 5 saves it and after
`make_model_portable`, it prints whether 4.57 loads the tokenizer, the same token ids, the
rope_theta it reads, and the largest logit difference to 5.x on a chat prompt.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROBE = r"""
import json, sys, torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, ids_file, out = sys.argv[1:4]
res = {"version": transformers.__version__}
ids = json.load(open(ids_file))
try:
    tok = AutoTokenizer.from_pretrained(folder)
    text = tok.apply_chat_template([{"role": "user", "content": "List running containers, 12 + 3.5"}],
                                   tokenize=False, add_generation_prompt=True)
    res["ids"] = tok(text, add_special_tokens=False)["input_ids"]
except Exception as exc:
    res["tokenizer_error"] = f"{type(exc).__name__}: {exc}"[:120]
kw = {"dtype": torch.float32} if int(transformers.__version__.split(".")[0]) >= 5 else {"torch_dtype": torch.float32}
model = AutoModelForCausalLM.from_pretrained(folder, **kw).eval()
cfg = model.config
res["rope_theta"] = getattr(cfg, "rope_theta", None) or (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta")
with torch.no_grad():
    torch.save(model(torch.tensor([ids])).logits[0], out)
print(json.dumps(res))
"""


def probe(python: str, folder: Path, ids: list[int], work: Path, tag: str) -> tuple[dict, object]:
    import torch

    (work / "ids.json").write_text(json.dumps(ids))
    (work / "probe.py").write_text(PROBE)
    out = work / f"{tag}.pt"
    done = subprocess.run([python, str(work / "probe.py"), str(folder), str(work / "ids.json"), str(out)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1]), torch.load(out)


def main() -> None:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from engine.export.portable import make_model_portable
    from engine.models.embedded import ensure_embedded_model

    old_python = sys.argv[1] if len(sys.argv) > 1 else None
    if not old_python:
        sys.exit("usage: bench/portable_artefacts.py OLD_PYTHON (a Python with transformers 4.57)")
    work = Path(tempfile.mkdtemp(prefix="ftui-portable-"))
    embedded = ensure_embedded_model()
    tiny = work / "tiny-llama3"
    tokenizer = AutoTokenizer.from_pretrained(embedded)
    LlamaForCausalLM(LlamaConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
        vocab_size=len(tokenizer), max_position_embeddings=512, rope_theta=500000.0, initializer_range=0.2,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 16})).save_pretrained(tiny)
    tokenizer.save_pretrained(tiny)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "List running containers, 12 + 3.5"}],
                                         tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text * 3, add_special_tokens=False)["input_ids"]
    print(f"{'model':<14} {'files':<9} {'4.57 tokenizer':<16} {'same ids':<8} {'rope_theta 4.57/5':<22} "
          f"{'max |logit diff|':>16}")
    for name, source in (("smollm2-135m", embedded), ("tiny llama3.1", tiny)):
        for files in ("as saved", "portable"):
            folder = work / f"{name}-{files}".replace(" ", "-")
            shutil.copytree(source, folder)
            if files == "portable":
                make_model_portable(folder)
            new, new_logits = probe(sys.executable, folder, ids, work, "new")
            old, old_logits = probe(old_python, folder, ids, work, "old")
            loads = "loads" if "ids" in old else "fails"
            same = "yes" if old.get("ids") == new.get("ids") else "no"
            diff = (old_logits - new_logits).abs().max().item()
            print(f"{name:<14} {files:<9} {loads:<16} {same:<8} {old['rope_theta']:>9g} / {new['rope_theta']:<10g} "
                  f"{diff:>16.4f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
