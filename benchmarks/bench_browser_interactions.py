"""A slider change on the Loss explorer's toy, timed in headless Chromium: from the key press to the new fits on
screen, for values never computed (cold) against values computed before (cached: the baseline, same run).

The server runs on a copy of the shipped reference runs; the τ slider is moved with the keyboard (one step per
press), and the time runs until the sentences computed from the fits change and the app is idle again.

Run: python benchmarks/bench_browser_interactions.py [--presses 5] [--json benchmarks/results/browser-cpu.json]
Target: a toy slider change answers in under 2 s on 2 CPU cores, browser included.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_server import start_server, stop_server  # noqa: E402
from timing import markdown_table  # noqa: E402

IDLE = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
TABLE = "What each fit did"


def _fits_text(page) -> str:
    """The sentences computed from the fits (they change with every new τ; the table is drawn on a canvas)."""
    return page.locator('[data-testid="stMarkdownContainer"]', has_text=TABLE).first.inner_text(timeout=60_000)


def _press(page, key: str, timeout_s: float) -> float:
    before = _fits_text(page)
    start = time.perf_counter()
    page.keyboard.press(key)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        page.wait_for_timeout(50)
        try:
            if _fits_text(page) != before and page.evaluate(IDLE):
                return time.perf_counter() - start
        except Exception:
            continue
    raise SystemExit(f"no new fits within {timeout_s} s after {key}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presses", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="kd-bench-browser-"))
    runs = tmp / "runs"
    for ref in (ROOT / "cached_runs").glob("reference-*"):
        if ref.is_dir():
            shutil.copytree(
                ref,
                runs / ref.name,
                ignore=shutil.ignore_patterns("checkpoint")
                if not (ref / "checkpoint" / "adapter_config.json").exists()
                else None,
            )
    proc, url = start_server(runs, tmp / "server.log")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=os.environ.get("KD_LENS_CHROMIUM", "/usr/bin/chromium"),
                headless=True,
                args=["--no-sandbox", "--disable-gpu"],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(f"{url}/losses", wait_until="domcontentloaded")
            page.get_by_text(TABLE).first.wait_for(timeout=args.timeout * 1e3)
            page.wait_for_function(IDLE, timeout=args.timeout * 1e3)
            dialog = page.get_by_role("dialog").filter(has_text="Page not found")
            if dialog.count():
                page.keyboard.press("Escape")
            page.get_by_role("slider").first.focus()  # τ, the first slider of the toy
            cold = [_press(page, "ArrowRight", args.timeout) for _ in range(args.presses)]
            cached = [_press(page, "ArrowLeft", args.timeout) for _ in range(args.presses)]  # back over known τ
            browser.close()
    finally:
        stop_server(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    base = statistics.median(cached)
    rows = [
        {
            "change": "τ to a value computed before (cached: baseline)",
            "median s": base,
            "max s": max(cached),
            "× cached": 1.0,
        },
        {
            "change": "τ to a new value (fits computed)",
            "median s": statistics.median(cold),
            "max s": max(cold),
            "× cached": statistics.median(cold) / base,
        },
    ]
    print(markdown_table(rows, ["change", "median s", "max s", "× cached"]))
    ok = max(cold) < 2.0
    print("PASS" if ok else "FAIL: a slider change took 2 s or more")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"rows": rows, "cold_s": cold, "cached_s": cached}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
