"""The Error analysis page on a 10,000-example run: server-side time of each interaction, through AppTest.

A temporary run store holds one run whose teacher and student records are the synthetic rows of bench_errors.py.
Times the first open, filter changes, a sort change and "Next", against a rerun with nothing changed (the
baseline, measured in the same session). The browser's drawing is not included (see bench_server.py for that).

Run: python benchmarks/bench_error_page.py [--rows 10000] [--json benchmarks/results/error-page-cpu.json]
Target: a 10,000-row table filters and sorts without lag (under 1 s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_errors import synthetic_rows  # noqa: E402
from timing import markdown_table  # noqa: E402


def _store(rows: int) -> str:
    from kd_analysis.runs import RunStore

    root = tempfile.mkdtemp(prefix="kd-bench-page-")
    store = RunStore(root)
    teacher, student = synthetic_rows(rows)
    run = store.create("train", {"data": "bench", "name": "bench"}, run_id="bench", state="finished")
    with open(run.path / "predictions.jsonl", "w", encoding="utf-8") as fh:
        for r in teacher + student:
            pred = r["gold"] if r["correct"] else (r["gold"] + 1) % 4
            fh.write(json.dumps({**r, "run_id": "bench", "choices": ["a", "b", "c", "d"], "prediction": pred}) + "\n")
    return root


def _timed(action) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    os.environ["KD_LENS_RUNS"] = _store(args.rows)
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.run()
    first = _timed(lambda: at.switch_page("pages/error_analysis.py").run())
    assert not at.exception, [e.value for e in at.exception]

    def median(action) -> float:
        return statistics.median(_timed(action) for _ in range(args.repeats))

    exprs = iter(["kl > 0.5 and text_tokens < 100", "kl > 2", "gold in (1, 2)", "text_tokens > 300", ""] * 10)
    flips = iter([False, True] * 10 * args.repeats)
    times = {
        "rerun, nothing changed (baseline)": median(lambda: at.run()),
        "change the filter": median(lambda: at.text_input(key="ea_filter").input(next(exprs)).run()),
        "change the sort order": median(lambda: at.toggle(key="ea_desc").set_value(next(flips)).run()),
        "next example": median(lambda: at.button(key="ea_next").click().run()),
        "open a matrix cell": median(lambda: at.button(key="ea_cell_teacher_only").click().run()),
    }
    assert not at.exception, [e.value for e in at.exception]
    base = times["rerun, nothing changed (baseline)"]
    rows = [{"rows": args.rows, "interaction": "first open", "ms": first, "× rerun": first / base}]
    rows += [{"rows": args.rows, "interaction": k, "ms": v, "× rerun": v / base} for k, v in times.items()]
    print(markdown_table(rows, ["rows", "interaction", "ms", "× rerun"]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"rows": rows}, indent=2))


if __name__ == "__main__":
    main()
