"""Compare runs: run names everywhere (alike names told apart), a readable and exportable config diff,
the teacher as a line on the accuracy chart, steps and epochs shown the same way everywhere, and the compared
runs kept in the URL."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from kd_analysis.plots.runs import metric_curves
from kd_analysis.runs import RunStore
from kd_analysis.training.progress import (
    common_prefix,
    curves,
    final_table,
    losses_label,
    plain,
    readable_config_diff,
    run_labels,
    steps_label,
    teacher_lines,
    teacher_metrics,
    unique_labels,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = RunStore(ROOT / "cached_runs")
PAGE = "pages/compare_runs.py"
TIMEOUT = 180


def _train(
    store: RunStore,
    run_id: str,
    cfg: dict,
    *,
    teacher_acc: float | None = 0.8,
    total: int = 4,
    epochs_done: float | None = None,
    accs=(0.3, 0.5),
    records: bool = False,
    **extra,
):
    """A finished training run: a step-0 teacher row, training rows (with teacher_cache_hits, as real ones
    have), evaluations at step 0 and at the end."""
    run = store.create("train", cfg, run_id=run_id, state="finished", **extra)
    if teacher_acc is not None:
        run.append_metrics({"step": 0, "teacher_accuracy": teacher_acc})
    run.append_metrics({"step": 0, "held_out": 20, "eval_accuracy": accs[0]})
    for s in range(1, total + 1):
        row = {
            "step": s,
            "total_steps": total,
            "loss": 1.0 / s,
            "loss_ce": 1.0 / s,
            "teacher_cache_hits": 8 * s,
            "elapsed_s": float(s),
        }
        if epochs_done is not None:
            row["epoch"] = epochs_done * s / total
        run.append_metrics(row)
    run.append_metrics({"step": total, "eval_accuracy": accs[1]})
    if records:
        (run.path / "predictions.jsonl").write_text("", encoding="utf-8")
    return run


# --- 1. names, told apart where they collide ------------------------------------------------------------------
def test_names_replace_ids_and_alike_names_get_a_short_id():
    labels = unique_labels(
        {
            "20261130-101010-train-aaa111": "MiniLM student: ce + kl",
            "20261130-101011-train-bbb222": "MiniLM student: ce + kl",
            "reference-x": "Reference X",
            "no-name-run": None,
            "blank": "  ",
        }
    )
    assert labels["reference-x"] == "Reference X"
    assert labels["no-name-run"] == "no-name-run" and labels["blank"] == "blank"  # the id when there is no name
    assert labels["20261130-101010-train-aaa111"] == "MiniLM student: ce + kl · aaa111"
    assert labels["20261130-101011-train-bbb222"] == "MiniLM student: ce + kl · bbb222"
    # ids whose last parts are alike: as many parts as it takes
    tail = unique_labels({"a-run-1": "same", "b-run-1": "same"})
    assert tail == {"a-run-1": "same · a-run-1", "b-run-1": "same · b-run-1"}
    # a run whose name is another's id, and a name that equals a disambiguated label: still all distinct
    tricky = unique_labels({"x": None, "y": "x", "p-1": "n", "p-2": "n", "q": "n · 1"})
    assert len(set(tricky.values())) == 5 and tricky["q"] == "n · 1"


def test_curves_keep_both_runs_whose_names_collide(run_root):
    store = RunStore(run_root)
    _train(store, "r-aaa", {"name": "student"}, accs=(0.2, 0.4))
    _train(store, "r-bbb", {"name": "student"}, accs=(0.2, 0.6))
    labels = run_labels(store, ["r-aaa", "r-bbb"])
    assert labels == {"r-aaa": "student · aaa", "r-bbb": "student · bbb"}
    acc = curves(store, ["r-aaa", "r-bbb"], "eval_accuracy")
    assert acc == {"student · aaa": ([0, 4], [0.2, 0.4]), "student · bbb": ([0, 4], [0.2, 0.6])}
    rows = final_table(store, ["r-aaa", "r-bbb"])
    assert [r["name"] for r in rows] == ["student · aaa", "student · bbb"] and [r["run"] for r in rows] == [
        "r-aaa",
        "r-bbb",
    ]
    diff = readable_config_diff(store, ["r-aaa", "r-bbb"])  # identical configs but for nothing: no rows
    assert diff == []


def test_common_prefix_is_a_whole_family_of_names():
    assert (
        common_prefix(["Reference student (2 layers): ce + kl", "Reference student (2 layers): ce + rkl"])
        == "Reference student (2 layers): "
    )
    assert common_prefix(["Reference: priming cot", "Reference: priming gold"]) == "Reference: "
    assert common_prefix(["Run: a", "Run: b"]) == ""  # too short to help
    assert common_prefix(["MiniLM student - lr 1e-4", "MiniLM student - lr 1e-3"]) == "MiniLM student - "
    assert common_prefix(["the same name: a", "the same name: a"]) == "the same name: "
    assert common_prefix(["one label: a"]) == "" and common_prefix(["abcdefghijklmn x", "abcdefghijklmn y"]) == ""


# --- 2. a readable, exportable config diff --------------------------------------------------------------------
def test_losses_in_words_with_weights_and_temperatures():
    kl = SHIPPED.get("reference-minilm-2l-kl").config()  # terms without their own τ: the run's τ = 2
    assert losses_label(kl) == "0.5·CE + 0.5·KL (τ = 2)"
    sinkd = SHIPPED.get("reference-minilm-3l-sentiment-sinkd").config()
    assert losses_label(sinkd) == "0.1·CE + 0.9·soft CE + 0.8·Sinkhorn (τ = 2)"
    assert losses_label({"losses": [{"name": "ce", "weight": 1.0}]}) == "1·CE"  # CE has no temperature
    mixed = {
        "tau": 2.0,
        "losses": [
            {"name": "ce", "weight": 0.2},
            {"name": "kl", "weight": 0.8, "tau": 4.0},
            {"name": "sinkhorn", "weight": 0.1},
            {"name": "js", "weight": 0},
        ],
    }
    assert losses_label(mixed) == "0.2·CE + 0.8·KL (τ = 4) + 0.1·Sinkhorn (τ = 2)"  # js weighs nothing
    annealed = {"tau": 1.0, "losses": [{"name": "soft_ce", "weight": 1.0, "tau": 4.0, "tau_end": 1.0}]}
    assert losses_label(annealed) == "1·soft CE (τ = 4→1)"
    multitask = {"losses": [{"name": "ce", "weight": 1.0}], "rationales": {"mode": "multitask", "weight": 0.5}}
    assert losses_label(multitask) == "1·CE + 0.5·rationale"
    assert losses_label({"losses": [{"name": "ce", "weight": "heavy"}, 3]}) == "? + ?"
    assert losses_label({"losses": "ce"}) == "?" and losses_label({}) == ""


def test_plain_values():
    assert plain(1e-4) == "0.0001" and plain(4e-05) == "4e-05" and plain(True) == "yes" and plain(None) == "—"
    assert plain([]) == "—" and plain(["q_proj", "v_proj"]) == "q_proj, v_proj"
    assert plain(list(range(20)) + [22, 23]) == "0–19, 22, 23"


def test_readable_diff_names_runs_and_explains_steps(run_root):
    store = RunStore(run_root)
    base = {"lr": 1e-4, "tau": 2.0, "steps": 100, "epochs": 4, "teacher": {"source": "minilm"}}
    _train(
        store,
        "a",
        {**base, "name": "KL", "losses": [{"name": "ce", "weight": 0.5}, {"name": "kl", "weight": 0.5}]},
        total=8,
        epochs_done=4.0,
    )
    # steps 50 is not used (epochs is set) and the run trained as long: not a difference
    _train(
        store,
        "b",
        {
            **base,
            "name": "Sinkhorn",
            "steps": 50,
            "lr": 5e-5,
            "losses": [
                {"name": "ce", "weight": 0.5},
                {"name": "sinkhorn", "weight": 0.5, "params": {"eps": 0.1, "iters": 20}},
            ],
        },
        total=8,
        epochs_done=4.0,
    )
    rows = {r["setting"]: r for r in readable_config_diff(store, ["a", "b"])}
    assert set(rows) == {"name", "losses", "loss settings", "lr"}
    assert (
        rows["losses"]["KL"] == "0.5·CE + 0.5·KL (τ = 2)"
        and rows["losses"]["Sinkhorn"] == "0.5·CE + 0.5·Sinkhorn (τ = 2)"
    )
    assert rows["loss settings"] == {"setting": "loss settings", "KL": "—", "Sinkhorn": "Sinkhorn: eps 0.1, iters 20"}
    assert rows["lr"]["KL"] == "0.0001" and rows["lr"]["Sinkhorn"] == "5e-05"
    assert list(readable_config_diff(store, ["a", "b"])[0]) == ["setting", "KL", "Sinkhorn"]  # names as columns
    # a longer run: one "steps" row in the same words as the final table
    _train(
        store,
        "c",
        {
            **base,
            "name": "KL long",
            "epochs": 8,
            "losses": [{"name": "ce", "weight": 0.5}, {"name": "kl", "weight": 0.5}],
        },
        total=16,
        epochs_done=8.0,
    )
    rows = {r["setting"]: r for r in readable_config_diff(store, ["a", "c"])}
    assert rows["steps"] == {"setting": "steps", "KL": "8 steps = 4 epochs", "KL long": "16 steps = 8 epochs"}
    assert "epochs" not in rows
    # exported as CSV, as the page's download button writes it
    csv = pd.DataFrame(readable_config_diff(store, ["a", "b"])).to_csv(index=False)
    back = pd.read_csv(io.StringIO(csv)).set_index("setting")
    assert back.loc["losses", "KL"] == "0.5·CE + 0.5·KL (τ = 2)" and back.loc["lr", "Sinkhorn"] == "5e-05"


# --- 3. the teacher on the accuracy chart ---------------------------------------------------------------------
def test_teacher_lines_one_per_distinct_teacher(run_root):
    store = RunStore(run_root)
    _train(store, "a", {"name": "A", "teacher": {"source": "cached_runs/t-mc/checkpoint"}}, teacher_acc=0.8)
    _train(store, "b", {"name": "B", "teacher": {"source": "cached_runs/t-mc/checkpoint"}}, teacher_acc=0.8)
    _train(store, "c", {"name": "C", "teacher": {"source": "smollm2-135m-instruct"}}, teacher_acc=0.6)
    _train(store, "d", {"name": "D", "teacher": {"source": "x"}}, teacher_acc=None)  # no teacher evaluation
    same = teacher_lines(store, ["a", "b"], "eval_accuracy")
    assert same == [{"label": "teacher t-mc", "value": 0.8, "runs": ["A", "B"]}]
    two = teacher_lines(store, ["a", "b", "c", "d"], "eval_accuracy")
    assert [(t["label"], t["value"]) for t in two] == [("teacher t-mc", 0.8), ("teacher smollm2-135m-instruct", 0.6)]
    assert teacher_lines(store, ["a"], "loss") == [] and teacher_lines(store, ["a"], "eval_exact_match") == []
    # one teacher that scored differently (another held-out set): a line per value, naming its runs
    _train(store, "e", {"name": "E", "teacher": {"source": "cached_runs/t-mc/checkpoint"}}, teacher_acc=0.7)
    split = teacher_lines(store, ["a", "e"], "eval_accuracy")
    assert [t["label"] for t in split] == ["teacher t-mc · for A", "teacher t-mc · for E"]
    # primed teachers are different teachers
    _train(store, "p1", {"name": "P1", "teacher": "smollm2", "priming": {"strategy": "cot"}}, teacher_acc=0.1)
    _train(store, "p2", {"name": "P2", "teacher": "smollm2", "priming": {"strategy": "none"}}, teacher_acc=0.1)
    assert [t["label"] for t in teacher_lines(store, ["p1", "p2"], "eval_accuracy")] == [
        "teacher smollm2 (primed: cot)",
        "teacher smollm2 (primed: none)",
    ]


def test_teacher_metrics_are_evaluations_not_cache_counters():
    metrics = SHIPPED.get("reference-minilm-2l-kl").metrics()
    assert any("teacher_cache_hits" in m for m in metrics)
    assert teacher_metrics(metrics) == {"accuracy": pytest.approx(0.7884615)}
    [row] = final_table(SHIPPED, ["reference-minilm-2l-kl"])
    assert row["teacher accuracy"] == pytest.approx(0.7884615) and "teacher cache_hits" not in row


def test_accuracy_chart_draws_each_teacher_as_a_labelled_horizontal_line():
    runs = {
        "Reference student (2 layers): ce + kl": ([0, 27, 108], [0.35, 0.5, 0.6]),
        "Reference student (2 layers): ce + rkl": ([0, 27, 108], [0.35, 0.45, 0.58]),
    }
    teachers = [
        {"label": "teacher t-mc", "value": 0.7884615, "runs": list(runs)},
        {"label": "teacher smollm2", "value": 0.73, "runs": []},
    ]
    fig = metric_curves(runs, "eval_accuracy", teachers)
    assert [t.name for t in fig.data] == ["ce + kl", "ce + rkl", "teacher t-mc: 78.8%", "teacher smollm2: 73.0%"]
    assert fig.layout.legend.title.text == "Reference student (2 layers):"  # the words every run shares
    line = fig.data[2]
    assert list(line.x) == [0, 108] and list(line.y) == pytest.approx([0.7884615] * 2) and line.line.dash
    assert fig.data[3].line.dash != line.line.dash  # told apart
    assert "Reference student (2 layers): ce + kl" in fig.data[0].hovertemplate  # the whole name on hover
    assert len(metric_curves(runs, "eval_accuracy").data) == 2  # no teacher, no line
    many = {f"run {i}": ([0, 1], [0.1, 0.2]) for i in range(6)}
    assert metric_curves(many, "eval_accuracy", teachers * 3).layout.height > fig.layout.height  # room for the legend
    nll = metric_curves({"A": ([0, 5], [2.0, 1.0])}, "eval_answer_nll", [{"label": "teacher", "value": 1.5}])
    assert nll.data[1].name == "teacher: 1.5"


def test_long_alike_legend_names_stay_distinct():
    long = "x" * 70
    fig = metric_curves({f"{long} · aaa": ([1], [1.0]), f"{long} · bbb": ([1], [2.0])}, "loss")
    names = [t.name for t in fig.data]
    assert len(set(names)) == 2 and names[0].endswith("· aaa") and len(names[0]) <= 60


# --- 5. steps and epochs, the same everywhere -----------------------------------------------------------------
def test_steps_label_explains_config_steps_versus_epochs():
    epochs = {"steps": 100, "epochs": 4}
    done = [{"step": s, "total_steps": 108, "loss": 1.0, "epoch": s / 27} for s in (1, 107, 108)]
    assert steps_label(epochs, done) == "108 steps = 4 epochs"
    assert (
        steps_label(epochs, done[:1] + [{"step": 54, "total_steps": 108, "loss": 1.0, "epoch": 2.0}])
        == "54 of 108 steps = 2 of 4 epochs"
    )
    assert steps_label(epochs, []) == "4 epochs"  # not started: the total is known once the worker starts
    assert (
        steps_label({"steps": 30}, [{"step": 30, "total_steps": 30, "loss": 1.0, "epoch": 0.857}])
        == "30 steps = 0.86 epochs"
    )
    assert steps_label({"steps": 30}, [{"step": 30, "loss": 1.0}]) == "30 steps"
    assert steps_label({"steps": 100}, []) == "0 of 100 steps"
    assert (
        steps_label({"steps": 10, "epochs": 1}, [{"step": 10, "total_steps": 10, "loss": 1.0, "epoch": 1.0}])
        == "10 steps = 1 epoch"
    )
    # the shipped run whose config says 100 steps trained 108
    kl = SHIPPED.get("reference-minilm-2l-kl")
    assert kl.config()["steps"] == 100 and kl.metrics()[-1]["step"] == 108
    assert final_table(SHIPPED, ["reference-minilm-2l-kl"])[0]["steps"] == "108 steps = 4 epochs"


# --- 1, 4, 6, 7. the page -------------------------------------------------------------------------------------
@pytest.fixture
def page_store(run_root):
    store = RunStore(run_root)
    mc = {"teacher": {"source": "cached_runs/t-mc/checkpoint"}, "tau": 2.0, "steps": 100, "epochs": 2}
    _train(
        store,
        "run-kl",
        {
            **mc,
            "name": "MiniLM student: ce + kl",
            "lr": 1e-4,
            "losses": [{"name": "ce", "weight": 0.5}, {"name": "kl", "weight": 0.5}],
        },
        epochs_done=2.0,
        records=True,
        reference=False,
    )
    _train(
        store,
        "run-rkl",
        {
            **mc,
            "name": "MiniLM student: ce + rkl",
            "lr": 2e-4,
            "losses": [{"name": "ce", "weight": 0.5}, {"name": "rkl", "weight": 0.5}],
        },
        epochs_done=2.0,
        accs=(0.3, 0.7),
        records=True,
        reference=False,
    )
    _train(
        store,
        "twin-aaa",
        {**mc, "name": "Twin", "losses": [{"name": "ce", "weight": 1.0}]},
        epochs_done=2.0,
        reference=False,
    )
    _train(
        store,
        "twin-bbb",
        {**mc, "name": "Twin", "losses": [{"name": "ce", "weight": 1.0}], "lr": 1.0},
        epochs_done=2.0,
        reference=False,
    )
    return store


def _open(params: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    for k, v in (params or {}).items():
        at.query_params[k] = v
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _param(at: AppTest, key: str):
    value = at.query_params.get(key)
    return value[-1] if isinstance(value, list) and value else value


def _final(at: AppTest) -> pd.DataFrame:
    return next(df.value for df in at.dataframe if "final loss" in df.value.columns)


CONTENT_PX = 940  # the page's width at a 1400 px window, less the sidebar and margins


def assert_readable(at: AppTest) -> None:
    """Every column of the final-metrics table has a width, its header fits it (headers do not wrap; about
    6.5 px a character and the cell padding), all columns fit in the page at 1400 px, and rows are tall enough
    to wrap (Streamlit wraps only rows over 64 px) when a name or loss text is longer than its column."""
    element = next(df for df in at.dataframe if "final loss" in df.value.columns)
    config = {k: v for k, v in json.loads(element.proto.columns).items() if not v.get("hidden")}
    assert set(config) == set(element.value.columns)
    for column, c in config.items():
        assert isinstance(c.get("width"), int), column
        assert len(c["label"]) * 6.5 + 16 <= c["width"], (column, c["label"], c["width"])
    assert sum(c["width"] for c in config.values()) <= CONTENT_PX, {k: c["width"] for k, c in config.items()}
    texts = [(str(v), config[col]["width"]) for col in ("name", "steps", "losses") for v in element.value[col]]
    if any(len(t) * 6.4 > w - 18 for t, w in texts):
        assert element.proto.row_height > 64


def test_url_selects_the_runs_and_the_page_shows_their_names(page_store):
    at = _open({"runs": "run-rkl,run-kl"})
    assert at.multiselect(key="cmp_runs").value == ["run-rkl", "run-kl"]
    assert at.radio(key="cmp_preset").value is None  # the URL's choice is no preset
    final = _final(at)
    assert list(final["name"]) == ["MiniLM student: ce + rkl", "MiniLM student: ce + kl"]  # names, not ids
    assert list(final["steps"]) == ["4 steps = 2 epochs"] * 2
    assert list(final["losses"]) == ["0.5·CE + 0.5·RKL (τ = 2)", "0.5·CE + 0.5·KL (τ = 2)"]
    assert list(final["final accuracy"]) == [0.7, 0.5] and "teacher accuracy" in final.columns
    assert "run" not in final.columns  # the ids are in the run details (and the headers' tooltips)
    assert_readable(at)
    details = next(df.value for df in at.dataframe if "state" in df.value.columns)
    assert list(details["run"]) == ["run-rkl", "run-kl"]
    diff = next(df.value for df in at.dataframe if "setting" in df.value.columns)
    assert list(diff.columns) == ["setting", "MiniLM student: ce + rkl", "MiniLM student: ce + kl"]
    assert diff.set_index("setting").loc["losses", "MiniLM student: ce + kl"] == "0.5·CE + 0.5·KL (τ = 2)"
    # charts: runs by name, the teacher's line on the accuracy chart
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    accuracy = next(s for s in specs if s["layout"]["title"]["text"] == "eval_accuracy")
    names = [t["name"] for t in accuracy["data"]]
    assert names == ["ce + rkl", "ce + kl", "teacher t-mc: 80.0%"]
    assert [b.proto.label for b in at.get("download_button")] == [
        "Final metrics (CSV)",
        "Curves (CSV)",
        "Differences (CSV)",
    ]
    # the error-analysis link goes to /error_analysis with the run
    links = [e.proto for e in at.get("page_link")]
    assert any(link.page == "error_analysis" and "run=run-rkl" in link.query_string for link in links), links
    at.selectbox(key="cmp_errors_run").set_value("run-kl").run()
    links = [e.proto for e in at.get("page_link")]
    assert any(link.page == "error_analysis" and link.query_string == "run=run-kl" for link in links)


def test_changing_the_selection_writes_the_url_and_alike_names_are_told_apart(page_store):
    at = _open({"runs": "run-kl"})
    at.multiselect(key="cmp_runs").set_value(["twin-aaa", "twin-bbb", "run-kl"]).run()
    assert not at.exception
    assert _param(at, "runs") == "twin-aaa,twin-bbb,run-kl"
    final = _final(at)
    assert list(final["name"]) == ["Twin · aaa", "Twin · bbb", "MiniLM student: ce + kl"]
    diff = next(df.value for df in at.dataframe if "setting" in df.value.columns)
    assert {"Twin · aaa", "Twin · bbb"} <= set(diff.columns)
    at.multiselect(key="cmp_runs").set_value([]).run()
    assert _param(at, "runs") is None and any("Choose at least one run" in i.value for i in at.info)


def test_unknown_runs_in_the_url_are_left_out_with_a_warning(page_store):
    at = _open({"runs": "gone,run-kl"})
    assert at.multiselect(key="cmp_runs").value == ["run-kl"]
    assert any("gone" in w.value for w in at.warning)


def test_without_a_url_the_page_starts_from_the_users_runs_and_writes_them(page_store):
    at = _open()
    chosen = at.multiselect(key="cmp_runs").value
    assert chosen and set(chosen) <= {"run-kl", "run-rkl", "twin-aaa", "twin-bbb"}
    assert _param(at, "runs") == ",".join(chosen)


def test_shipped_reference_presets_fill_the_url(run_root):
    import shutil

    for ref in (ROOT / "cached_runs").glob("reference-smollm2-priming-*"):  # their records, not their weights
        if (ref / "config.json").is_file():
            (run_root / ref.name).mkdir(parents=True)
            for name in ("config.json", "status.json", "metrics.jsonl"):
                shutil.copy(ref / name, run_root / ref.name / name)
    at = _open()
    at.radio(key="cmp_preset").set_value("priming: one student per strategy").run()
    assert not at.exception
    chosen = at.multiselect(key="cmp_runs").value
    assert chosen and all(r.startswith("reference-smollm2-priming-") for r in chosen)
    assert _param(at, "runs") == ",".join(chosen)
    final = _final(at)
    assert set(final["steps"]) == {"30 steps = 0.86 epochs"}
    assert {"final exact_match", "final answer_nll", "teacher exact_match"} <= set(final.columns)
    assert_readable(at)
    diff = next(df for df in at.dataframe if "setting" in df.value.columns)
    widths = [c["width"] for c in json.loads(diff.proto.columns).values() if not c.get("hidden")]
    assert len(widths) == len(chosen) + 1 and sum(widths) <= CONTENT_PX  # no sideways scrolling
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    em = next(s for s in specs if s["layout"]["title"]["text"] == "eval_exact_match")
    teachers = [t["name"] for t in em["data"] if t["name"].startswith("teacher")]
    assert len(teachers) == len(chosen) and any("(primed: cot): 8.3%" in t for t in teachers)  # one per primed teacher
    # a choice edited by hand is no longer the preset
    at.multiselect(key="cmp_runs").set_value(chosen[:2]).run()
    assert at.radio(key="cmp_preset").value is None and _param(at, "runs") == ",".join(chosen[:2])
    at.radio(key="cmp_preset").set_value("priming: one student per strategy").run()
    assert at.multiselect(key="cmp_runs").value == chosen


def test_names_in_header_tooltips_are_literal(run_root):
    """Column tooltips render Markdown: a run named like a link shows as text there."""
    from app_ui.safe_text import md

    store = RunStore(run_root)
    link = "[click](javascript:alert(1)) run"
    _train(store, "md-a", {"name": link, "lr": 0.1})
    _train(store, "md-b", {"name": "plain run", "lr": 0.2})
    at = _open({"runs": "md-a,md-b"})
    diff = next(df for df in at.dataframe if "setting" in df.value.columns)
    tips = [c.get("help") or "" for c in json.loads(diff.proto.columns).values()]
    assert any(md(link) in t for t in tips) and not any(link in t for t in tips)


def test_runs_without_held_out_still_get_n_and_an_interval_from_their_records():
    """Every rate beside its n and 95% interval: the reference runs predate the `held_out` metric, so n comes
    from their per-example records."""
    from pathlib import Path

    from kd_analysis.runs import RunStore
    from kd_analysis.stats.intervals import wilson_interval
    from kd_analysis.training.progress import final_table

    store = RunStore(Path(__file__).resolve().parents[2] / "cached_runs")
    row, gen = final_table(store, ["reference-minilm-2l-rkl", "reference-smollm2-priming-gold"])
    assert row["eval n"] == 52 and gen["eval n"] == 24
    low, high = wilson_interval(row["final accuracy"], 52)
    assert row["final accuracy 95% interval"] == f"{low:.1%}–{high:.1%}"
    assert "final exact_match 95% interval" in gen


def test_a_cancelled_runs_numbers_say_they_are_from_before_training(run_root):
    """A run cancelled before its first evaluation has only its step-0 numbers: the table says so."""
    store = RunStore(run_root)
    _train(store, "done", {"name": "trained"}, accs=(0.2, 0.6))
    cancelled = store.create("train", {"name": "stopped", "steps": 4}, run_id="stopped", state="cancelled")
    cancelled.append_metrics({"step": 0, "held_out": 20, "eval_accuracy": 0.2})
    rows = {r["run"]: r for r in final_table(store, ["done", "stopped"])}
    assert rows["done"]["evaluated at"] == "step 4" and rows["done"]["final accuracy"] == 0.6
    assert rows["stopped"]["evaluated at"] == "step 0 (before training)"


def test_your_runs_open_with_finished_ones_not_the_newest_whatever_their_state():
    from kd_analysis.runs import RunSummary
    from kd_analysis.training.progress import runs_worth_comparing

    def run(rid, state, steps):
        return RunSummary(rid, "train", state, "", "", steps=steps)

    newest_first = [
        run("c1", "cancelled", 0),
        run("c2", "cancelled", 3),
        run("r0", "running", 0),
        run("f1", "finished", 40),
        run("r1", "running", 12),
        run("f2", "finished", 40),
    ]
    assert runs_worth_comparing(newest_first) == ["f1", "f2", "r1"]
    assert runs_worth_comparing([run("c1", "cancelled", 0)]) == ["c1"]  # nothing better: still something to show


def test_a_run_that_never_evaluated_reads_dashes_not_none(page_store):
    """A run cancelled before any evaluation sits beside finished ones: its cells read "—" (they read "None")."""
    page_store.create(
        "train",
        {"name": "never evaluated", "losses": [{"name": "ce", "weight": 1.0}]},
        run_id="run-none",
        state="cancelled",
    )
    at = _open({"runs": "run-kl,run-none"})
    tables = [df.value for df in at.dataframe if "final loss" in df.value.columns or "state" in df.value.columns]
    assert len(tables) == 2
    for table in tables:
        cells = [v for col in table.columns for v in table[col]]
        assert not any(v is None or (isinstance(v, float) and v != v) for v in cells), table.to_dict("records")
    final = _final(at)
    assert final.loc[final["name"] == "never evaluated", "final accuracy"].tolist() == ["—"]
    assert final.loc[final["name"] == "MiniLM student: ce + kl", "final accuracy"].tolist() == ["50.0%"]
