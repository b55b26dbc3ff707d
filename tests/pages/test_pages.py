"""Each page through Streamlit's AppTest (no browser): renders, shows its content, handles bad input."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app_ui.safe_text import md  # data-derived text on the page is Markdown-escaped
from tests.helpers.pages import (
    HOME,
    LOSS_PAGE,
    MODELS,
    ROOT,
    RUNS_PAGE,
    TIMEOUT,
    attribute_live,
    no_exception,
    open_page,
    open_with,
    short_gsm8k_file,
)


def test_home_shows_the_demo_pair_and_data():
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT).run()
    no_exception(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Teacher parameters"] == "22.7M"
    assert metrics["Data set"] == md("demo:mcq") and int(metrics["Examples"]) > 200
    assert not at.error
    # each workflow link is its title alone, its summary wrapped text beside it (a long link label was cut off)
    from app_ui.navigation import WORKFLOW_PAGES

    labels = [e.proto.label for e in at.get("page_link")]
    assert labels[: len(WORKFLOW_PAGES)] == [f"**{p.title}**" for p in WORKFLOW_PAGES]
    shown = {m.value for m in at.markdown}
    assert all(p.summary in shown for p in WORKFLOW_PAGES)


def test_sidebar_selection_survives_page_switch():
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT).run()
    at.sidebar.selectbox(key="w_data_source").set_value("demo:sentiment").run()
    assert {m.label: m.value for m in at.metric}["Format"] == "sst2"
    at.switch_page(MODELS).run()
    no_exception(at)
    assert at.sidebar.selectbox(key="w_data_source").value == "demo:sentiment"
    assert any(md("demo:sentiment") in s.value for s in at.subheader)


def test_models_page_pair_check_table():
    at = open_page(MODELS)
    no_exception(at)
    tables = [df.value for df in at.dataframe]
    losses = next(t for t in tables if "Loss" in t.columns)
    assert set(losses["Loss"]) >= {"KL (forward)", "Sinkhorn (SinKD)", "cross-entropy on gold labels"}
    summary = next(t for t in tables if "Teacher" in t.columns)
    assert summary.loc["Layers", "Teacher"] == "6" and summary.loc["Layers", "Student"] == "2"
    assert any("parameters" in i.value for i in at.info)  # the memory estimate before loading


def test_models_page_bad_folder_is_a_message_not_a_traceback(tmp_path):
    at = open_page(MODELS)
    at.radio[0].set_value("Local folder").run()
    next(t for t in at.text_input if t.label == "Folder path").set_value(str(tmp_path / "missing")).run()
    no_exception(at)
    assert any("model folder not found" in e.value for e in at.error)


def test_models_page_loads_a_local_folder_as_student(tiny_dir):
    at = open_page(MODELS)
    at.radio[0].set_value("Local folder").run()
    next(t for t in at.text_input if t.label == "Folder path").set_value(str(tiny_dir / "llama")).run()
    at.radio[1].set_value("Teacher").run()
    next(b for b in at.button if b.label.startswith("Load as")).click().run()
    no_exception(at)
    assert at.sidebar.selectbox(key="w_teacher_source").value == str(tiny_dir / "llama")
    summary = next(df.value for df in at.dataframe if "Teacher" in df.value.columns)
    assert summary.loc["Family", "Teacher"] == "llama"


def test_models_page_previews_a_data_file(tmp_path):
    f = tmp_path / "train.tsv"
    f.write_text("sentence\tlabel\n" + "".join(f"line {i}\t{i % 2}\n" for i in range(100)), encoding="utf-8")
    at = open_page(MODELS)
    at.radio[2].set_value("Path on this machine").run()
    path_input = next(t for t in at.text_input if t.label == "File path")
    path_input.set_value(str(f)).run()
    no_exception(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Format"] == "sst2" and metrics["Rows"] == "100"
    next(b for b in at.button if b.label == "Use this data set").click().run()
    assert at.sidebar.selectbox(key="w_data_source").value == str(f)


def test_a_column_mapping_travels_with_the_data_set(tmp_path):
    """A file in no known format maps in the preview, and "Use this data set" keeps the mapping: the sidebar's
    data set, what the page loads and what jobs receive all carry it (it once failed with "no text column")."""
    from kd_analysis.data.refs import data_ref
    from kd_analysis.data.sources import load_dataset

    f = tmp_path / "reviews.csv"
    f.write_text("review,sentiment\n" + "".join(f"review number {i},{i % 2}\n" for i in range(40)), encoding="utf-8")
    at = open_page(MODELS)
    at.radio[2].set_value("Path on this machine").run()
    next(t for t in at.text_input if t.label == "File path").set_value(str(f)).run()
    at.selectbox(key="map_text").set_value("review").run()
    at.selectbox(key="map_label").set_value("sentiment").run()
    preview = next(df.value for df in at.dataframe if "text" in df.value.columns)
    assert not preview.isna().all().any()  # no column of bare "None" cells (choices, answer of a labelled file)
    next(b for b in at.button if b.label == "Use this data set").click().run()
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    chosen = at.sidebar.selectbox(key="w_data_source").value
    assert data_ref(chosen).mapping.text == "review" and data_ref(chosen).source == str(f)
    assert any("40 examples" in c.value for c in at.caption)
    assert load_dataset(chosen).examples[1].label == 1  # what a job given this data set reads


def test_models_page_bad_data_file(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_bytes(b"a,b\n\xff\xfe\n")
    at = open_page(MODELS)
    at.radio[2].set_value("Path on this machine").run()
    next(t for t in at.text_input if t.label == "File path").set_value(str(f)).run()
    no_exception(at)
    assert any(md("not UTF-8") in e.value for e in at.error)


def test_loss_explorer_toy_and_pair():
    at = open_page(LOSS_PAGE)
    no_exception(at)
    assert not at.error
    toy = next(df.value for df in at.dataframe if "mass on the rare mode" in df.value.columns)
    from kd_analysis.losses import LOSSES

    assert set(toy["loss"]) == {spec.title for spec in LOSSES.values()}  # every registered loss, none hard-coded
    assert not any("gradient norm" in df.value.columns for df in at.dataframe)  # the pair view waits to be chosen
    shuffle = next(
        df.value for df in at.dataframe if "student rows shuffled" in df.value.columns and "changed" in df.value.columns
    )
    assert shuffle.set_index("loss").loc["Sinkhorn (SinKD)", "changed"] == "no"
    assert (shuffle.set_index("loss").drop("Sinkhorn (SinKD)")["changed"] == "yes").all()
    at.segmented_control(key="loss_view").set_value("pair").run()
    no_exception(at)
    summary = next(df.value for df in at.dataframe if "gradient norm" in df.value.columns)
    assert len(summary) == len(LOSSES) and (summary["value"] >= 0).all()
    assert any("adds a batch-wise Sinkhorn" in c.value for c in at.caption)
    per_example = next(df.value for df in at.dataframe if "example" in df.value.columns)
    assert len(per_example) == 16 and "sinkhorn" in per_example.columns


def test_loss_explorer_sliders_recompute():
    at = open_page(LOSS_PAGE)
    at.segmented_control(key="loss_view").set_value("pair").run()
    before = next(df.value for df in at.dataframe if "gradient norm" in df.value.columns)
    tau = next(s for s in at.slider if s.label == "τ")
    tau.set_value(4.0).run()
    no_exception(at)
    after = next(df.value for df in at.dataframe if "gradient norm" in df.value.columns)
    assert not before["value"].equals(after["value"])


def test_loss_explorer_incomparable_pair_is_explained(tiny_dir):
    at = open_page(LOSS_PAGE)
    at.segmented_control(key="loss_view").set_value("pair").run()
    at.sidebar.selectbox(key="w_teacher_source").set_value("minilm").run()
    at.sidebar.selectbox(key="w_student_kind").set_value("model").run()
    at.sidebar.text_input(key="w_student_source").set_value(str(tiny_dir / "gpt2")).run()
    at.sidebar.selectbox(key="w_teacher_task").set_value("causal_lm").run()  # BERT vs GPT-2 vocabularies
    no_exception(at)
    assert any("not comparable" in w.value or "different tasks" in w.value for w in [*at.warning, *at.error])


COMPARE_PAGE = "pages/compare_runs.py"


@pytest.mark.slow
def test_distillation_run_started_from_the_page(tiny_dir, run_root, tmp_path):
    import json as _json
    import time as _time

    from kd_analysis.runs import RunStore

    data = tmp_path / "mc.jsonl"
    data.write_text(
        "".join(
            _json.dumps(
                {
                    "question": f"what is {i} plus one",
                    "answerKey": "A",
                    "choices": {"label": ["A", "B"], "text": [str(i + 1), str(i + 5)]},
                }
            )
            + "\n"
            for i in range(30)
        )
    )
    at = open_with(tiny_dir / "gpt2", "multiple_choice", RUNS_PAGE, layers=1, data=data)
    no_exception(at)
    assert any("No runs yet" in i.value for i in at.info)
    numbers = {n.label: n for n in at.number_input}
    numbers["steps"].set_value(10)
    numbers["eval every"].set_value(5)
    numbers["eval examples"].set_value(20)  # more than half of 30: 15 are held out, and the page says so
    numbers["learning rate"].set_value(1e-3)
    next(b for b in at.button if b.label == "Start run").click().run()
    no_exception(at)
    assert any("Started" in s.value for s in at.success), [e.value for e in at.error]
    store = RunStore(run_root)
    [run] = store.list()
    deadline = _time.monotonic() + 180
    while store.get(run.run_id).status().get("state") not in ("finished", "failed") and _time.monotonic() < deadline:
        _time.sleep(0.5)
    assert store.get(run.run_id).status()["state"] == "finished", store.get(run.run_id).log_tail()
    at.run()
    no_exception(at)
    assert any("finished" in m.value for m in at.markdown)
    assert any("eval\\_size is 20" in w.value and "15 were held out" in w.value for w in at.warning), [
        w.value for w in at.warning
    ]


@pytest.mark.parametrize("preset", ["goyal-priming", "sinkd-sst2", "ballout-rationales"])
def test_an_unedited_preset_run_is_not_called_edited(preset, run_root, monkeypatch):
    """The form's own spelling of a setting (teacher_cache none for a null top-k) is not an edit of the preset."""
    from kd_analysis import runs as runs_mod
    from kd_analysis.runs import RunStore

    monkeypatch.setattr(runs_mod.subprocess, "Popen", lambda *a, **k: _FakeProc())
    at = open_page(RUNS_PAGE)
    at.selectbox(key="run_preset").set_value(preset).run()
    next(b for b in at.button if b.label == "Start run").click().run()
    no_exception(at)
    [run] = RunStore(run_root).list()
    assert "edited" not in RunStore(run_root).get(run.run_id).config()["name"]


