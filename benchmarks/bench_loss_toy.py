"""Loss explorer toy: how long a slider change waits for the fits, the new fit against the old one in the same run.

A slider change on the toy calls `fit_toy(ToyConfig(tau, eps, alpha))` once for new values (the page caches it by
its inputs). The baseline is the old fit, 200 Adam steps per loss at lr 0.1 (`method="adam"`, still available);
the new fit is Newton's method to convergence (the default). Five slider settings, each fitted cold (a new config
every time, nothing cached), then the ratio old / new. With --page, the same five τ values are also set on the
page itself (Streamlit AppTest, cold cache) and the rerun is timed end to end.

Run: python benchmarks/bench_loss_toy.py [--page] [--json benchmarks/results/loss-toy-cpu.json]
Target: a slider change answers in under 2 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kd_analysis.loss_explorer.toy import ToyConfig, fit_toy  # noqa: E402

SETTINGS = [(0.5, 0.05, 0.1), (1.25, 0.05, 0.1), (2.0, 0.2, 0.3), (3.0, 0.01, 0.1), (5.0, 1.0, 0.9)]  # τ, ε, α


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_fits() -> list[dict]:
    fit_toy(ToyConfig(losses=("kl",)))  # imports and first-call overheads out of the way
    rows = []
    for tau, eps, alpha in SETTINGS:
        old = _time(partial(fit_toy, ToyConfig(tau=tau, eps=eps, alpha=alpha, method="adam", steps=200, lr=0.1)))
        new = _time(partial(fit_toy, ToyConfig(tau=tau, eps=eps, alpha=alpha)))
        rows.append({"tau": tau, "eps": eps, "alpha": alpha, "old_s": old, "new_s": new, "speedup": old / new})
    return rows


def bench_page() -> list[dict]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    start = time.perf_counter()
    at.switch_page("pages/loss_explorer.py").run()
    rows = [{"action": "open the page (toy view)", "s": time.perf_counter() - start}]
    for tau in (0.75, 1.5, 2.25, 3.5, 4.75):  # values the page has not fitted yet: cold cache
        slider = next(s for s in at.slider if s.label == "Temperature τ")
        start = time.perf_counter()
        slider.set_value(tau).run()
        rows.append({"action": f"toy slider τ = {tau}", "s": time.perf_counter() - start})
    assert not at.exception, [e.value for e in at.exception]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--page", action="store_true", help="also time the page's rerun on a slider change")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    fits = bench_fits()
    print(f"toy fit per slider setting, cold, {torch.get_num_threads()} torch threads, {platform.processor() or ''}")
    print("| τ | ε | α | old: 200 Adam steps (s) | new: Newton (s) | old / new |")
    print("|---|---|---|---|---|---|")
    for r in fits:
        print(
            f"| {r['tau']:g} | {r['eps']:g} | {r['alpha']:g} | {r['old_s']:.3f} | {r['new_s']:.3f} | "
            f"{r['speedup']:.1f}× |"
        )
    print(
        f"median: old {statistics.median(r['old_s'] for r in fits):.3f} s, new "
        f"{statistics.median(r['new_s'] for r in fits):.3f} s, worst new {max(r['new_s'] for r in fits):.3f} s"
    )
    out = {
        "platform": platform.platform(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "fits": fits,
    }
    if args.page:
        page = bench_page()
        print("\n| page action | seconds |\n|---|---|")
        for r in page:
            print(f"| {r['action']} | {r['s']:.2f} |")
        out["page"] = page
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
