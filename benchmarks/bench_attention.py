"""Head statistics over many examples: time and peak memory of our streamed path vs holding every layer.

Baseline, measured in the same run on the same model and prompts: one forward per example with
`output_attentions=True` (every layer's [heads, L, L] matrix alive at once), then the same statistics computed
from that tuple. Ours hooks each block and reduces its matrix immediately. Each variant runs in its own
subprocess so its peak resident memory (ru_maxrss) is its own; a second pair of runs uses one very long input,
where holding every layer is what blows up.

Run: python benchmarks/bench_attention.py [--model smollm2-135m-instruct] [--examples 200] [--long 2000]
     [--json benchmarks/results/attention-cpu.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _examples(n: int, long: int):
    from kd_analysis.data.example import Example
    from kd_analysis.data.sources import load_dataset

    if long:
        words = " ".join(f"Ann has {i} pens." for i in range(long // 5))
        return [Example(id="long", text=words)]
    return load_dataset("demo:arithmetic").examples[:n]


def _child(args) -> None:
    """One variant in this process: print wall time and peak RSS as JSON."""
    import torch

    from kd_analysis.attention.stats import STATS, _cosine, _per_head, digit_positions, head_stats, is_causal
    from kd_analysis.models.loading import attention_weights, load_model
    from kd_analysis.models.specs import ModelSpec
    from kd_analysis.prompting.prompts import student_prompt

    lm = load_model(ModelSpec(args.model))
    exs = _examples(args.examples, args.long)

    def prompt(ex):
        return student_prompt(lm.tokenizer, ex)

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if args.variant == "streamed":
        head_stats(lm, exs, prompt, max_tokens=max(args.long + 64, 512))
    else:
        for ex in exs:
            ids = lm.tokenizer(prompt(ex), return_tensors="pt")["input_ids"]
            L = ids.shape[1]
            valid = (
                torch.tril(torch.ones(L, L, dtype=torch.bool)) if is_causal(lm) else torch.ones(L, L, dtype=torch.bool)
            )
            numbers = digit_positions(lm.tokenizer, ids[0].tolist())
            with attention_weights(lm.model), torch.no_grad():
                atts = lm.model(input_ids=ids, output_attentions=True).attentions
            prev = None
            for a in atts:
                a = a[0].float()
                _per_head(a, valid, numbers)
                if prev is not None:
                    _cosine(a, prev)
                prev = a
            del atts
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "variant": args.variant,
                "s": wall,
                "peak_rss_mb": peak / 1024,
                "rss_added_mb": (peak - base_rss) / 1024,
                "stats": len(STATS),
            }
        )
    )


def _run(variant: str, args, long: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        variant,
        "--model",
        args.model,
        "--examples",
        str(args.examples),
        "--long",
        str(long),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        return {"variant": variant, "error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from timing import markdown_table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--long", type=int, default=2000, help="tokens of the long-input case (0: skip)")
    ap.add_argument("--child")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.child:
        args.variant = args.child
        _child(args)
        return
    rows = []
    for case, long in ((f"{args.examples} demo questions", 0), (f"one ~{args.long}-token input", args.long)):
        if case.startswith("one") and not args.long:
            continue
        results = {v: _run(v, args, long) for v in ("all layers held", "streamed")}
        base = results["all layers held"]
        for v, r in results.items():
            row = {
                "case": case,
                "path": v,
                "s": r.get("s", float("nan")),
                "peak RSS added (MB)": r.get("rss_added_mb", float("nan")),
                "error": r.get("error", ""),
            }
            if "s" in base and "s" in r:
                row["× time of all-layers"] = r["s"] / base["s"]
                row["× memory of all-layers"] = r["rss_added_mb"] / max(base["rss_added_mb"], 1e-9)
            rows.append(row)
    import torch

    print(f"model {args.model}, threads {torch.get_num_threads()}, torch {torch.__version__}")
    cols = ["case", "path", "s", "peak RSS added (MB)", "× time of all-layers", "× memory of all-layers", "error"]
    print(markdown_table([{c: r.get(c, "") for c in cols} for r in rows], cols))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
