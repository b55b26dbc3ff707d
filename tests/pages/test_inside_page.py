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