def test_distillation_run_from_a_paper_preset(tiny_dir, run_root, tmp_path, monkeypatch):
    """Picking a preset fills the form with the paper's numbers, shows its source and differences, and the run
    records the preset, its loss terms at their own temperatures, and the user's edits in its name."""
    import json as _json

    from kd_analysis import runs as runs_mod
    from kd_analysis.runs import RunStore

    started = []
    monkeypatch.setattr(runs_mod.subprocess, "Popen", lambda *a, **k: started.append(a) or _FakeProc())
    data = tmp_path / "s.jsonl"
    data.write_text("".join(_json.dumps({"sentence": f"fine {i}", "label": i % 2}) + "\n" for i in range(20)))
    at = open_with(tiny_dir / "bert", "classification", RUNS_PAGE, data=data)
    at.selectbox(key="run_preset").set_value("sinkd-sst2").run()
    no_exception(at)
    assert any("2018cx/SinKD" in c.value for c in at.caption)
    terms = next(df.value for df in at.dataframe if "term" in df.value.columns).set_index("term")
    assert terms.loc["soft_ce", "τ"] == "2" and terms.loc["sinkhorn", "weight"] == "0.8"
    assert terms.loc["ce", "τ"] == "—" and "None" not in terms.to_string()  # no raw None cells
    numbers = {n.label: n for n in at.number_input}
    assert numbers["learning rate"].value == 4e-5 and numbers["batch"].value == 32
    numbers["epochs (0: use steps)"].set_value(3.0)
    at.radio(key="sinkd-sst2_models").set_value("sidebar")
    next(b for b in at.button if b.label == "Start run").click().run()
    no_exception(at)
    assert any("Started" in s.value for s in at.success), [e.value for e in at.error]
    [run] = RunStore(run_root).list()
    cfg = RunStore(run_root).get(run.run_id).config()
    assert cfg["preset"] == "sinkd-sst2" and cfg["epochs"] == 3.0 and cfg["data"] == str(data)
    assert {t["name"]: t["tau"] for t in cfg["losses"]} == {"ce": None, "soft_ce": 2.0, "sinkhorn": 2.0}
    assert "edited: epochs 3" in cfg["name"] and "your teacher, student and data" in cfg["name"]
    assert started  # the worker was launched


