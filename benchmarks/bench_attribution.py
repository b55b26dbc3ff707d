"""Integrated-gradients throughput: our attribution path vs captum, same model, data and steps, same run.

Baselines: (1) a per-example loop of captum's LayerIntegratedGradients over the word embeddings; (2) captum's
own best batched call: one LayerIntegratedGradients.attribute on the padded batch with internal_batch_size.
All three use a pad-token baseline and report captum's convergence delta, so speed is compared at equal delta.

Run: python benchmarks/bench_attribution.py [--examples 32] [--steps 50] [--json benchmarks/results/attribution-cpu.json]
Targets: >= 3x captum's batched call on a GPU, >= 1.5x on CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import markdown_table

from kd_analysis.attribution import attribute_many
from kd_analysis.data import load_demo
from kd_analysis.models.loading import load_model
from kd_analysis.models.specs import ModelSpec


def main() -> None:
    from captum.attr import LayerIntegratedGradients

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=32)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--internal-batch", type=int, default=256)
    ap.add_argument("--json")
    args = ap.parse_args()
    loaded = load_model(ModelSpec("minilm", task="classification", num_labels=2))
    model, tok = loaded.model, loaded.tokenizer
    examples = load_demo("sentiment").examples[: args.examples]
    emb = model.get_input_embeddings()

    def forward(ids, mask):
        return torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits, -1)

    def captum_call(texts, labels, internal):
        enc = tok(texts, padding=True, return_tensors="pt")
        ids, mask = enc["input_ids"], enc["attention_mask"]
        special = torch.tensor([[t in tok.all_special_ids for t in row] for row in ids.tolist()])
        base = torch.where(special, ids, torch.full_like(ids, tok.pad_token_id))
        lig = LayerIntegratedGradients(forward, emb)
        _, delta = lig.attribute(
            ids,
            baselines=base,
            target=labels,
            additional_forward_args=(mask,),
            n_steps=args.steps,
            internal_batch_size=internal,
            return_convergence_delta=True,
        )
        return delta.abs()

    rows, deltas = [], {}
    start = time.perf_counter()
    d = [captum_call([ex.text], [ex.label], args.steps) for ex in examples]
    rows.append({"path": "captum per-example loop", "s": time.perf_counter() - start})
    deltas["captum per-example loop"] = float(torch.cat(d).mean())
    start = time.perf_counter()
    d = captum_call([ex.text for ex in examples], [ex.label for ex in examples], args.internal_batch)
    rows.append({"path": "captum batched call", "s": time.perf_counter() - start})
    deltas["captum batched call"] = float(d.mean())
    start = time.perf_counter()
    attrs = attribute_many(loaded, examples, method="ig", steps=args.steps, internal_batch_size=args.steps)
    rows.append({"path": "kd-lens attribute_many", "s": time.perf_counter() - start})
    deltas["kd-lens attribute_many"] = sum(abs(a.delta) for a in attrs) / len(attrs)
    batched = next(r["s"] for r in rows if r["path"] == "captum batched call")
    for r in rows:
        r["examples/s"] = len(examples) / r["s"]
        r["× captum batched"] = batched / r["s"]
        r["mean |delta|"] = deltas[r["path"]]
    print(f"{len(examples)} examples, {args.steps} steps, threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(markdown_table(rows, ["path", "s", "examples/s", "× captum batched", "mean |delta|"]))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
