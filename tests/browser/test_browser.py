"""The real server in headless Chromium: every page opens, shows its main content, and no exception box.

Screenshots go to test-artifacts/screenshots/ (or $KD_LENS_SCREENSHOTS) so a person can look at them.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

# One server per module: under xdist (--dist loadgroup) every browser test runs on the same worker.
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("KD_LENS_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(os.environ.get("KD_LENS_SCREENSHOTS", ROOT / "test-artifacts" / "screenshots"))
# (url path, text that proves the page drew its content, element that must be visible)
PAGES = [  # the first is a deep link: the module's first page load after its server started
    ("error_analysis", "Right/wrong matrix", ".js-plotly-plot"),
    ("", "Current selection", '[data-testid="stMetric"]'),
    ("summary", "Does distillation work?", ".js-plotly-plot"),
    ("models_and_data", "Pair check: which losses apply", '[data-testid="stDataFrame"]'),
    ("loss_explorer", "Forward KL spreads the student", ".js-plotly-plot"),
    ("distillation_runs", "New run", '[data-testid="stForm"]'),
    ("saliency_rationales", "Examples", ".js-plotly-plot"),
    ("compare_runs", "Final metrics", '[data-testid="stDataFrame"]'),
    ("priming_attention", "Teacher outputs", '[role="tablist"]'),
]

# Every wait is keyed to what the page shows, never to time alone. Its limit is one generous default, set on
# every page: the suite runs this module beside other workers on a 2-core machine, with Streamlit and Chromium
# sharing the cores, where a rerun that takes 2 s alone can take 30 s and more. A wait that runs out names its
# element (Playwright's "waiting for get_by_role(...)") and leaves a screenshot: failed-<test>-<n>.png.
WAIT_MS = int(float(os.environ.get("KD_LENS_BROWSER_WAIT_S", "240")) * 1000)

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"CI needs Debian chromium at {CHROMIUM} (apt-get install chromium)")
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    runs = tmp_path_factory.mktemp("runs")
    for ref in (ROOT / "cached_runs").glob("reference-*"):  # the shipped reference runs, as on a fresh clone
        if ref.is_dir() and not ref.name.endswith(".new"):
            shutil.copytree(ref, runs / ref.name)
    env = {**os.environ, "KD_LENS_RUNS": str(runs)}
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [
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
            ],
            cwd=ROOT,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"server did not start: {log.read_text()[-2000:]}")
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


class _Browser:
    """The browser with every page it opens on the suite's limit (WAIT_MS) and remembered for a failure shot."""

    def __init__(self, browser):
        self._browser = browser
        self.pages: list = []

    def _track(self, page):
        page.set_default_timeout(WAIT_MS)
        self.pages.append(page)
        return page

    def new_page(self, **kw):
        return self._track(self._browser.new_page(**kw))

    def new_context(self, **kw):
        context = self._browser.new_context(**kw)
        context.set_default_timeout(WAIT_MS)
        context.on("page", lambda page: self.pages.append(page))
        return context


@pytest.fixture(scope="module")
def _chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
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
            ],
        )
        yield b
        b.close()


@pytest.fixture
def browser(_chromium, request):
    """Per test: pages on the suite's wait limit; when the test fails, a screenshot of each page still open."""
    wrapped = _Browser(_chromium)
    yield wrapped
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        SHOTS.mkdir(parents=True, exist_ok=True)
        for i, page in enumerate(p for p in wrapped.pages if not p.is_closed()):
            try:
                page.screenshot(path=str(SHOTS / f"failed-{request.node.name}-{i}.png"), full_page=True)
            except Exception:  # a crashed page: the failure itself says more
                pass


@pytest.mark.parametrize("path,marker,element", PAGES)
def test_page_in_browser(server, browser, path, marker, element):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server}/{path}", wait_until="domcontentloaded")
    page.get_by_text(marker, exact=False).first.wait_for()
    page.locator(element).first.wait_for(state="visible")
    _idle(page)
    _no_page_not_found(page)
    page.wait_for_timeout(1000)
    name = path or "home"
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0, "an exception box is shown"
    assert not errors, errors
    page.close()


