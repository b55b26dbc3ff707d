"""Distillation runs page: the evaluation table and curve show evaluations only, and a form submitted
twice does not start the same run twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kd_analysis.plots.run_evals import eval_curves
from kd_analysis.training.evals import active_twin, config_fingerprint, eval_rows
from tests.helpers.pages import RUNS_PAGE, no_exception, open_page

ROOT = Path(__file__).resolve().parents[2]


def _metrics(run_id: str) -> list[dict]:
    return [json.loads(line) for line in (ROOT / "cached_runs" / run_id / "metrics.jsonl").read_text().splitlines()]


def test_eval_rows_keep_evaluations_only():
    metrics = _metrics("reference-minilm-2l-kl")
    assert any("teacher_cache_hits" in m for m in metrics)  # training rows carry a teacher_ key
    rows = eval_rows(metrics)
    assert [r["step"] for r in rows] == [0, 27, 54, 81, 108]
    assert rows[0]["teacher_accuracy"] == pytest.approx(0.7884615) and "eval_accuracy" in rows[0]
    assert all(set(r) <= {"step", "eval_accuracy", "teacher_accuracy"} for r in rows)
    assert eval_rows([{"step": 3, "loss": 1.0, "teacher_cache_hits": 4}]) == []


def test_eval_curve_draws_the_teacher_as_a_reference_line():
    fig = eval_curves(eval_rows(_metrics("reference-minilm-2l-kl")))
    names = [t.name for t in fig.data]
    assert names == ["eval_accuracy", "teacher accuracy"]
    assert list(fig.data[0].x) == [0, 27, 54, 81, 108] and list(fig.data[1].y) == pytest.approx([0.7884615] * 2)


def test_fingerprint_ignores_key_order_and_tells_configs_apart():
    assert config_fingerprint({"a": 1, "b": [1, 2]}) == config_fingerprint({"b": (1, 2), "a": 1})
    assert config_fingerprint({"a": 1}) != config_fingerprint({"a": 2})


def test_active_twin_finds_only_queued_or_running_identical_runs(run_root):
    from kd_analysis.runs import RunStore

    store = RunStore(run_root)
    cfg = {"name": "x", "lr": 0.1, "losses": [{"name": "kl", "weight": 1.0}]}
    store.create("train", cfg, run_id="done", state="finished")
    assert active_twin(store, cfg) is None
    store.create("train", cfg, run_id="live", state="running")
    assert active_twin(store, cfg) == "live"
    assert active_twin(store, {**cfg, "lr": 0.2}) is None


def test_submitting_the_form_twice_starts_one_run(run_root, monkeypatch):
    """A second click used to start the identical run again; the refusal says so while that run is active and
    says it has ended once it has (a warning drawn once stayed stale)."""
    from kd_analysis import runs as runs_mod
    from kd_analysis.runs import RunStore

    def fake_start(config, store=None, *, name=None, kind="train"):  # a run that stays queued (no worker)
        return store.create(kind, config, state="queued", name=name)

    monkeypatch.setattr(runs_mod, "start_run", fake_start)
    monkeypatch.setattr(runs_mod, "reconcile", lambda store: None)
    at = open_page(RUNS_PAGE)
    next(b for b in at.button if b.label == "Start run").click().run()
    no_exception(at)
    assert any("Started" in s.value for s in at.success), [e.value for e in at.error]
    next(b for b in at.button if b.label == "Start run").click().run()
    no_exception(at)
    assert any("Not started: the identical run" in w.value for w in at.warning)
    assert len(RunStore(run_root).list(kind="train")) == 1
    twin = RunStore(run_root).list(kind="train")[0].run_id
    RunStore(run_root).get(twin).set_status("finished")
    at.run()  # the notice is re-checked (every 2 s in the browser): it no longer says the twin is running
    assert not any("Not started" in w.value for w in at.warning)
    assert any(twin[-6:] in i.value and "has ended (finished)" in i.value for i in at.info), [i.value for i in at.info]
    at.selectbox(key="run_preset").set_value("sinkd-sst2").run()  # another form: the notice was about the last one
    assert not any("identical run" in m.value for m in [*at.warning, *at.info])
    at.selectbox(key="run_preset").set_value("none").run()
    RunStore(run_root).get(twin).set_status("running")
    next(c for c in at.checkbox if "identical run" in c.label).check()
    next(b for b in at.button if b.label == "Start run").click().run()
    assert len(RunStore(run_root).list(kind="train")) == 2  # asked for explicitly
    assert not any("identical run" in m.value for m in [*at.warning, *at.info])


def test_enter_in_a_run_form_field_does_not_start_a_run(run_root):
    """Enter confirms a typed number; only the Start run button submits (Enter started runs by accident)."""
    at = open_page(RUNS_PAGE)
    no_exception(at)

    def forms(node, out):
        proto = getattr(node, "proto", None)
        block = getattr(proto, "DESCRIPTOR", None) is not None and proto.DESCRIPTOR.name == "Block"
        if block and proto.WhichOneof("type") == "form":
            out.append(proto.form)
        for child in getattr(node, "children", {}).values():
            forms(child, out)
        return out

    (form,) = [f for f in forms(at._tree, []) if f.form_id == "new_run"]
    assert form.enter_to_submit is False


def test_priming_page_says_why_it_does_not_follow_the_sidebar(run_root, tiny_dir, tmp_path):
    """Home says every page uses the sidebar; the priming page needs a causal LM and GSM8K-format data,
    so with the MC demo it must say so, and with a fitting sidebar it follows it."""
    from tests.helpers.pages import open_with, short_gsm8k_file

    at = open_page("pages/priming_attention.py")  # default sidebar: the MC teacher on demo:mcq
    no_exception(at)
    info = next(i.value for i in at.info if "needs a causal language model" in i.value)
    assert "is not a causal language model" in info and "is not in GSM8K" in info
    assert at.text_input(key="prime_teacher_smollm2-135m-instruct").value == "smollm2-135m-instruct"

    data = short_gsm8k_file(tmp_path / "arith.jsonl")
    at = open_with(tiny_dir / "llama", "causal_lm", "pages/priming_attention.py", data=data)
    no_exception(at)
    assert not any("needs a causal language model" in i.value for i in at.info)
    teacher = next(t for t in at.text_input if t.label.startswith("Teacher"))
    assert teacher.value == str(tiny_dir / "llama")
    assert next(t for t in at.text_input if t.label.startswith("Data")).value == str(data)
    teacher.set_value("smollm2-135m-instruct").run()
    next(b for b in at.button if b.label == "Use the sidebar's teacher and data").click().run()
    assert next(t for t in at.text_input if t.label.startswith("Teacher")).value == str(tiny_dir / "llama")


def test_expected_task_resolves_auto_without_loading_weights(tiny_dir):
    """The priming page decides whether the sidebar's teacher fits from this: "auto" on SmolLM2 or on a local causal
    LM folder is a causal LM; on the MC reference teacher it is multiple choice; a hub id stays unknown (no
    network wait while a page draws)."""
    from kd_analysis.models.loading import expected_task
    from kd_analysis.models.specs import ModelSpec

    assert expected_task(ModelSpec(source="smollm2-135m-instruct")) == "causal_lm"
    assert expected_task(ModelSpec(source="minilm")) == "multiple_choice"
    assert expected_task(ModelSpec(source=str(tiny_dir / "llama"))) == "causal_lm"
    assert expected_task(ModelSpec(source=str(tiny_dir / "llama"), task="classification")) == "classification"
    reference = ROOT / "cached_runs" / "reference-minilm-mc-teacher" / "checkpoint"
    assert expected_task(ModelSpec(source=str(reference))) == "multiple_choice"
    assert expected_task(ModelSpec(source="someone/some-model")) is None
    assert expected_task(ModelSpec(source=str(tiny_dir / "no-such-folder"))) is None


def test_priming_page_follows_a_causal_lm_sidebar_under_task_auto(run_root, tiny_dir, tmp_path):
    """Task "auto" on a causal LM fits the page: it must not claim the teacher is not a causal LM."""
    from tests.helpers.pages import open_with, short_gsm8k_file

    data = short_gsm8k_file(tmp_path / "arith.jsonl")
    at = open_with(tiny_dir / "llama", "auto", "pages/priming_attention.py", data=data)
    no_exception(at)
    assert not any("needs a causal language model" in i.value for i in at.info)
    assert next(t for t in at.text_input if t.label.startswith("Teacher")).value == str(tiny_dir / "llama")
    at = open_with(
        ROOT / "cached_runs" / "reference-minilm-mc-teacher" / "checkpoint",
        "auto",
        "pages/priming_attention.py",
        data=data,
    )
    info = next(i.value for i in at.info if "needs a causal language model" in i.value)
    assert "a multiple choice model) is not a causal language model" in info
    assert "is not in GSM8K" not in info  # the data fits: only the teacher is named


def test_user_errors_say_what_to_do(tiny_dir, tmp_path):
    """The adapter mismatch names the head and the task to use; a labelled file never shows gold None;
    an untrained head is flagged."""
    from kd_analysis.attribution.rationales import attribute
    from kd_analysis.data.sources import load_dataset
    from kd_analysis.exceptions import KDLensError
    from kd_analysis.models.loading import adapter_mismatch, load_model
    from kd_analysis.models.specs import ModelSpec

    with pytest.raises(
        KDLensError,
        match=r"classifier.weight has shape \[1, 384\] in the adapter and \[2, 384\] in "
        r"this model: .*load it with task multiple_choice",
    ):
        load_model(ModelSpec(str(ROOT / "cached_runs/reference-minilm-mc-teacher/checkpoint"), task="classification"))
    message = (
        "Error(s) in loading state_dict for PeftModel:\n\tsize mismatch for base_model.model.score.weight: "
        "copying a param with shape torch.Size([3, 64]) from checkpoint, the shape in current model is "
        "torch.Size([2, 64])."
    )
    assert "classifier with 3 labels" in adapter_mismatch(message)

    data = tmp_path / "s.jsonl"
    data.write_text("".join(json.dumps({"sentence": f"fine day {i}", "label": i % 2}) + "\n" for i in range(4)))
    model = load_model(ModelSpec("minilm", task="classification"))
    assert model.untrained_head and any("start random" in n for n in model.notes)  # an encoder, no classifier
    ex = load_dataset(str(data)).examples[1]
    a = attribute(model, ex, method="saliency", target="gold")
    assert a.gold_label is not None and a.gold_label == a.target_label
    teacher = load_model(
        ModelSpec(str(ROOT / "cached_runs/reference-minilm-mc-teacher/checkpoint"), task="multiple_choice")
    )
    assert not teacher.untrained_head  # the adapter carries its trained head


def test_sidebar_flags_an_untrained_teacher_head(run_root, tmp_path):
    from streamlit.testing.v1 import AppTest

    data = tmp_path / "s.jsonl"
    data.write_text("".join(json.dumps({"sentence": f"fine day {i}", "label": i % 2}) + "\n" for i in range(6)))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.session_state["_kd_teacher_source"] = "minilm"
    at.session_state["_kd_teacher_task"] = "classification"
    at.session_state["_kd_data_source"] = str(data)
    at.run()
    no_exception(at)
    assert any("head is untrained" in w.value for w in at.sidebar.warning), [w.value for w in at.sidebar.warning]


def test_rationale_exports_follow_the_filter_and_carry_the_text():
    from kd_analysis.attribution.job import load_rationale_run
    from kd_analysis.attribution.report import filtered_exports
    from kd_analysis.data.sources import load_dataset
    from kd_analysis.runs import RunStore

    report = load_rationale_run(RunStore(ROOT / "cached_runs").get("reference-minilm-rationales-before"))
    rows = [r for r in report.rows() if r["teacher right"] is False]  # the page's "Teacher: wrong" filter
    texts = {e.id: e.text for e in load_dataset("demo:mcq").examples}
    table, lines = filtered_exports(rows, report, texts)
    assert len(table) == len(rows) < len(report.rows())
    assert all(t["text"] == texts[t["example"]] and t["text"] for t in table)
    assert {line["example_id"] for line in lines} == {r["example"] for r in rows}
    assert {line["role"] for line in lines} == {"teacher", "student"} and all(line["text"] for line in lines)


def test_load_progress_states_measured_seconds(tiny_dir):
    """ "About 20 s" took 69 s; every message now carries the seconds measured since the load began."""
    import re

    from kd_analysis.models.loading import load_model
    from kd_analysis.models.specs import ModelSpec

    said: list[str] = []
    load_model(
        ModelSpec(str(ROOT / "cached_runs/reference-minilm-mc-teacher/checkpoint"), task="multiple_choice"),
        progress=said.append,
    )
    assert said and all(re.search(r" · \d+ s$", m) for m in said), said
    assert not any(re.search(r" · \d+ s · \d+ s$", m) for m in said)  # the adapter's base shares one clock
    assert any(m.startswith("Applying the LoRA adapter") for m in said) and said[-1].startswith("Ready")
    assert not any("about" in m for m in said)


@pytest.mark.slow
def test_saliency_job_and_example_live_in_the_url():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.session_state["rationale_method"], at.session_state["rationale_target"] = "ig", "gold"  # the user's own
    at.query_params["job"] = "reference-minilm-rationales-before"
    at.query_params["example"] = "use-175"
    at.switch_page("pages/saliency_rationales.py").run()
    no_exception(at)
    assert any("Showing the saved job reference-minilm-rationales-before" in i.value.replace("\\", "") for i in at.info)
    # the boxes say what the opened job used (they kept the user's ig / gold beside a saliency job)
    assert (at.selectbox(key="rationale_method").value, at.selectbox(key="rationale_target").value) == (
        "saliency",
        "predicted",
    )
    assert at.selectbox(key="rationale_example").value == "use-175"
    at.selectbox(key="rationale_example").set_value("cat-1").run()
    assert at.query_params["example"] in ("cat-1", ["cat-1"])  # the copied link follows the view
    assert at.query_params["job"] in ("reference-minilm-rationales-before", ["reference-minilm-rationales-before"])
    at.selectbox(key="rationale_method").set_value("ig").run()  # another method: live examples, not the job
    assert "job" not in at.query_params
    assert any("Live examples" in m.value for m in at.markdown)  # offered to attribute with ig (the saved job
    # stays below only as the page's fallback until then, saying so)


def test_priming_heads_job_and_strategy_pair_live_in_the_url():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.query_params["heads_job"] = "reference-smollm2-priming-heads"
    at.query_params["a"] = "cot"
    at.query_params["b"] = "none"
    at.switch_page("pages/priming_attention.py").run()
    no_exception(at)
    assert at.selectbox(key="_attention_open").value == "reference-smollm2-priming-heads"
    assert (at.selectbox(key="prime_diff_a").value, at.selectbox(key="prime_diff_b").value) == ("cot", "none")
    at.selectbox(key="prime_diff_b").set_value("gold").run()
    assert at.query_params["b"] in ("gold", ["gold"])


def test_the_watched_run_lives_in_the_url(run_root):
    from kd_analysis.runs import RunStore

    store = RunStore(run_root)
    for rid in ("first", "second"):
        run = store.create("train", {"name": f"run {rid}"}, run_id=rid, state="finished")
        run.append_metrics({"step": 1, "loss": 1.0, "total_steps": 1})
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.query_params["watch"] = "first"
    at.switch_page(RUNS_PAGE).run()
    no_exception(at)
    assert any(s.value == "Watching run first" for s in at.subheader)
    next(b for b in at.button if b.key == "watch_second").click().run()
    assert at.query_params["watch"] in ("second", ["second"])


def test_the_sidebar_selection_lives_in_the_url_of_home_and_models():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.query_params["data"] = "demo:sentiment"
    at.query_params["layers"] = "3"
    at.query_params["teacher"] = "/etc"  # not a teacher this session added: refused, never opened
    at.run()
    no_exception(at)
    assert at.sidebar.selectbox(key="w_data_source").value == "demo:sentiment"
    assert at.sidebar.number_input(key="w_student_layers").value == 3
    assert any("teacher = /etc" in i.value for i in at.sidebar.info)
    assert at.sidebar.selectbox(key="w_teacher_source").value != "/etc"
    at.sidebar.selectbox(key="w_data_source").set_value("demo:arithmetic").run()
    assert at.query_params["data"] in ("demo:arithmetic", ["demo:arithmetic"])  # Home writes the selection back
    at.switch_page("pages/models_and_data.py").run()
    no_exception(at)
    assert at.query_params["layers"] in ("3", ["3"])


def test_newest_rationale_job_prefers_the_same_teacher_and_never_another_data_set(run_root, tmp_path):
    import shutil

    from kd_analysis.attribution.job import newest_rationale_job, same_model_source
    from kd_analysis.runs import RunStore

    store = RunStore(run_root)
    mine = str(ROOT / "cached_runs/reference-minilm-mc-teacher/checkpoint")
    copy = tmp_path / "elsewhere" / "reference-minilm-mc-teacher" / "checkpoint"
    shutil.copytree(mine, copy)
    assert same_model_source(mine, str(copy)) and same_model_source("minilm", "minilm")
    assert not same_model_source("minilm", mine) and not same_model_source(None, "minilm")
    store.create("rationales", {"data": "demo:mcq", "teacher": {"source": mine}}, run_id="a-mine", state="finished")
    store.create(
        "rationales", {"data": "demo:mcq", "teacher": {"source": "minilm"}}, run_id="b-other", state="finished"
    )
    store.create(
        "rationales", {"data": "demo:sentiment", "teacher": {"source": mine}}, run_id="c-sent", state="finished"
    )
    store.create("rationales", {"data": "demo:mcq", "teacher": {"source": mine}}, run_id="d-run", state="running")
    assert newest_rationale_job(store, "demo:mcq", str(copy)) == "a-mine"  # same teacher (a copy), finished
    assert newest_rationale_job(store, "demo:mcq", "smollm2-135m-instruct") in ("a-mine", "b-other")
    assert newest_rationale_job(store, "demo:arithmetic", mine) is None


def test_run_form_starts_a_group_over_seeds_in_the_few_label_regime(run_root, monkeypatch):
    """The run form starts one run per seed (a group sharing its held-out split), with labels=N."""
    from kd_analysis import runs as runs_mod
    from kd_analysis.runs import RunStore

    monkeypatch.setattr(
        runs_mod,
        "start_run",
        lambda config, store=None, *, name=None, kind="train": store.create(kind, config, state="queued", name=name),
    )
    monkeypatch.setattr(runs_mod, "reconcile", lambda store: None)
    at = open_page(RUNS_PAGE)
    next(t for t in at.text_input if t.label.startswith("seeds for a run group")).input("0, 1,2")
    next(n for n in at.number_input if n.label.startswith("labelled examples")).set_value(30)
    next(b for b in at.button if b.label == "Start run").click().run()
    no_exception(at)
    assert any("Started the group" in s.value and "3 runs" in s.value for s in at.success), [e.value for e in at.error]
    configs = [RunStore(run_root).get(r.run_id).config() for r in RunStore(run_root).list(kind="train")]
    assert sorted(c["seed"] for c in configs) == [0, 1, 2]
    assert {c["group"] for c in configs}.__len__() == 1 and {c["split_seed"] for c in configs} == {0}
    assert {c["labels"] for c in configs} == {30}
    next(b for b in at.button if b.label == "Start run").click().run()  # the same group again: refused
    assert any("Not started" in w.value for w in at.warning) and len(RunStore(run_root).list(kind="train")) == 3
    next(t for t in at.text_input if t.label.startswith("seeds for a run group")).input("0,x")
    next(b for b in at.button if b.label == "Start run").click().run()
    assert any("seeds must be whole numbers" in e.value for e in at.error)


def test_a_watched_runs_eval_table_never_shows_none(run_root):
    """The teacher is scored at step 0 only: later rows have no teacher cell, which reads "—", never "None"."""
    from streamlit.testing.v1 import AppTest

    from kd_analysis.runs import RunStore

    run = RunStore(run_root).create("train", {"name": "evaluated"}, run_id="evaluated", state="finished")
    run.append_metrics({"step": 0, "teacher_accuracy": 0.9, "eval_accuracy": 0.5, "held_out": 30})
    for step in (5, 10):
        run.append_metrics({"step": step, "loss": 1.0, "total_steps": 10, "eval_accuracy": 0.75})
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.query_params["watch"] = "evaluated"
    at.switch_page(RUNS_PAGE).run()
    no_exception(at)
    tables = [df.value for df in at.dataframe if "step" in df.value.columns]
    assert tables, "the eval table is drawn"
    cells = [v for t in tables for v in t.astype(object).to_numpy().ravel()]
    assert not any(v is None or str(v) in ("None", "nan") for v in cells), cells


def test_the_runs_list_gives_a_rate_with_n_and_says_when_it_is_the_step_0_score(run_root):
    """A run cancelled before its first evaluation showed its step-0 accuracy as if training reached it."""
    from kd_analysis.runs import RunStore
    from kd_analysis.training.progress import latest_eval_words, run_progress

    store = RunStore(run_root)
    early = store.create("train", {"name": "early", "steps": 8}, run_id="early", state="cancelled")
    early.append_metrics({"step": 0, "held_out": 13, "eval_accuracy": 11 / 13})
    early.append_metrics({"step": 4, "loss": 1.0, "total_steps": 8})
    words = latest_eval_words(early, run_progress(early))
    assert words == "accuracy 84.6% (n = 13, 95% 58%–96%) at step 0 (before training)", words
    done = store.create("train", {"name": "done", "steps": 8}, run_id="done", state="finished")
    done.append_metrics({"step": 0, "held_out": 13, "eval_accuracy": 11 / 13})
    done.append_metrics({"step": 8, "loss": 0.5, "total_steps": 8, "eval_accuracy": 12 / 13})
    assert latest_eval_words(done, run_progress(done)) == "accuracy 92.3% (n = 13, 95% 67%–99%)"


@pytest.mark.slow
def test_saliency_live_settings_and_selection_live_in_the_url():
    """A copied link to live examples reopens the same pair, data and settings (it opened the defaults)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("pages/saliency_rationales.py").run()
    no_exception(at)
    at.selectbox(key="rationale_method").set_value("input_x_gradient").run()
    at.slider(key="rationale_k").set_value(3).run()
    sent = {k: (v[-1] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    assert {k: sent.get(k) for k in ("method", "k", "explain", "data")} == {
        "method": "input_x_gradient",
        "k": "3",
        "explain": "predicted",
        "data": "demo:mcq",
    }, sent
    fresh = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    fresh.run()
    for k, v in sent.items():
        fresh.query_params[k] = v
    fresh.switch_page("pages/saliency_rationales.py").run()
    no_exception(fresh)
    assert fresh.selectbox(key="rationale_method").value == "input_x_gradient"
    assert fresh.slider(key="rationale_k").value == 3
