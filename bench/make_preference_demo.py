"""Derive the Docker demo's preference pairs: the demo answer chosen, the base model's own answer rejected.

Every third prompt of presets/data/docker_train.jsonl (58 of 172: answering all took over 20
minutes on 2 busy CPU cores) and every prompt of docker_eval.jsonl (the 43 held-out ones) becomes
a TRL preference row (`prompt`, `chosen`, `rejected`): chosen is the demo's "Run: `...`" answer,
rejected is what the untuned embedded SmolLM2-135M answers (greedy, at most 64 tokens, from its
Q8_0 GGUF through llama.cpp: the base answers `ftui eval` shows and caches;
engine/infer/base_answers.py). A prompt the base already answers with the demo's answer is left
out: it holds no preference.

    python bench/make_preference_demo.py [docker_eval] [docker_train]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MAX_TOKENS = 64
"""The base answer's length limit: the demo answers are one line, a rambling base answer is cut."""
STRIDE = {"docker_train": 3, "docker_eval": 1}


def main(names: list[str]) -> None:
    from engine.infer.base_answers import base_answers
    from engine.models import resolve_model

    base = resolve_model("smollm2-135m")
    for name in names:
        rows = [json.loads(line) for line in (ROOT / "presets" / "data" / f"{name}.jsonl").read_text().splitlines()
                if line.strip()][::STRIDE[name]]
        prompts = [[m for m in row["messages"] if m["role"] != "assistant"] for row in rows]
        answers = base_answers(base.ref, prompts, "", MAX_TOKENS)
        out = []
        for row, prompt, rejected in zip(rows, prompts, answers, strict=True):
            # Held-out rows hold the command alone (`expected`); the demo answers it as "Run: `...`".
            chosen = row["messages"][-1]["content"] if "expected" not in row else f"Run: `{row['expected']}`"
            if rejected.text.strip() == chosen.strip():
                continue
            out.append({"prompt": prompt[-1]["content"], "chosen": chosen, "rejected": rejected.text.strip()})
        target = ROOT / "presets" / "data" / f"{name.replace('docker', 'docker_pref')}.jsonl"
        target.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), encoding="utf-8")
        print(f"{target.relative_to(ROOT)}: {len(out)} pairs of {len(rows)} prompts")


if __name__ == "__main__":
    main(sys.argv[1:] or ["docker_eval", "docker_train"])