# Streamlit marks the app root with the script's state; a click sent while a script run draws the page can be
# dropped when that run redraws the widget, so every click waits for "notRunning" first.
_IDLE = "() => document.querySelector('[data-testid=\"stApp\"]')?.dataset.testScriptState === 'notRunning'"


def _idle(page) -> None:
    """Wait until no script run is in progress (what the page shows, not a pause)."""
    page.wait_for_function(_IDLE)


def _click(page, locator) -> None:
    _idle(page)
    locator.click()


def _shoot(page, name: str, pause_ms: int = 1000) -> None:
    """Let the page settle (no rerun running, then a pause for charts to paint), save a screenshot for a person to
    look at, and fail on any exception box."""
    _idle(page)
    page.wait_for_timeout(pause_ms)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0, f"an exception box is shown on {name}"


def _no_page_not_found(page) -> None:
    """Streamlit knows the files of pages/ by name before app.py has run; a page whose path was not its file's
    name showed a "Page not found" dialog over itself when a fresh server's first request was a deep link."""
    assert page.get_by_role("dialog").filter(has_text="Page not found").count() == 0, "Page not found shown"


def _open_tab(page, tab: str, marker: str) -> None:
    _click(page, page.get_by_role("tab", name=tab))
    page.get_by_text(marker).first.wait_for()


