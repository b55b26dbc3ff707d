"""Cost of per-example records: an evaluation with records (computed and written to predictions.jsonl)
against the same evaluation without, measured in the same run. Target: at most 5% of eval time.

Run: python benchmarks/bench_records.py [--json benchmarks/results/records-cpu.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from timing import markdown_table, median_ms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    from kd_analysis.data.sources import load_dataset
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.specs import ModelSpec
    from kd_analysis.runs.records import write_records
    from kd_analysis.training.config import TrainConfig
    from kd_analysis.training.evaluate import evaluate

    root = Path(__file__).resolve().parent.parent
    teacher = load_model(
        ModelSpec(str(root / "cached_runs/reference-minilm-mc-teacher/checkpoint"), task="multiple_choice")
    )
    examples = load_dataset("demo:mcq").examples[:52]
    cfg = TrainConfig(teacher=ModelSpec("minilm"), data="demo:mcq", batch_size=8)
    probs = {}
    t_records: list = []
    evaluate(teacher, examples, cfg, records=t_records)
    probs = {r.example_id: r.probs for r in t_records}
    out = Path(tempfile.mkdtemp()) / "predictions.jsonl"

    def plain():
        evaluate(teacher, examples, cfg)

    def with_records():
        recs: list = []
        evaluate(teacher, examples, cfg, records=recs, teacher_probs=probs)
        write_records(out, recs, run_id="bench", role="student", step=0, data="demo:mcq")

    base = median_ms(plain, repeats=args.repeats, warmup=1)
    rec = median_ms(with_records, repeats=args.repeats, warmup=1)
    rows = [
        {"case": "eval (52 MC examples, MiniLM)", "ms": base, "ratio": 1.0},
        {"case": "eval + records (computed, KL, written)", "ms": rec, "ratio": rec / base},
    ]
    print(markdown_table(rows, ["case", "ms", "ratio"]))
    print(f"records cost {100 * (rec / base - 1):+.1f}% of eval time (target ≤ 5%)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows}, indent=2))


if __name__ == "__main__":
    main()
