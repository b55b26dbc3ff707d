"""Inside views at the issue's scale: SmolLM2-135M (30 layers) against a 10-layer student (every third layer
kept), 64 arithmetic examples of at most 128 tokens, all three views (logit lens, layer CKA, head matching) in one
pass. Reports the wall time and the peak resident memory above what the two loaded models took.
Targets: under 60 s on 2 CPU cores, under 2 GB above the models.

Run: python benchmarks/bench_inside.py [--json benchmarks/results/inside-cpu.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--limit", type=int, default=64)
    args = ap.parse_args()

    import torch

    from kd_analysis.data.sources import load_dataset
    from kd_analysis.inside.report import inside_report
    from kd_analysis.models.pairs_loading import load_pair
    from kd_analysis.models.specs import ModelSpec, StudentSpec

    teacher, student, _ = load_pair(
        ModelSpec("smollm2-135m-instruct", task="causal_lm", device="cpu"),
        StudentSpec(kind="drop_layers", keep_layers=tuple(range(0, 30, 3))),
    )
    examples = load_dataset("demo:arithmetic").examples[: args.limit]
    base = _rss_mb()
    start = time.perf_counter()
    report = inside_report(teacher, student, examples, max_length=128)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB
    out = {
        "examples": report.examples,
        "teacher_layers": len(report.cka["teacher_layers"]) - 1,
        "student_layers": len(report.cka["student_layers"]) - 1,
        "seconds": round(seconds, 1),
        "peak_above_models_mb": round(peak - base, 0),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(out))
    print(f"{seconds:.1f} s (target < 60 s), peak {peak - base:.0f} MB above the models (target < 2048 MB)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