def test_models_page_tabs_in_browser(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(f"{server}/models_and_data", wait_until="domcontentloaded")
    _open_tab(page, "Load a model", "Before loading")
    _shoot(page, "models_load")
    _open_tab(page, "Data", "Current data set")
    _shoot(page, "models_data")
    page.close()


def _open(browser, url: str, marker: str, height: int = 1300):
    """A new tab on `url`, once `marker` is drawn (and Streamlit's stray "Page not found" dialog closed)."""
    page = browser.new_page(viewport={"width": 1400, "height": height})
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_text(marker).first.wait_for()
    _no_page_not_found(page)
    return page


PAIR = "Your teacher and student"


def _open_view(page, label: str, marker: str) -> None:
    _click(page, page.get_by_role("radio", name=label, exact=True))  # a segmented control: radio buttons
    page.get_by_text(marker).first.wait_for()


def test_loss_explorer_views_in_browser(server, browser):
    page = _open(browser, f"{server}/loss_explorer", "Forward KL spreads the student", 1100)
    assert page.get_by_text("Balance loss weights by gradient norm").count() == 0  # the pair has not run
    _open_view(page, PAIR, "Balance loss weights by gradient norm")
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 4")
    page.get_by_text("A good plan puts its mass on the diagonal").first.wait_for()
    assert "view=pair" in page.url
    _shoot(page, "losses_pair", 1500)
    _open_view(page, "Toy: one bump vs a multimodal teacher", "What each fit did")
    _shoot(page, "losses_toy", 1500)
    page.close()


def test_a_link_opens_the_pair_view(server, browser):
    page = _open(browser, f"{server}/loss_explorer?view=pair", "Balance loss weights by gradient norm", 1100)
    assert page.get_by_role("radio", name=PAIR, exact=True).get_attribute("aria-checked") == "true"
    page.close()


def test_start_a_demo_run_watch_it_finish_and_compare(server, browser):
    """The user journey of the training issue, in the browser, on the shipped reference teacher."""
    page = _open(browser, f"{server}/distillation_runs", "New run", 1300)
    page.get_by_label("steps", exact=True).fill("12")
    page.get_by_label("eval every", exact=True).fill("6")
    _click(page, page.get_by_role("button", name="Start run"))
    page.get_by_text("Started", exact=False).first.wait_for()
    page.get_by_text(re.compile(r"· running|· queued")).first.wait_for()
    _shoot(page, "runs_live", 3000)
    page.get_by_text(re.compile(r"· finished")).first.wait_for(timeout=max(300_000, WAIT_MS))
    _shoot(page, "runs_finished", 2500)
    page.goto(f"{server}/compare_runs", wait_until="domcontentloaded")
    page.get_by_text("Config differences").wait_for()
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 2")
    _shoot(page, "compare", 1500)
    page.close()


def test_saved_rationale_jobs_reopen_in_browser(server, browser):
    """The shipped SmolLM2 rationale job opens from the page without recomputing; agreement table shown."""
    page = browser.new_page(viewport={"width": 1400, "height": 1300})
    page.goto(f"{server}/saliency_rationales", wait_until="domcontentloaded")
    page.get_by_text("Examples").first.wait_for()
    _idle(page)
    _no_page_not_found(page)
    _click(page, page.locator("summary", has_text="Whole data set in the background"))
    page.get_by_text("Teacher–student agreement across saved jobs").wait_for()
    row = page.locator('[data-testid="stHorizontalBlock"]').filter(has_text="reference-smollm2-rationales")
    _click(page, row.get_by_role("button", name="Open"))
    page.get_by_text("Showing the saved job reference-smollm2-rationales").wait_for()
    _idle(page)
    _shoot(page, "rationales_smollm2_job", 2000)
    page.close()


def test_saliency_live_attributions_start_show_progress_cancel_and_follow_the_data(server, browser):
    """Nothing recomputes by itself; the button starts the work with real progress; Cancel stops it;
    switching the data set drops the saved job of the old one."""
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(f"{server}/saliency_rationales", wait_until="domcontentloaded")
    page.get_by_text("Showing the saved job").first.wait_for()  # shown at once, nothing computed
    _no_page_not_found(page)
    examples = page.get_by_label("examples", exact=True)
    examples.fill("200")
    examples.press("Enter")
    start = page.get_by_role("button", name="Attribute 200 examples (400 attributions)")
    start.wait_for()
    _click(page, start)
    page.get_by_text(re.compile(r"example \d+/200 · \d+/400 · \d+ s so far")).first.wait_for()
    _shoot(page, "rationales_live_progress", 500)
    _click(page, page.get_by_role("button", name="Cancel"))
    page.get_by_text(re.compile(r"Cancelled after \d+ s \(.*example \d+/200")).wait_for()
    page.get_by_role("button", name="Attribute 200 examples (400 attributions)").wait_for()
    _shoot(page, "rationales_cancelled", 500)
    _click(page, page.get_by_label("Data set"))  # the sidebar's data set: the saved MC job must go
    _click(page, page.get_by_role("option", name="Short sentiment sentences (demo)"))
    page.get_by_text("Live examples: the first 200 examples of demo:sentiment").wait_for()
    _idle(page)
    # the old run's elements stay on screen (stale) until the new run ends: wait for them to go, never forever
    page.get_by_text("reference-minilm-rationales-after-multitask (262 examples)").wait_for(state="detached")
    assert page.get_by_text("Showing the saved job").count() == 0
    _shoot(page, "rationales_other_data", 500)
    page.close()


DEEP_LINKS = [  # (url, text proving the linked view, not the default one, was opened)
    ("compare_runs?runs=reference-minilm-2l-rkl,reference-minilm-2l-js", "ce + rkl"),
    (
        "saliency_rationales?job=reference-minilm-rationales-before&example=use-175",
        "reference-minilm-rationales-before (262",
    ),
    ("error_analysis?run=reference-minilm-2l-kl&cell=teacher_only&example=cat-66", "Example cat-66"),
    ("priming_attention?outputs_job=reference-smollm2-teacher-outputs", "Saved teacher outputs"),
    ("loss_explorer?view=pair", "Balance loss weights by gradient norm"),
    ("?data=demo:arithmetic&layers=3", "teacher with 3 layers kept"),  # Home: the sidebar's selection
]


@pytest.mark.parametrize("link,marker", DEEP_LINKS)
def test_a_copied_link_reopens_the_view_in_a_fresh_browser(server, browser, link, marker):
    """Every page keeps its main selection in the URL; a fresh browser context (no session, no cookies)
    opening the link sees the same view."""
    context = browser.new_context(viewport={"width": 1400, "height": 1300})
    page = context.new_page()
    page.goto(f"{server}/{link}", wait_until="domcontentloaded")
    page.get_by_text(marker, exact=False).first.wait_for()
    _no_page_not_found(page)
    _idle(page)
    for key, value in (pair.split("=") for pair in link.split("?", 1)[1].split("&")):
        shown = urllib.parse.unquote(page.url)
        assert f"{key}=" in shown and value.split(",")[0] in shown, shown  # the page kept its link
    _shoot(page, "link_" + (link.split("?")[0] or "home"), 800)
    context.close()


def test_summary_page_and_its_export_open_offline(server, browser, tmp_path):
    """The story page draws its five sections from the shipped runs, and its export is one file that
    opens with no network and draws its charts."""
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server}/summary", wait_until="domcontentloaded")
    page.get_by_text("5. Priming the teacher").first.wait_for()
    _no_page_not_found(page)
    _settled(page)
    page.get_by_text(re.compile(r"KD \(.*\) beats CE only by")).first.wait_for()
    _shoot(page, "summary", 1500)
    with page.expect_download() as download:
        _click(page, page.get_by_role("button", name="Export this story (HTML, works offline)"))
    out = tmp_path / "story.html"
    download.value.save_as(out)
    assert not errors, errors
    page.close()
    offline = browser.new_context(viewport={"width": 1200, "height": 1400})
    offline.route(
        "**/*", lambda route: route.abort() if not route.request.url.startswith("file:") else route.continue_()
    )
    story = offline.new_page()
    story.on("pageerror", lambda e: errors.append(str(e)))
    story.goto(out.as_uri())
    story.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 4")
    assert story.locator("h2").count() == 5 and not errors, errors
    _charts_draw_in_colour(story)
    story.screenshot(path=str(SHOTS / "summary_export.png"), full_page=True)
    offline.close()


