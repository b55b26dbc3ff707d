"""Load and soak: N concurrent browser tabs on the real Streamlit server, page time against the single-tab time.

Starts `streamlit run app.py` on a free local port with $KD_LENS_RUNS on a temporary copy of the shipped
reference runs (nothing in the repository changes), then drives N headless Chromium tabs (one browser, one
context per tab, all driven concurrently with asyncio Playwright) through the Loss explorer and the Saliency
rationales pages. Each tab loads every page by URL (a fresh Streamlit session each time, as a new user would)
and starts at a different page, so both pages are being computed at the same moment. A page counts as shown
when its marker text and main element are visible, its last element is in the page and Streamlit's "running"
indicator is gone. First the home page and then each page are opened once, so the server imports and loads its
models ("cold (first visits)"); then N = 1 (median of --single-repeats runs) gives the single-tab time that
every N is compared with.

Per N and page: median and max time, max / single-tab time, error boxes (exception boxes and st.error alerts),
failed loads (load errors, timeouts), page JavaScript errors, and the peak RSS of the server's process tree
(sampled every 0.2 s); per N the CPU seconds of the server and of the browser. The browser runs on the same
machine, so on few cores its CPU competes with the server's. One screenshot per page from the largest N goes
to benchmarks/results/ (a failed page's screenshot too).

Run: python benchmarks/bench_server.py [--tabs 1,5,10] [--pages loss,saliency] [--shared-context]
     [--json benchmarks/results/server-cpu.json]
Goal: at 10 tabs no error box and no page slower than 3x its single-tab time. Exits 1 on any error
box or failed load, or when a page at the largest N is slower than --limit (3) times its single-tab time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CHROMIUM = os.environ.get("KD_LENS_CHROMIUM", "/usr/bin/chromium")
sys.path.insert(0, str(Path(__file__).resolve().parent))


@dataclass(frozen=True)
class PageSpec:
    url_path: str
    marker: str  # text that proves the page drew its main content
    element: str  # element that must be visible with it
    last: str  # text of the page's last element: the script ran to the end


PAGES = {
    # the pair view (models loaded, every loss on a batch): the page's heavy part, chosen by the link
    "loss": PageSpec(
        "loss_explorer?view=pair",
        "Balance loss weights by gradient norm",
        ".js-plotly-plot",
        "Per-example contributions",
    ),
    # before any click the page shows the newest saved job on the data set (live attributions wait for a button)
    "saliency": PageSpec("saliency_rationales", "Examples", ".js-plotly-plot", "attributions (JSONL"),
}
ERROR_BOXES = '[data-testid="stException"], [data-testid="stAlertContentError"]'
RUNNING = '[data-testid="stStatusWidget"]'
FAILED_SHOTS: Path | None = None  # where a failed page's screenshot goes (set by main)
SHARED_CONTEXT = None  # --shared-context: every tab a page of one context (one HTTP cache), else one context per tab


# ---------------------------------------------------------------- server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(runs: Path, log: Path, app_root: Path = ROOT) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "KD_LENS_RUNS": str(runs)}
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.address",
        "127.0.0.1",
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
    ]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=app_root, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.5)
    stop_server(proc)
    raise SystemExit(f"server did not start:\n{log.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class TreeSampler:
    """Peak RSS of the server's process tree, sampled in a thread; CPU seconds of that tree and of the browser
    (our other descendants: Playwright's driver and Chromium), summed per process so exited ones still count."""

    def __init__(self, server_pid: int, interval: float = 0.2) -> None:
        self.server_pid, self.interval = server_pid, interval
        self.peak_mb = 0.0
        self._cpu: dict[int, tuple[str, float]] = {}  # pid -> (tree, last CPU seconds seen)
        self._base: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _tree(pid: int) -> list:
        import psutil

        try:
            p = psutil.Process(pid)
            return [p, *p.children(recursive=True)]
        except psutil.Error:
            return []

    def sample(self) -> None:
        import psutil

        server = self._tree(self.server_pid)
        ids = {p.pid for p in server}
        browser = [p for p in self._tree(os.getpid())[1:] if p.pid not in ids]
        rss = 0
        for tree, procs in (("server", server), ("browser", browser)):
            for p in procs:
                try:
                    with p.oneshot():
                        t = p.cpu_times()
                        self._cpu[p.pid] = (tree, t.user + t.system)
                        if tree == "server":
                            rss += p.memory_info().rss
                except psutil.Error:
                    pass
        self.peak_mb = max(self.peak_mb, rss / 2**20)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def start(self) -> None:
        self.peak_mb = 0.0
        self.sample()
        self._base = {pid: cpu for pid, (_, cpu) in self._cpu.items()}
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> dict:
        """Peak server RSS (MB) and CPU seconds per tree since start()."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.sample()
        cpu = {"server": 0.0, "browser": 0.0}
        for pid, (tree, c) in self._cpu.items():
            cpu[tree] += c - self._base.get(pid, 0.0)
        return {"peak RSS MB": self.peak_mb, "server cpu s": cpu["server"], "browser cpu s": cpu["browser"]}


# ---------------------------------------------------------------- browser


async def load(
    context, url: str, name: str, timeout_s: float, shot: Path | None = None, fail_shot: Path | None = None
) -> dict:
    """Open one page in a new tab of `context`; time until content is shown and the script has finished."""
    spec = PAGES[name]
    page = await context.new_page()
    js_errors: list[str] = []
    page.on("pageerror", lambda e: js_errors.append(str(e)[:200]))
    out = {"page": name, "ok": False, "error_boxes": 0, "js_errors": 0, "failure": None, "content_s": None, "s": None}
    t0 = time.perf_counter()
    try:
        await page.goto(f"{url}/{spec.url_path}", wait_until="domcontentloaded", timeout=timeout_s * 1e3)
        await page.get_by_text(spec.marker, exact=False).first.wait_for(timeout=timeout_s * 1e3)
        await page.locator(spec.element).first.wait_for(state="visible", timeout=timeout_s * 1e3)
        out["content_s"] = time.perf_counter() - t0
        left = max(1.0, timeout_s - out["content_s"])
        # finished: the last element is in the page (or an error box replaced it) and nothing is running
        await page.wait_for_function(
            """([last, errors, running]) => !document.querySelector(running) &&
                   (document.body.textContent.includes(last) || !!document.querySelector(errors))""",
            arg=[spec.last, ERROR_BOXES, RUNNING],
            timeout=left * 1e3,
            polling=100,
        )
        out["s"] = time.perf_counter() - t0
        out["ok"] = True
    except Exception as exc:  # a timeout or a failed load: a failed navigation
        out["failure"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    try:
        out["error_boxes"] = await page.locator(ERROR_BOXES).count()
        if out["error_boxes"]:
            out["error_text"] = [t[:300] for t in await page.locator(ERROR_BOXES).all_inner_texts()]
        if shot is not None and out["ok"]:
            await page.wait_for_timeout(1000)  # let plotly finish drawing
            await page.screenshot(path=str(shot))
        if fail_shot is not None and not out["ok"]:  # what a failed page showed, for a person to look at
            await page.screenshot(path=str(fail_shot))
            out["failure_screenshot"] = str(fail_shot)
    except Exception as exc:
        out["failure"] = out["failure"] or f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    out["js_errors"] = len(js_errors)
    if js_errors:
        out["js_error_text"] = js_errors[:3]
    try:
        await page.close()
    except Exception:  # a crashed tab is already counted as failed
        pass
    return out


async def tab(browser, url: str, index: int, order: list[str], timeout_s: float, shots: dict[str, Path]) -> list[dict]:
    """One user: a fresh context (or the shared one) that loads each page in turn, starting at page `index`."""
    context = SHARED_CONTEXT or await browser.new_context(viewport={"width": 1280, "height": 900})
    results = []
    try:
        k = index % len(order)
        for j, name in enumerate(order[k:] + order[:k]):  # tab i < len(order) shoots its first page
            r = await load(
                context,
                url,
                name,
                timeout_s,
                shots.get(name) if index < len(order) and j == 0 else None,
                FAILED_SHOTS / f"server-{name}-failed-tab{index}.png" if FAILED_SHOTS else None,
            )
            r["tab"] = index
            results.append(r)
    finally:
        if context is not SHARED_CONTEXT:
            await context.close()
    return results


async def phase(browser, url: str, n: int, order: list[str], timeout_s: float, shots: dict[str, Path]) -> list[dict]:
    groups = await asyncio.gather(*(tab(browser, url, i, order, timeout_s, shots) for i in range(n)))
    return [r for g in groups for r in g]


def summarise(n: int, results: list[dict], single: dict[str, float], peak_mb: float, order: list[str]) -> list[dict]:
    rows = []
    for name in order:
        rs = [r for r in results if r["page"] == name]
        times = [r["s"] for r in rs if r["ok"]]
        med = statistics.median(times) if times else float("nan")
        mx = max(times) if times else float("nan")
        rows.append(
            {
                "tabs": n,
                "page": name,
                "loads": len(rs),
                "median s": med,
                "max s": mx,
                "max / single": mx / single[name] if name in single and times else float("nan"),
                "median content s": statistics.median([r["content_s"] for r in rs if r["content_s"]])
                if any(r["content_s"] for r in rs)
                else float("nan"),
                "error boxes": sum(r["error_boxes"] for r in rs),
                "failed": sum(1 for r in rs if not r["ok"]),
                "js errors": sum(r["js_errors"] for r in rs),
                "peak RSS MB": round(peak_mb),
            }
        )
    return rows


async def drive(args, url: str, sampler: TreeSampler, order: list[str]) -> dict:
    from playwright.async_api import async_playwright

    tabs = [int(t) for t in args.tabs.split(",")]
    shots_dir = Path(args.shots)
    shots_dir.mkdir(parents=True, exist_ok=True)
    out: dict = {"cold": {}, "phases": []}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
                "--disable-quic",
                "--disable-dev-shm-usage",
            ],
        )
        # A fresh server knows the page URLs only once app.py has run (st.navigation); a deep link before that can
        # draw the home page under a "Page not found" dialog. So the home page first, then each page once: these
        # first visits import the libraries and load the models into the server ("cold").
        context = await browser.new_context()
        t0 = time.perf_counter()
        page = await context.new_page()
        await page.goto(url, wait_until="domcontentloaded")
        await page.get_by_text("Current selection").first.wait_for(timeout=args.timeout * 1e3)
        await page.wait_for_function(f"() => !document.querySelector('{RUNNING}')", timeout=args.timeout * 1e3)
        out["cold"]["home"] = {"s": time.perf_counter() - t0}
        await context.close()
        for name in order:
            r = (await phase(browser, url, 1, [name], args.timeout, {}))[0]
            out["cold"][name] = r
        cold = [
            f"{k} {v['s']:.1f} s" if v.get("s") else f"{k} failed ({v.get('failure')})" for k, v in out["cold"].items()
        ]
        print("cold (first visits): " + " · ".join(cold), flush=True)
        if args.shared_context:
            global SHARED_CONTEXT
            SHARED_CONTEXT = await browser.new_context(viewport={"width": 1280, "height": 900})
        single: dict[str, float] = {}
        for n in tabs:
            shots = {name: shots_dir / f"server-{name}-n{n}.png" for name in order} if n == max(tabs) else {}
            repeats = args.single_repeats if n == 1 else 1
            results = []
            t0 = time.perf_counter()
            sampler.start()
            for _ in range(repeats):
                results += await phase(browser, url, n, order, args.timeout, shots)
            usage = {**sampler.stop(), "wall s": time.perf_counter() - t0}
            if n == 1:
                for name in order:
                    ok = [r["s"] for r in results if r["page"] == name and r["ok"]]
                    if ok:
                        single[name] = statistics.median(ok)
            rows = summarise(n, results, single, usage["peak RSS MB"], order)
            out["phases"].append({"tabs": n, "rows": rows, "loads": results, **usage})
            print_table(n, rows, usage)
        out["single"] = single
        await browser.close()
    return out


def print_table(n: int, rows: list[dict], cpu: dict) -> None:
    from timing import markdown_table

    print(
        f"\nN = {n} tabs · wall {cpu['wall s']:.1f} s · server CPU {cpu['server cpu s']:.1f} s · "
        f"browser CPU {cpu['browser cpu s']:.1f} s",
        flush=True,
    )
    print(
        markdown_table(
            rows,
            [
                "page",
                "loads",
                "median s",
                "max s",
                "max / single",
                "median content s",
                "error boxes",
                "failed",
                "js errors",
                "peak RSS MB",
            ],
        ),
        flush=True,
    )


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout` and kill: still stop the server (finally)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tabs", default="1,5,10", help="tab counts, in order; put 1 first (the single-tab time)")
    ap.add_argument("--pages", default="loss,saliency", help=f"of {','.join(PAGES)}")
    ap.add_argument("--single-repeats", type=int, default=3, help="N = 1 runs; the single-tab time is their median")
    ap.add_argument("--timeout", type=float, default=600, help="seconds one page may take before it counts as failed")
    ap.add_argument("--limit", type=float, default=3.0, help="max / single-tab time allowed at the largest N")
    ap.add_argument("--shots", default=str(RESULTS), help="folder for the screenshots of the largest N")
    ap.add_argument("--json", help="write the results here (e.g. benchmarks/results/server-cpu.json)")
    ap.add_argument(
        "--shared-context",
        action="store_true",
        help="all tabs in one browser context (shared HTTP cache: the app's JavaScript is fetched and "
        "compiled once, less client CPU); each page load is still its own Streamlit session",
    )
    ap.add_argument(
        "--app-root",
        default=str(ROOT),
        help="folder whose app.py is served (default: this checkout); e.g. a copy with a change to compare",
    )
    args = ap.parse_args()
    order = [p.strip() for p in args.pages.split(",") if p.strip()]
    if unknown := [p for p in order if p not in PAGES]:
        ap.error(f"unknown page(s) {unknown}; known: {list(PAGES)}")
    global FAILED_SHOTS
    FAILED_SHOTS = Path(args.shots)
    tabs = [int(t) for t in args.tabs.split(",")]
    if tabs[0] != 1:
        ap.error("--tabs must start with 1: the single-tab time is measured first")
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set KD_LENS_CHROMIUM)")

    load1, load5, load15 = os.getloadavg()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    import streamlit
    import torch

    env = {
        "app root": args.app_root,
        "shared context": args.shared_context,
        "nproc": cpus,
        "loadavg at start": [load1, load5, load15],
        "python": platform.python_version(),
        "streamlit": streamlit.__version__,
        "torch": torch.__version__,
        "torch threads": torch.get_num_threads(),
    }
    print(
        f"nproc {cpus} · load average at start {load1:.2f} {load5:.2f} {load15:.2f} · "
        f"streamlit {streamlit.__version__} · torch {torch.__version__}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="kd-lens-bench-") as tmp:
        runs = Path(tmp) / "runs"
        runs.mkdir()
        for ref in (ROOT / "cached_runs").glob("reference-*"):  # the shipped reference runs, as on a fresh clone
            if ref.is_dir() and not ref.name.endswith(".new"):
                shutil.copytree(ref, runs / ref.name)
        log = Path(tmp) / "streamlit.log"
        t0 = time.perf_counter()
        proc, url = start_server(runs, log, Path(args.app_root))
        startup = time.perf_counter() - t0
        print(f"server up in {startup:.1f} s at {url} (pid {proc.pid})", flush=True)
        sampler = TreeSampler(proc.pid)
        try:
            res = asyncio.run(drive(args, url, sampler, order))
        finally:
            stop_server(proc)
            server_log = log.read_text(errors="replace")[-4000:]
    load_end = os.getloadavg()
    env["loadavg at end"] = list(load_end)
    # the goal: no error box anywhere, no failed load, and at the largest N no page beyond limit × single-tab time
    problems = [
        f"first visit of {name} failed: {r.get('failure')}"
        for name, r in res["cold"].items()
        if name != "home" and not r.get("ok")
    ]
    for ph in res["phases"]:
        for r in ph["rows"]:
            if r["error boxes"] or r["failed"]:
                problems.append(f"N={ph['tabs']} {r['page']}: {r['error boxes']} error box(es), {r['failed']} failed")
    last = res["phases"][-1]
    for r in last["rows"]:
        if not r["max / single"] <= args.limit:
            problems.append(
                f"N={last['tabs']} {r['page']}: max {r['max s']:.1f} s = {r['max / single']:.2f}× "
                f"single-tab {res['single'].get(r['page'], float('nan')):.1f} s (limit {args.limit}×)"
            )
    print(f"\nload average at end {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")
    shots = sorted(
        str(p.relative_to(ROOT))
        for p in Path(args.shots).resolve().glob(f"server-*-n{tabs[-1]}.png")
        if ROOT in p.parents
    )
    print("screenshots:", ", ".join(shots) or "none")
    print("PASS" if not problems else "FAIL\n  " + "\n  ".join(problems))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "env": env,
                    "server startup s": startup,
                    "limit": args.limit,
                    "pass": not problems,
                    "problems": problems,
                    "screenshots": shots,
                    **res,
                    "server log tail": server_log,
                },
                indent=2,
                default=str,
            )
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