@pytest.mark.parametrize("name", ["goyal-priming", "ballout-rationales", "kd-lens-default", "sinkd-mnli"])
def test_every_preset_fills_the_run_form(run_root, name):
    """Each preset renders the whole form (goyal-priming's null top-k once crashed it) with its numbers."""
    from kd_analysis.training.presets import PRESETS

    at = open_page(RUNS_PAGE)
    at.selectbox(key="run_preset").set_value(name).run()
    no_exception(at)
    assert any(b.label == "Start run" for b in at.button)
    cfg = PRESETS[name].config()
    numbers = {n.label: n for n in at.number_input}
    assert numbers["learning rate"].value == pytest.approx(cfg.lr)
    assert numbers["LM teacher top-k (0: exact online mode)"].value == (cfg.teacher_topk or 0)
    terms = next(df.value for df in at.dataframe if "term" in df.value.columns)
    assert ("rationale" in set(terms["term"])) == (name == "ballout-rationales")


class _FakeProc:
    """A worker that was never started (the page's Popen replaced): nothing to wait for."""

    pid = 999_999

    def wait(self) -> int:
        return 0


def test_distillation_page_rejects_a_config_with_no_loss(run_root):
    at = open_page(RUNS_PAGE)
    for n in at.number_input:
        if n.label in ("ce", "kl"):
            n.set_value(0.0)
    next(b for b in at.button if b.label == "Start run").click().run()
    no_exception(at)
    assert any("at least one loss term" in e.value for e in at.error)


