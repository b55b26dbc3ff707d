"""Error-analysis speed on 10,000 synthetic examples: safe filters against pandas' own `frame.query`, same run.

Times parse_filter + apply (and + sorting by KL) on the same expression as `DataFrame.query` (the baseline; it
evals its string, which the app cannot allow on user input), then join_roles (teacher + student records → one
row per example), disagreement and find_slices. Ratios are against the query baseline measured in this run.
Then the self-contained HTML report of a 10,000-example run with 20 pinned examples, against plotly's own
`write_html` of one figure with its JavaScript inlined (the least a self-contained plotly file costs).

Run: python benchmarks/bench_errors.py [--rows 10000] [--json benchmarks/results/errors-cpu.json]
Target: filtering and sorting 10,000 rows well under 1 s.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import markdown_table, median_ms

from kd_analysis.error_analysis.filters import parse_filter
from kd_analysis.error_analysis.frames import join_roles
from kd_analysis.error_analysis.matrix import disagreement
from kd_analysis.error_analysis.slices import find_slices

EXPR = "(0.2 < kl <= 3 and text_tokens > 100) or gold in (1, 2) and student_p_pred < 0.5"


def synthetic_rows(n: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Teacher and student records shaped like predictions.jsonl lines, with a weakness on long inputs."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(5, 400, n)
    gold = rng.integers(0, 4, n)
    t_ok = rng.random(n) < 0.9
    s_ok = np.where(t_ok, rng.random(n) < np.where(tokens > 300, 0.3, 0.9), rng.random(n) < 0.3)
    kl = rng.exponential(size=n)
    teacher, student = [], []
    for i in range(n):
        common = {
            "example_id": str(i),
            "data": "bench",
            "gold": int(gold[i]),
            "text_tokens": int(tokens[i]),
            "text": f"question {i} with {'12 apples' if i % 3 else 'no digits'}",
            "topic": ("sport", "news", "art", "science")[i % 4],
        }
        teacher.append(
            {
                **common,
                "run_id": "t",
                "role": "teacher",
                "step": 0,
                "correct": bool(t_ok[i]),
                "p_pred": float(rng.random()),
            }
        )
        student.append(
            {
                **common,
                "run_id": "s",
                "role": "student",
                "step": 100,
                "correct": bool(s_ok[i]),
                "p_pred": float(rng.random()),
                "kl": float(kl[i]),
            }
        )
    return teacher, student


def _report_times(teacher: list[dict], student: list[dict], repeats: int) -> tuple[float, float, int]:
    """(report ms, plotly one-figure write_html ms, report bytes) on a temporary run store holding the rows."""
    import tempfile

    from kd_analysis.error_analysis.report import write_report
    from kd_analysis.plots.errors import matrix_figure
    from kd_analysis.runs import RunStore

    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "runs")
        run = store.create("train", {"data": "bench", "name": "bench"}, run_id="bench", state="finished")
        with open(run.path / "predictions.jsonl", "w", encoding="utf-8") as fh:
            for row in teacher + student:
                fh.write(json.dumps({**row, "run_id": "bench"}) + "\n")
        pins = [str(i) for i in range(20)]
        out = Path(tmp) / "report.html"
        ms = median_ms(lambda: write_report(store, "bench", out, pins=pins), repeats=repeats)
        fig = matrix_figure({"both_right": 1, "teacher_only": 2, "student_only": 3, "both_wrong": 4})
        base = median_ms(lambda: fig.write_html(Path(tmp) / "one.html", include_plotlyjs=True), repeats=repeats)
        return ms, base, out.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    teacher, student = synthetic_rows(args.rows)
    frame = join_roles({"teacher": teacher, "student": student})
    parsed = parse_filter(EXPR, frame.columns)

    ours, theirs = parsed(frame), frame.query(EXPR).index
    assert frame.index[ours.to_numpy()].equals(theirs), "the safe filter and pandas' query disagree"

    r = args.repeats
    times = {
        "pandas frame.query (baseline)": median_ms(lambda: frame.query(EXPR), repeats=r),
        "pandas frame.query + sort by kl": median_ms(lambda: frame.query(EXPR).sort_values("kl"), repeats=r),
        "parse_filter only": median_ms(lambda: parse_filter(EXPR, frame.columns), repeats=r),
        "apply a parsed filter": median_ms(lambda: frame[parsed(frame).to_numpy()], repeats=r),
        "parse_filter + apply": median_ms(lambda: frame[parse_filter(EXPR)(frame).to_numpy()], repeats=r),
        "parse_filter + apply + sort by kl": median_ms(
            lambda: frame[parse_filter(EXPR)(frame).to_numpy()].sort_values("kl"), repeats=r
        ),
        "join_roles (records → joined frame)": median_ms(
            lambda: join_roles({"teacher": teacher, "student": student}), repeats=max(3, r // 4)
        ),
        "disagreement (from records)": median_ms(lambda: disagreement(teacher, student), repeats=max(3, r // 4)),
        "find_slices (default features + topic)": median_ms(
            lambda: find_slices(frame, columns=["topic"]), repeats=max(3, r // 4)
        ),
    }
    report_ms, plotly_ms, size = _report_times(teacher, student, max(3, r // 5))
    times["HTML report (10k rows, 20 pins; from the run store)"] = report_ms
    times["plotly write_html of one figure (report baseline)"] = plotly_ms
    base = times["pandas frame.query (baseline)"]
    rows = [{"rows": args.rows, "operation": k, "ms": v, "× query": v / base} for k, v in times.items()]
    findings = find_slices(frame, columns=["topic"])
    print(
        f"cpu: {platform.processor() or platform.machine()}, pandas {pd.__version__}, numpy {np.__version__}, "
        f"{len(frame)} joined rows, {int(ours.sum())} selected, {len(findings)} slices kept"
    )
    print(f"filter: {EXPR}")
    print(markdown_table(rows, ["rows", "operation", "ms", "× query"]))
    print(f"report: {size / 1e6:.1f} MB, {report_ms / plotly_ms:.1f}× plotly's one-figure write_html")
    print(
        f"top slice: {findings[0].name} (n={findings[0].n}, gap {findings[0].gap:.3f}, "
        f"adjusted p {findings[0].adjusted_p:.2g})"
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"pandas": pd.__version__, "expr": EXPR, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
