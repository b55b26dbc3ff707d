"""Models & data › Inside the pair opens the shipped inside job at once: each student beside the teacher, before
and after training, without computing anything."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_inside_job_opens_without_computing():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    at.switch_page("pages/models_and_data.py").run()
    assert not at.exception, [e.value for e in at.exception]
    picker = next(s for s in at.selectbox if s.label == "Saved comparisons")
    assert picker.value == "reference-inside-minilm-mc"
    labels = [m.value for m in at.markdown]
    assert any("before training" in v for v in labels) and any("CE only" in v for v in labels)  # markdown-escaped
    assert any("Heads: mean similarity" in c.value for c in at.caption)


def test_error_analysis_reopens_an_examples_saved_inside_view(error_store):
    """An example's inside view, once computed, opens from the run's annotations without loading any model."""
    from kd_analysis.inside.example import save_example_inside
    from tests.helpers.error_runs import RUN

    rows = [{"layer": i, "depth": i / 2, "gold_prob": 0.2 + 0.3 * i, "gold_rank": 1, "top": [["apple", 0.5]], "teacher_layer": i, "kl_from_teacher": 0.2 * i} for i in range(3)]  # fmt: skip
    save_example_inside(error_store, RUN, {"example_id": "ex-05", "teacher": rows, "student": rows, "departs_at": 1, "falls_behind_at": None, "depart_nats": 0.1, "heads_least_alike": [], "heads_note": None})  # fmt: skip
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    at.query_params["run"], at.query_params["example"] = RUN, "ex-05"
    at.switch_page("pages/error_analysis.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("departs from the teacher" in m.value for m in at.markdown)
    assert any("student layer" in d.value.columns for d in at.dataframe)