def test_compare_page_shows_runs(run_root):
    from kd_analysis.runs import RunStore

    store = RunStore(run_root)
    for i, (name, acc) in enumerate([("CE only", 0.4), ("KL", 0.6)]):
        run = store.create(
            "train",
            {"name": name, "losses": [{"name": "ce", "weight": 1.0}], "lr": 1e-4 * (i + 1)},
            run_id=f"r{i}",
            reference=True,
        )
        for step in range(1, 4):
            run.append_metrics({"step": step, "loss": 1.0 / step, "loss_ce": 1.0 / step, "total_steps": 3})
        run.append_metrics({"step": 3, "eval_accuracy": acc})
        run.set_status("finished")
    at = open_page(COMPARE_PAGE)
    no_exception(at)
    final = next(df.value for df in at.dataframe if "final loss" in df.value.columns)
    assert list(final["final accuracy"]) == [0.4, 0.6] or sorted(final["final accuracy"]) == [0.4, 0.6]
    diff = next(df.value for df in at.dataframe if "setting" in df.value.columns)
    assert "lr" in set(diff["setting"]) and "name" in set(diff["setting"])


def _saliency_page(tiny_dir) -> AppTest:
    """The saliency page on a tiny multiple-choice BERT teacher (1-layer student), method saliency."""
    at = open_with(tiny_dir / "bert", "multiple_choice", "pages/saliency_rationales.py", layers=1)
    next(s for s in at.selectbox if s.label == "Method").set_value("saliency").run()
    no_exception(at)
    return attribute_live(at)


def test_saliency_computes_only_on_its_button_shows_progress_and_cancels(tiny_dir, monkeypatch, run_root):
    """No attribution runs by itself; the button starts a background task whose progress is shown, and Cancel
    stops it (the slow analysis is a stand-in that reports progress like the real one)."""
    import time

    import kd_analysis.attribution.job as job_module  # imported before the patch, so it binds the real function
    import kd_analysis.attribution.report as report_module

    def slow(teacher, examples, *, progress=None, **_):
        for i in range(1, 200):
            progress("teacher", i, 200)
            time.sleep(0.05)
        raise AssertionError("not cancelled")

    # Patched in both modules that hold it, so teardown restores both: a module first imported while only the
    # report was patched would keep the stand-in for every later test in this worker.
    monkeypatch.setattr(report_module, "analyse_rationales", slow)
    monkeypatch.setattr(job_module, "analyse_rationales", slow)
    at = open_with(tiny_dir / "bert", "multiple_choice", "pages/saliency_rationales.py", layers=1)
    next(n for n in at.number_input if n.label == "examples").set_value(17).run()  # settings nobody computed
    no_exception(at)
    assert not any(m.label == "Defined / undefined" for m in at.metric)
    assert any(b.key == "rationale_start" and "Attribute 17 examples" in b.label for b in at.button)
    next(b for b in at.button if b.key == "rationale_start").click().run()
    time.sleep(0.5)
    at.run()
    texts = [p.proto.text for p in at.get("progress")]
    bar = next((p for p in at.get("progress") if "example" in p.proto.text and "so far" in p.proto.text), None)
    assert bar is not None, (texts, [e.value for e in at.error], [i.value for i in at.info])
    assert 0 < bar.proto.value <= 100 and "teacher" in bar.proto.text  # real progress, not an empty bar
    next(b for b in at.button if b.key == "rationale_cancel").click().run()
    deadline = time.monotonic() + 30  # the work stops at its next progress report
    while not any("Cancelled after" in i.value for i in at.info) and time.monotonic() < deadline:
        time.sleep(0.2)
        at.run()
    assert any("Cancelled after" in i.value for i in at.info), [i.value for i in at.info]
    assert any(b.key == "rationale_start" for b in at.button)  # it can be started again