def _settled(page) -> None:
    _idle(page)


def test_journey_every_page_follows_a_non_default_selection(server, browser):
    """One session walks every page through the menu after picking the sentiment demo in the sidebar
    (not the default MC set); each page shows that it uses it, or says why it cannot, and one non-default choice
    per page takes effect. No exception box, no script error."""
    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server, wait_until="domcontentloaded")
    page.get_by_text("Current selection").first.wait_for()
    _settled(page)
    _click(page, page.get_by_label("Data set"))
    _click(page, page.get_by_role("option", name="Short sentiment sentences (demo)"))
    page.get_by_text("on demo:sentiment").first.wait_for()
    _settled(page)
    assert "data=demo%3Asentiment" in page.url or "data=demo:sentiment" in page.url
    # the MC teacher cannot score sentiment sentences: the sidebar says so on every page, with what to change
    page.get_by_text("multiple-choice model and demo:sentiment holds labelled texts").first.wait_for()
    _shoot(page, "journey_home", 500)

    def visit(title: str, marker: str) -> None:
        _click(page, page.locator('[data-testid="stSidebarNav"] a', has_text=title).first)
        page.get_by_text(marker, exact=False).first.wait_for()
        _settled(page)

    visit("Models & data", "Pair check: which losses apply")
    page.get_by_text("on demo:sentiment").first.wait_for()  # the selection line
    _shoot(page, "journey_models", 500)
    visit("Loss explorer", "Forward KL spreads the student")
    # the pair view runs the sidebar's pair on the sidebar's data: the MC teacher cannot score sentiment sentences,
    # and the page says so in one line
    _open_view(page, PAIR, "multiple-choice models need a data set with choices")
    _settled(page)
    _shoot(page, "journey_losses_pair", 800)
    visit("Saliency rationales", "Live examples: the first 20 examples of demo:sentiment")
    assert page.get_by_text("Showing the saved job").count() == 0  # the saved jobs are all on the MC set
    _shoot(page, "journey_rationales", 500)
    visit("Priming & attention", "its data set (demo:sentiment) is not in GSM8K's format")
    assert page.get_by_text("a multiple choice model) is not a causal language model").count() == 1
    _shoot(page, "journey_priming", 500)
    visit("Distillation runs", "data: demo:sentiment (change them in the sidebar)")
    _shoot(page, "journey_runs", 500)
    visit("Compare runs", "Final metrics")
    _click(page, page.get_by_text("priming: one student per strategy"))
    page.wait_for_function("() => decodeURIComponent(location.search).includes('reference-smollm2-priming-')")
    _settled(page)
    _shoot(page, "journey_compare", 500)
    visit("Error analysis", "Right/wrong matrix")
    page.get_by_text("· demo:sentiment").first.wait_for()  # a run on the sidebar's data set
    page.wait_for_function("() => decodeURIComponent(location.search).includes('run=reference-minilm-3l-sentiment')")
    _shoot(page, "journey_errors", 500)
    assert not errors, errors
    page.close()


