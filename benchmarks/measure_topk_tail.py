"""How much of a language-model teacher a top-k cache keeps: the tail mass outside its top-k tokens per answer
position, by temperature and k, on the demo arithmetic questions (teacher-forced on the gold worked answer after
the bare question, as the training loop caches it).

Run: python benchmarks/measure_topk_tail.py [--teacher smollm2-135m-instruct] [--limit 40] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kd_analysis.data.sources import load_dataset
from kd_analysis.models.loading import load_model
from kd_analysis.models.specs import ModelSpec
from kd_analysis.prompting.prompts import student_prompt
from kd_analysis.training.batches import lm_outputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="smollm2-135m-instruct")
    ap.add_argument("--data", default="demo:arithmetic")
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--json")
    args = ap.parse_args()
    teacher = load_model(ModelSpec(args.teacher, task="causal_lm", device="cpu"))
    examples = load_dataset(args.data).examples[: args.limit]
    rows = []
    with torch.no_grad():
        for i in range(0, len(examples), 8):
            out = lm_outputs(teacher, examples[i : i + 8], 256, lambda ex: student_prompt(teacher.tokenizer, ex))
            rows.append(out.logits[out.labels != -100].float())
    logits = torch.cat(rows)
    table = []
    for tau in (1.0, 2.0, 5.9423):
        p = torch.softmax(logits / tau, -1)
        for k in (64, 256, 1024):
            tail = 1 - p.topk(k, -1).values.sum(-1)
            table.append(
                {
                    "tau": tau,
                    "k": k,
                    "positions": int(tail.numel()),
                    "mean tail": float(tail.mean()),
                    "median tail": float(tail.median()),
                    "share of positions with tail > 20%": float((tail > 0.2).float().mean()),
                }
            )
    print(
        f"{args.teacher}, {len(examples)} questions of {args.data}, {logits.shape[0]} answer positions, "
        f"vocabulary {logits.shape[1]}"
    )
    print("| τ | k | mean tail | median tail | positions with tail > 20% |\n| --- | --- | --- | --- | --- |")
    for r in table:
        print(
            f"| {r['tau']:g} | {r['k']} | {r['mean tail']:.1%} | {r['median tail']:.1%} | "
            f"{r['share of positions with tail > 20%']:.0%} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