@pytest.mark.slow
def test_saliency_rationales_page(tiny_dir):
    at = _saliency_page(tiny_dir)
    assert not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert "Defined / undefined" in metrics and metrics["Defined / undefined"].startswith("20 /")
    agreement = next(m for m in at.metric if m.label == "Teacher–student top-k agreement")
    assert agreement.delta.startswith("n = 20") and "95%" in agreement.delta  # the rate with n and its interval
    table = next(df.value for df in at.dataframe if "rationale" in df.value.columns)
    assert len(table) == 20 and "student rationale" in table.columns


def _charts_mentioning(at: AppTest, text: str) -> int:
    return sum(text in c.proto.spec for c in at.get("plotly_chart"))


def test_saliency_page_shows_the_paper_figure_only_where_comparable(tiny_dir):
    """demo:mcq is multiple choice: the paper's 68% (metric and plot line) for "any" only, beside the chance level
    and with n and an interval on our figure; no paper number or line for the graded definitions."""
    at = _saliency_page(tiny_dir)
    metrics = {m.label: m for m in at.metric}
    ours = metrics["Teacher overlap (any) at k=5"]
    assert ours.delta.startswith("n = ") and "95%" in ours.delta
    assert metrics["Ballout et al. 2024 (reference)"].value == "68%"
    assert "Random words (chance)" in metrics
    assert not any("vs paper" in (m.delta or "") for m in at.metric)  # no difference against another scale
    assert _charts_mentioning(at, "Ballout et al. 2024") == 1  # the teacher's plot only, not the student's
    for definition in ("fraction", "f1", "iou"):
        next(s for s in at.selectbox if s.label == "Overlap definition").set_value(definition).run()
        no_exception(at)
        labels = [m.label for m in at.metric]
        assert f"Teacher overlap ({definition}) at k=5" in labels
        assert "Ballout et al. 2024 (reference)" not in labels
        assert _charts_mentioning(at, "Ballout et al. 2024") == 0
        assert any("no paper figure is shown" in c.value for c in at.caption)


def test_saliency_explains_its_own_answer_by_default_as_the_paper_did(tiny_dir):
    """The paper's 68% is about attributions of the teacher's own answer; explaining the gold answer puts its tokens
    in the ground truth by construction (it read 100% beside 68%), so the default is the comparable one."""
    at = _saliency_page(tiny_dir)
    explain = next(s for s in at.selectbox if s.label == "Explain")
    assert explain.value == "predicted" and explain.format_func("predicted") == "its own answer"
    explain.set_value("gold").run()
    attribute_live(at)
    assert "Ballout et al. 2024 (reference)" not in [m.label for m in at.metric]
    assert any("explaining the gold answer" in c.value for c in at.caption)


PRIMING_PAGE = "pages/priming_attention.py"


def test_priming_page_teacher_outputs_and_bad_template(tiny_dir, tmp_path, run_root, monkeypatch):
    monkeypatch.setenv("KD_LENS_CACHE", str(tmp_path / "cache"))
    at = open_page(PRIMING_PAGE)
    no_exception(at)
    inputs = {t.label: t for t in at.text_input}
    inputs["Teacher (a causal language model)"].set_value(str(tiny_dir / "llama"))
    inputs["Data (GSM8K format: question, answer with ####)"].set_value(str(short_gsm8k_file(tmp_path / "a.jsonl")))
    next(n for n in at.number_input if n.label == "max new tokens").set_value(8)
    at.run()
    start = next(b for b in at.button if b.key == "prime_start")
    assert start.label.startswith("Compute now (6 strategies")
    start.click().run()
    import time

    deadline = time.monotonic() + 180  # the work runs in a background thread; rerun as the page's poll would
    while not any("gold log-prob / token" in df.value.columns for df in at.dataframe) and time.monotonic() < deadline:
        no_exception(at)
        assert not at.error, [e.value for e in at.error]
        time.sleep(0.3)
        at.run()
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    summary = next(df.value for df in at.dataframe if "gold log-prob / token" in df.value.columns)
    assert list(summary["strategy"]) == ["none", "teacher", "ai_to_ai", "confidence", "gold", "cot"]
    assert summary["accuracy"].notna().all()
    per_example = next(df.value for df in at.dataframe if "parsed" in df.value.columns)
    assert len(per_example) == 6
    next(t for t in at.text_area if t.label.startswith(STRATEGY_TITLE + " · ")).set_value("no slot here").run()
    assert any(md("no {question} slot") in e.value for e in at.error)


STRATEGY_TITLE = "Teacher"


