"""A model's task against a data set's kind: one sentence before anything runs, on the sidebar of every page."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from kd_analysis.data.example import Example
from kd_analysis.data.fit import data_kinds, task_fit
from kd_analysis.data.sources import load_dataset

ROOT = Path(__file__).resolve().parents[2]
MC = [Example(f"m{i}", "Which is a fruit?", choices=["apple", "chair"], label=0) for i in range(3)]
LABELS = [Example(f"c{i}", "great film", label=1) for i in range(3)]
GEN = [Example(f"g{i}", "2 + 2?", answer="4", solution="2 + 2 = 4") for i in range(3)]


def test_each_mismatch_is_named_with_what_to_change():
    assert data_kinds(MC + LABELS) == {"multiple_choice": 3, "classification": 3}
    assert task_fit("multiple_choice", MC, "demo:mcq") is None
    msg = task_fit("multiple_choice", LABELS, "demo:sentiment")
    assert "demo:sentiment holds labelled texts" in msg and "demo:mcq" in msg and "Task: classification" in msg
    assert "without answer choices" in task_fit("multiple_choice", MC + LABELS[:1])  # one example without choices
    assert "causal_lm" in task_fit("classification", GEN, "arith")
    assert "Set Task to multiple_choice" in task_fit("classification", MC)
    assert task_fit("classification", LABELS) is None
    for task in ("causal_lm", "seq2seq", None):  # language models score choices and generate: every kind fits
        assert all(task_fit(task, data) is None for data in (MC, LABELS, GEN))
    assert task_fit("multiple_choice", []) is None


def test_the_demo_sets_fit_their_teachers():
    assert task_fit("multiple_choice", load_dataset("demo:mcq").examples) is None
    assert task_fit("classification", load_dataset("demo:sentiment").examples) is None
    assert task_fit("causal_lm", load_dataset("demo:arithmetic").examples) is None
    assert task_fit("multiple_choice", load_dataset("demo:sentiment").examples) is not None


def test_sidebar_warns_on_every_page_when_the_data_does_not_fit(run_root):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.query_params["data"] = "demo:sentiment"  # the default teacher (MiniLM, multiple choice) on sentiment
    at.run()
    assert not at.exception
    assert any(
        "multiple-choice model and demo\\:sentiment holds labelled texts" in w.value for w in at.sidebar.warning
    ), [w.value for w in at.sidebar.warning]
    at.switch_page("pages/compare_runs.py").run()
    assert any("multiple-choice model" in w.value for w in at.sidebar.warning)
    at.sidebar.selectbox[-1].select("demo:mcq").run()  # a data set with choices: the warning goes
    assert not any("multiple-choice model" in w.value for w in at.sidebar.warning)
