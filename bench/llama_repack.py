"""What llama.cpp's weight repacking is worth on this CPU: the figure behind engine/native/llama.py's choice.

ftui loads GGUFs without llama.cpp's extra buffer types (`use_extra_bufts = False`) on CPUs
with AMX, whose repacked path crashes. The same switch turns off the AVX2 repacking of Q4_0 /
Q4_K weights that other x86 CPUs get; this measures what that costs. For each file it times,
with repacking on and off in alternating rounds, a prompt of `--prompt` tokens (one batch) and
`--tokens` greedily decoded tokens, each load in its own process so no state carries over.

    .venv/bin/python bench/llama_repack.py [--quants Q8_0,Q4_K_M] [--rounds 3] [--tokens 128]

The GGUFs are the embedded SmolLM2-135M exported like a run (cached after the first time).
Prints prompt and decode tokens/s, medians over rounds, and off/on ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT = ("Explain, step by step, how a Docker container differs from a virtual machine, what an image layer is, "
          "and why a build cache makes rebuilds fast. ")


def measure(gguf: str, repack: bool, prompt_tokens: int, tokens: int) -> dict[str, float]:
    """One load and run, in this process."""
    from engine.native.llama import LoadPlan, load_llama

    llm, _plan = load_llama(gguf, n_ctx=prompt_tokens + tokens + 16, plan=LoadPlan(repack=repack, gpu_layers=0))
    ids = llm.tokenize((PROMPT * 40).encode())[:prompt_tokens]
    started = time.perf_counter()
    llm.eval(ids)
    prompt_s = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(tokens):
        llm.eval([llm.sample(top_k=1, temp=0.0)])
    decode_s = time.perf_counter() - started
    llm.close()
    return {"prompt_tps": prompt_tokens / prompt_s, "decode_tps": tokens / decode_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quants", default="Q8_0,Q4_K_M")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompt", type=int, default=256, help="prompt tokens, evaluated as one batch")
    parser.add_argument("--tokens", type=int, default=128, help="tokens decoded greedily")
    parser.add_argument("--one", nargs=2, metavar=("GGUF", "REPACK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1] == "on", args.prompt, args.tokens)))
        return

    from engine.infer.base_answers import base_gguf_for
    from engine.models.embedded import ensure_embedded_model
    from engine.native.llama import cpu_flags, cpu_name, has_amx

    base = str(ensure_embedded_model())
    files = {q: str(base_gguf_for(base, q)) for q in args.quants.split(",")}
    print(f"{date.today()}  {cpu_name()}  ({'has' if has_amx(cpu_flags()) else 'no'} AMX)  "
          f"prompt {args.prompt} tokens, decode {args.tokens} tokens, {args.rounds} rounds")
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for _ in range(args.rounds):
        for quant, path in files.items():
            for repack in ("on", "off"):
                out = subprocess.run([sys.executable, __file__, "--one", path, repack, "--prompt", str(args.prompt),
                                      "--tokens", str(args.tokens)], capture_output=True, text=True, check=True)
                results.setdefault((quant, repack), []).append(json.loads(out.stdout.splitlines()[-1]))
    print(f"{'file':8} {'repack':6} {'prompt tok/s':>12} {'decode tok/s':>12}")
    for quant in files:
        med = {}
        for repack in ("on", "off"):
            runs = results[(quant, repack)]
            med[repack] = (statistics.median(r["prompt_tps"] for r in runs),
                           statistics.median(r["decode_tps"] for r in runs))
            print(f"{quant:8} {repack:6} {med[repack][0]:12.1f} {med[repack][1]:12.1f}")
        print(f"{quant:8} off/on {med['off'][0] / med['on'][0]:12.2f}x {med['off'][1] / med['on'][1]:11.2f}x")


if __name__ == "__main__":
    main()