def test_priming_page_shows_saved_teacher_outputs_without_a_click(run_root):
    """A saved outputs job (the demo ships one) is on the page at first load: summary and one example."""
    from kd_analysis.priming.job import KIND, OUTPUTS_FILE, outputs_config
    from kd_analysis.priming.teacher import TeacherOutput
    from kd_analysis.runs import RunStore

    templates = {"none": "{question}", "gold": "{question}\nThe answer is {answer}."}
    job = RunStore(run_root).create(
        KIND, outputs_config({"source": "smollm2-135m-instruct"}, "demo:arithmetic", templates, limit=2), run_id="outs"
    )
    rows = [
        TeacherOutput(
            example_id=f"arith-{i}",
            strategy=s,
            prompt_tokens=20,
            answer_tokens=9,
            answer_logprob_per_token=-1.5 + (s == "gold"),
            generated=f"It is {i}.",
            predicted=str(i),
            correct=s == "gold",
        )
        for s in templates
        for i in range(2)
    ]
    job.write_text(OUTPUTS_FILE, "".join(json.dumps(o.to_dict()) + "\n" for o in rows))
    job.set_status("finished")
    at = open_page(PRIMING_PAGE)
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    summary = next(df.value for df in at.dataframe if "gold log-prob / token" in df.value.columns)
    assert list(summary["strategy"]) == ["none", "gold"] and list(summary["accuracy"]) == [0.0, 1.0]
    per_example = next(df.value for df in at.dataframe if "parsed" in df.value.columns)
    assert list(per_example["right"]) == ["✗", "✓"] and list(per_example["parsed"]) == ["0", "0"]
    bad = RunStore(run_root).create(
        KIND, outputs_config({"source": "nowhere/model"}, "demo:arithmetic", templates), run_id="bad"
    )
    bad.set_status("failed", reason="nowhere/model is not a local folder and the hub is unreachable")
    at.run()
    picker = next(s for s in at.selectbox if s.label == "Saved teacher outputs")
    picker.set_value("bad").run()
    assert any("unreachable" in w.value for w in at.warning)
    at.run()  # the state of any job changing must not reset the user's choice
    assert next(s for s in at.selectbox if s.label == "Saved teacher outputs").value == "bad"


def test_priming_page_shows_saved_head_statistics(tiny_dir, run_root):
    from kd_analysis.attention.job import STATS_FILE, attention_config
    from kd_analysis.attention.stats import head_stats
    from kd_analysis.data.example import Example
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.specs import ModelSpec
    from kd_analysis.runs import RunStore

    lm = load_model(ModelSpec(str(tiny_dir / "llama")))
    exs = [Example(id=str(i), text=f"Ann has {i} pens.") for i in range(3)]
    stats = [
        head_stats(lm, exs, lambda e, p=p: p + e.text, label=label).to_dict()
        for label, p in (("none", ""), ("cot", "Think. "))
    ]
    job = RunStore(run_root).create("attention", attention_config([], "demo:arithmetic"), run_id="heads")
    job.write_json(STATS_FILE, stats)
    job.set_status("finished")
    at = open_page(PRIMING_PAGE)
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    ranked = next(df.value for df in at.dataframe if "variance" in df.value.columns)
    assert len(ranked) == 8 and {"none", "cot"} <= set(ranked.columns)
    assert len(at.get("plotly_chart")) == 3  # layer profile, head grid, difference map (no runs: no bars)


def test_priming_page_drills_into_a_teacher_head_under_a_strategy(tiny_dir, run_root):
    """With no student yet (a fresh clone), the drill-down still works on the teacher under any strategy."""
    at = open_page(PRIMING_PAGE)
    next(t for t in at.text_input if t.label == "Teacher (a causal language model)").set_value(str(tiny_dir / "llama"))
    at.run()
    assert not [c for c in at.get("plotly_chart") if "layer 1, head 0" in c.proto.spec]
    next(t for t in at.toggle if t.label == "Drill into one head").set_value(True).run()
    model = next(s for s in at.selectbox if s.label == "Model")
    assert model.options[0] == "teacher under None (base KD)" and len(model.options) == 6
    model.set_value(("teacher", "cot")).run()
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    spec = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "layer 1, head 0" in c.proto.spec)
    n = len(spec["data"][0]["y"])
    z = spec["data"][0]["z"]  # plotly's binary array encoding
    z = np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape(n, -1)
    assert z.shape == (n, n) and n > 20  # the cot prompt's tokens
    assert np.allclose(z.sum(1), 1, atol=1e-3) and np.allclose(np.triu(z, 1), 0)  # causal rows of weights