def _visible_plots(page, n: int) -> None:
    page.wait_for_function(
        f"() => [...document.querySelectorAll('.js-plotly-plot')].filter(e => e.offsetParent !== null).length >= {n}"
    )


def test_priming_journey_in_browser(server, browser):
    """What a fresh clone shows without a click: SmolLM2's outputs under each strategy, the students' accuracy
    per strategy, head maps; then one head of the teacher under chain-of-thought."""
    page = _open(browser, f"{server}/priming_attention", "Saved teacher outputs", 1400)
    page.get_by_text("Question:").first.wait_for()  # an example across strategies
    page.locator('[data-testid="stDataFrame"]').nth(1).wait_for(state="visible")  # summary, example
    _shoot(page, "priming_outputs", 1500)
    _open_tab(page, "Student runs", "One LoRA student per strategy")
    _visible_plots(page, 1)
    for name in ("none", "ai_to_ai", "cot"):  # a bar per shipped strategy
        assert page.locator(".js-plotly-plot .xtick text", has_text=name).count() >= 1, name
    _shoot(page, "priming_runs", 1500)
    _open_tab(page, "Attention heads", "Per layer × head statistics")
    _visible_plots(page, 3)  # layer profile, head grid, difference map
    _shoot(page, "priming_heads", 1500)
    _click(page, page.get_by_text("Drill into one head"))
    page.get_by_text("bertviz view").first.wait_for()
    _idle(page)
    heatmap = page.locator(".js-plotly-plot", has_text="head 0").last
    heatmap.scroll_into_view_if_needed()
    _shoot(page, "priming_drill", 1500)
    page.close()


def test_offline_bertviz_view_draws_without_network(browser, tmp_path, tiny_dir):
    from kd_analysis.attention.views import attention_view, example_attentions
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.specs import ModelSpec

    lm = load_model(ModelSpec(str(tiny_dir / "llama")))
    att, tokens = example_attentions(lm, "Ann has 3 pens and buys 2 more.")
    html, _ = attention_view(att, tokens, kind="head")
    f = tmp_path / "view.html"
    f.write_text(f"<!doctype html><meta charset='utf-8'><body>{html}</body>", encoding="utf-8")
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f.as_uri())
    page.locator("svg text").first.wait_for()
    assert page.locator("svg text").count() >= len(tokens)  # both token columns drawn
    assert [r for r in requests if not r.startswith("file:")] == []
    page.screenshot(path=str(SHOTS / "bertviz_offline.png"))
    page.close()


def _open_offline(browser, path: Path):
    """Open a local file with every network request refused; returns (page, requests tried, console errors)."""
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    requests: list[str] = []
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def guard(route):
        requests.append(route.request.url)
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            route.abort()

    page.route("**/*", guard)
    page.goto(path.as_uri(), wait_until="load")
    return page, requests, errors


