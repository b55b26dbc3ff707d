"""Helpers shared by several test files."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]  # the repository: tests/helpers/ is two levels down


HOME = str(ROOT / "app.py")


MODELS = "pages/models_and_data.py"


TIMEOUT = 180


def open_page(path: str | None = None) -> AppTest:
    """Through app.py, as a user gets there: the router draws the sidebar, then the page."""
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT).run()
    if path:
        at.switch_page(path).run()
    return at


def open_with(teacher: Path, task: str, page: str, *, layers: int | None = None, data: Path | None = None) -> AppTest:
    """`page` with the sidebar set to a teacher (a tiny fixture checkpoint), its task, student layers and data."""
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT)
    at.session_state["_kd_teacher_source"] = str(teacher)
    at.session_state["_kd_teacher_task"] = task
    if layers is not None:
        at.session_state["_kd_student_layers"] = layers
    if data is not None:
        at.session_state["_kd_data_source"] = str(data)
    at.run()
    at.switch_page(page).run()
    return at


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


LOSS_PAGE = "pages/loss_explorer.py"


RUNS_PAGE = "pages/distillation_runs.py"


def attribute_live(at: AppTest, timeout: float = 180) -> AppTest:
    """Press the saliency page's start button and rerun until the background attributions are drawn (AppTest
    does not run fragments on a timer, so this reruns the script as the browser's polling would)."""
    import time

    start = next((b for b in at.button if b.key == "rationale_start"), None)
    if start is not None:  # else: these settings were computed before (results are shared by every session)
        start.click().run()

    def drawn() -> bool:  # the live result, not a saved job shown meanwhile
        return any(m.label == "Defined / undefined" for m in at.metric) and not any(
            "Showing the saved job" in i.value for i in at.info
        )

    deadline = time.monotonic() + timeout
    while not drawn() and time.monotonic() < deadline:
        assert not at.exception, [e.value for e in at.exception]
        assert not any("It failed" in e.value for e in at.error), [e.value for e in at.error]
        time.sleep(0.3)
        at.run()
    assert drawn(), "the live attributions never arrived"
    return at


def short_gsm8k_file(path, n=6):
    import json as _json

    path.write_text(
        "".join(
            _json.dumps(
                {
                    "question": f"Ann has {i} pens and buys 2 more. How many pens?",
                    "answer": f"Ann has {i} + 2 = {i + 2} pens.\n#### {i + 2}",
                }
            )
            + "\n"
            for i in range(n)
        )
    )
    return path