def test_priming_page_keeps_the_papers_numbers_out_of_our_table(run_root):
    """Our accuracy table: no paper column, a gain only where the intervals are apart; the paper's numbers in a
    reference table under their own heading."""
    from tests.helpers.runs import priming_store

    priming_store(run_root, (("a", "none", 2), ("b", "gold", 20), ("c", "cot", 5)))
    at = open_page(PRIMING_PAGE)
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    ours = next(df.value for df in at.dataframe if "student exact match" in df.value.columns)
    assert not [c for c in ours.columns if "paper" in c.lower() or "gsm8k" in c.lower()]
    assert dict(zip(ours["strategy"], ours["gain vs none"])) == {
        "none": "baseline",
        "gold": "+900%",
        "cot": "not distinguishable at n = 24",
    }
    ref = next(df.value for df in at.dataframe if "paper name" in df.value.columns)
    assert list(ref["GSM8K accuracy"]) == [0.122, 0.250, 0.306, 0.340, 0.423, 0.481]
    assert any(h.value.startswith("Paper reference") for h in at.subheader)
    bars = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "Exact match per priming" in c.proto.spec)
    assert [t["name"] for t in bars["data"]] == ["student (ours, 95% interval)", "teacher under this prompt"]


@pytest.mark.parametrize("layers", ["²", "999", "2.0"])
def test_a_link_with_an_odd_layer_count_is_refused_in_a_sentence(layers):
    """`?layers=` as a hostile or mistyped link writes it: never a traceback, one line saying it was not used
    (these three on the page; the schema's shape refuses the rest of the odd values below, quickly)."""
    from kd_analysis.schema import url_param

    assert [v for v in ["²", "٣", "-1", "1e3", "", " 2", "2.0", "1234"] if url_param("layers", v)] == []
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params["layers"] = layers
    at.query_params["student"] = "drop_layers"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(f"layers = {layers}" in i.value for i in at.sidebar.info)


HOSTILE_LINK = {
    "teacher": "../../etc/passwd",
    "task": "<script>",
    "student": "DROP TABLE",
    "layers": "²",
    "data": "\x1b[2J",
    "view": "<img src=x>",
    "cell": "'; --",
    "runs": "../a,b/../c",
    "run": "x/../y",
    "against": "..",
    "watch": "../../tmp",
    "job": "a" * 5000,
    "a": "\u202e",
    "b": "",
    "example": "\x00",
}


@pytest.mark.parametrize(
    "page",
    [
        MODELS,
        LOSS_PAGE,
        RUNS_PAGE,
        COMPARE_PAGE,
        PRIMING_PAGE,
        "pages/saliency_rationales.py",
        "pages/error_analysis.py",
        "pages/summary.py",
    ],
)
def test_every_page_survives_a_link_of_hostile_values(page):
    """Every URL parameter a page reads, at once, with values of the wrong shape: the URL schema drops them
    (`kd_analysis.schema.UrlParams`), and no page shows a traceback."""
    from kd_analysis.schema import url_param

    # all of another shape but the teacher, which has a path's shape: the sidebar then refuses a path it does not know
    assert [k for k, v in HOSTILE_LINK.items() if url_param(k, v) is not None] == ["teacher"]
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT)
    for k, v in HOSTILE_LINK.items():
        at.query_params[k] = v
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]


def test_every_page_path_is_its_file_name():
    """Streamlit knows the files of pages/ by name before app.py first runs st.navigation; a path that is not the
    file's name showed "Page not found" over the page when a fresh server's first request was a deep link."""

    from app_ui.navigation import WORKFLOW_PAGES

    files = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "pages").glob("*.py"))
    assert sorted(p.url_path for p in WORKFLOW_PAGES) == files


def test_the_shipped_sentiment_teacher_is_in_the_sidebar():
    """Both reference teachers are listed by name; neither needs its folder typed."""
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT).run()
    teacher = at.sidebar.selectbox(key="w_teacher_source")
    titles = [teacher.format_func(o) for o in teacher.options]
    assert "MiniLM fine-tuned on the sentiment demo (reference teacher)" in titles
    assert "MiniLM fine-tuned on the MC demo (reference teacher)" in titles


def test_a_link_to_a_saved_job_on_an_uploaded_file_reopens_it_in_a_fresh_session(run_root, tmp_path):
    """The job's data set comes from the run store's record (never from the link), so a fresh browser opening the
    link sees the job, with the sidebar on its data set, instead of the job being closed for another data set."""
    import json as _json
    import shutil

    from kd_analysis.data.sources import write_demo

    uploaded = write_demo("mcq", tmp_path / "my_questions.jsonl")
    job = run_root / "uploadjob"
    shutil.copytree(Path(__file__).resolve().parents[2] / "cached_runs" / "reference-minilm-rationales-before", job)
    config = _json.loads((job / "config.json").read_text())
    (job / "config.json").write_text(_json.dumps({**config, "data": str(uploaded)}))
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT)
    at.query_params["job"] = "uploadjob"
    at.run()
    at.switch_page("pages/saliency_rationales.py").run()
    no_exception(at)
    assert at.sidebar.selectbox(key="w_data_source").value == str(uploaded)
    assert any("Showing the saved job uploadjob" in i.value for i in at.info), [i.value for i in at.info]