def _charts_draw_in_colour(page) -> None:
    """Every chart on the page, as pixels: mostly not black, and with some colour. A figure exported with
    Streamlit's template (placeholder colours #000001…) draws solid black, which tags alone do not show."""
    import io

    from PIL import Image

    charts = page.locator(".js-plotly-plot")
    assert charts.count() > 0
    for i in range(charts.count()):
        chart = charts.nth(i)
        chart.scroll_into_view_if_needed()
        pixels = list(Image.open(io.BytesIO(chart.screenshot())).convert("RGB").getdata())
        dark = sum(max(p) < 60 for p in pixels) / len(pixels)
        coloured = sum(max(p) - min(p) > 60 for p in pixels) / len(pixels)
        assert dark < 0.2 and coloured > 0.002, f"chart {i}: {dark:.0%} black, {coloured:.2%} coloured"


def test_error_report_opens_offline_without_console_errors(browser, tmp_path):
    """The report of the demo's default run, with pinned examples (attributions shipped for them), opens with the
    network cut off: every figure draws, nothing is fetched, no console error."""
    from kd_analysis.error_analysis.report import write_report
    from kd_analysis.runs import RunStore

    runs = tmp_path / "runs"
    for name in ("reference-minilm-2l-kl", "reference-smollm2-priming-gold"):
        shutil.copytree(ROOT / "cached_runs" / name, runs / name, ignore=shutil.ignore_patterns("checkpoint"))
    store = RunStore(runs)
    for run_id, pins, shot in (
        ("reference-minilm-2l-kl", ["cat-66", "cat-50", "ant-113"], "report_mc"),
        ("reference-smollm2-priming-gold", ["arith-54", "arith-240"], "report_generation"),
    ):
        out = tmp_path / f"{shot}.html"
        result = write_report(store, run_id, out, pins=pins)
        assert result.explained == pins  # the shipped explanations are in the report
        page, requests, errors = _open_offline(browser, out)
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 3")
        page.wait_for_timeout(500)
        assert [r for r in requests if not r.startswith("file:")] == [], requests
        assert errors == [], errors
        assert page.get_by_text("Pinned examples").count() == 1
        page.screenshot(path=str(SHOTS / f"{shot}.png"), full_page=True)
        page.close()


def test_error_analysis_journey_in_browser(server, browser, tmp_path):
    """Open the teacher-only cell of the demo's KL student, read a shipped explanation, pin it, build the report
    and download it."""
    page = browser.new_page(viewport={"width": 1400, "height": 1400}, accept_downloads=True)
    page.goto(f"{server}/error_analysis", wait_until="domcontentloaded")
    page.get_by_text("Right/wrong matrix").first.wait_for()
    _no_page_not_found(page)
    _click(page, page.get_by_role("button", name=re.compile(r"only teacher right: 12")))
    page.get_by_text("12 of 52 examples").wait_for()
    page.get_by_text(re.compile(r"explains '")).first.wait_for()  # shipped attributions, no job
    _shoot(page, "errors_teacher_only", 1500)
    _click(page, page.get_by_role("button", name="Pin", exact=True))
    page.get_by_role("button", name="Unpin").wait_for()
    _click(page, page.get_by_role("button", name="Build the report"))
    link = page.get_by_role("button", name="Download the report (HTML)")
    link.wait_for()
    page.get_by_text("1 pinned (1 with attributions)").wait_for()
    with page.expect_download() as info:
        _click(page, link)
    saved = tmp_path / "downloaded.html"
    info.value.save_as(saved)
    assert saved.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    report, requests, errors = _open_offline(browser, saved)  # the file the page built, as its reader opens it
    report.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 2")
    _charts_draw_in_colour(report)
    report.screenshot(path=str(SHOTS / "errors_report_from_page.png"), full_page=True)
    assert errors == [] and [r for r in requests if not r.startswith("file:")] == [], (errors, requests)
    report.close()
    assert "run=reference-minilm-2l-kl" in page.url and "cell=teacher_only" in page.url  # a copied link reopens it
    _shoot(page, "errors_report_built", 1000)
    page.close()


def test_chromium_is_the_system_one():
    assert shutil.which("chromium") or Path(CHROMIUM).exists()