def test_the_run_form_keeps_a_picked_teacher_as_its_default_and_names_it(run_root):
    """With the sentiment reference teacher in the sidebar, the form's teacher is that one, not the MC reference
    teacher (offered first only in place of a built-in, whose head is untrained); the form and the Priming page
    call it by its title, not its checkpoint path."""
    import shutil

    for name in ("reference-minilm-sentiment-teacher", "reference-minilm-mc-teacher"):
        shutil.copytree(ROOT / "cached_runs" / name, run_root / name)
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT)
    at.run()
    with_sentiment = next(o for o in at.sidebar.selectbox(key="w_teacher_source").options if "sentiment" in o)
    at.sidebar.selectbox(key="w_teacher_source").select(with_sentiment).run()
    selection = [c.value for c in at.caption if "→" in c.value]  # Home's "Current selection"
    assert selection and "sentiment demo" in selection[0] and "checkpoint" not in selection[0], selection
    at.switch_page(RUNS_PAGE).run()
    no_exception(at)
    form_teacher = next(s for s in at.selectbox if s.label == "Teacher")
    assert form_teacher.value == "sidebar"
    # reference teachers are named by their titles, never by their checkpoint folders
    assert all("checkpoint" not in o for o in form_teacher.options), form_teacher.options
    assert any("fine-tuned on the sentiment demo" in o for o in form_teacher.options), form_teacher.options
    at.switch_page("pages/priming_attention.py").run()
    no_exception(at)
    info = next(i.value for i in at.info if "needs a causal language model" in i.value)
    assert "on the sentiment demo" in info and "checkpoint" not in info, info


def test_pages_bind_their_state_to_the_url_through_one_helper():
    """Pages read and write the address only through app_ui.state (url_arrivals, url_state, write_url_state), so
    every parameter is checked by the URL schema and a page's own writes never read as a pasted link."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    raw = re.compile(r"st\.query_params\b(?!\s*=)")
    offenders = [
        f"{p.relative_to(root)}:{i}"
        for p in [root / "app.py", *sorted((root / "pages").glob("*.py")), *sorted((root / "app_ui").glob("*.py"))]
        if p.name not in ("state.py", "sidebar.py")  # the helper itself; the sidebar reports refused raw values
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if raw.search(line)
    ]
    assert not offenders, offenders


def test_cancel_during_one_long_step_says_it_is_pending(tiny_dir, monkeypatch, run_root):
    """A model load is one step that cannot be cut short: after Cancel the panel says the work stops at its next
    step (no second Cancel button, no silent wait), then that it was cancelled."""
    import threading
    import time

    import kd_analysis.attribution.job as job_module
    import kd_analysis.attribution.report as report_module
    from app_ui.background import CANCEL_PENDING

    release = threading.Event()

    def one_long_step(teacher, examples, *, progress=None, **_):
        progress("teacher", 0, 10)  # "loading", then a step that reports nothing until it ends
        release.wait(60)
        progress("teacher", 1, 10)  # the next report: Cancelled is raised here
        raise AssertionError("not cancelled")

    monkeypatch.setattr(report_module, "analyse_rationales", one_long_step)
    monkeypatch.setattr(job_module, "analyse_rationales", one_long_step)
    at = open_with(tiny_dir / "bert", "multiple_choice", "pages/saliency_rationales.py", layers=1)
    # settings no other test computes: results are shared by their inputs across this worker's sessions
    next(n for n in at.number_input if n.label == "examples").set_value(13).run()

    def wait_for(seen, limit=60.0):  # a loaded 2-core machine may take seconds to start the thread
        deadline = time.monotonic() + limit
        while not seen() and time.monotonic() < deadline:
            time.sleep(0.2)
            at.run()
        return seen()

    next(b for b in at.button if b.key == "rationale_start").click().run()
    assert wait_for(lambda: any(b.key == "rationale_cancel" for b in at.button)), [i.value for i in at.info]
    next(b for b in at.button if b.key == "rationale_cancel").click().run()
    assert wait_for(lambda: any(i.value == CANCEL_PENDING for i in at.info)), [i.value for i in at.info]
    assert not any(b.key == "rationale_cancel" for b in at.button)
    release.set()
    assert wait_for(lambda: any("Cancelled after" in i.value for i in at.info)), [i.value for i in at.info]
