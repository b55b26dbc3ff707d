"""The Error analysis page: its three figures (pure functions) and the page through AppTest on a small run store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from kd_analysis.plots.errors import choice_probs_figure, gap_interval, matrix_figure, slice_gaps_figure
from tests.helpers.error_runs import CHOICES, OTHER, PATTERN, RUN, page_records

ROOT = Path(__file__).resolve().parents[2]
PAGE = "pages/error_analysis.py"
TIMEOUT = 180
# (teacher right, student right) per example: 5 both right, 4 teacher only, 1 student only, 2 both wrong


# --- figures -------------------------------------------------------------------------------------------------------


def test_matrix_figure_shows_the_counts_in_their_cells():
    counts = {"both_right": 5, "teacher_only": 4, "student_only": 1, "both_wrong": 2}
    fig = matrix_figure(counts)
    heat = fig.data[0]
    assert [list(r) for r in heat.z] == [[5, 4], [1, 2]]  # rows: teacher right/wrong; columns: student right/wrong
    assert list(heat.y) == ["teacher right", "teacher wrong"] and list(heat.x) == ["student right", "student wrong"]
    assert heat.text[0][1].startswith("4")
    assert "n = 12" in fig.layout.title.text
    flips = matrix_figure(
        {"both_right": 1, "a_only": 2, "b_only": 3, "both_wrong": 4}, "a", "b", names=("<b>A</b>", "B")
    )
    assert [list(r) for r in flips.data[0].z] == [[1, 2], [3, 4]]
    assert flips.data[0].y[0] == "&lt;b&gt;A&lt;/b&gt; right"  # labels are escaped


def test_choice_probs_figure_has_one_bar_per_choice_and_model():
    fig = choice_probs_figure(CHOICES, [0.7, 0.1, 0.1, 0.1], [0.2, 0.5, 0.2, 0.1], gold=0)
    assert [t.name for t in fig.data] == ["teacher", "student"]
    assert list(fig.data[0].y) == [0.7, 0.1, 0.1, 0.1] and list(fig.data[1].y) == [0.2, 0.5, 0.2, 0.1]
    assert fig.data[0].x[0].startswith("✓") and not any(x.startswith("✓") for x in fig.data[0].x[1:])
    assert fig.layout.barmode == "group"
    only_student = choice_probs_figure(["<i>x</i>", "y"], None, [0.4, 0.6])
    assert len(only_student.data) == 1 and "&lt;i&gt;" in only_student.data[0].x[0]


def test_slice_gaps_figure_draws_each_gap_with_its_interval():
    rows = [
        {
            "name": "gold = 1",
            "n": 20,
            "gap": 0.3,
            "teacher_accuracy": 0.9,
            "student_accuracy": 0.6,
            "teacher_ci": (0.70, 0.97),
            "student_ci": (0.39, 0.78),
            "adjusted_p": 0.04,
        },
        {
            "name": "KL high",
            "n": 12,
            "gap": -0.1,
            "teacher_accuracy": 0.5,
            "student_accuracy": 0.6,
            "teacher_ci": (0.25, 0.75),
            "student_ci": (0.35, 0.81),
            "adjusted_p": 0.9,
        },
    ]
    fig = slice_gaps_figure(rows)
    bar = fig.data[0]
    assert list(bar.x) == [0.3, -0.1] and list(bar.y) == ["gold = 1", "KL high"]
    for r, plus, minus in zip(rows, bar.error_x.array, bar.error_x.arrayminus):
        lo, hi = gap_interval(r)
        assert lo < r["gap"] < hi
        assert r["gap"] + plus == pytest.approx(hi) and r["gap"] - minus == pytest.approx(lo)
    assert [c[0] for c in bar.customdata] == [20, 12]


def test_token_gaps_figure_draws_both_models_and_the_gap_on_one_axis():
    from kd_analysis.plots.errors import token_gaps_figure

    rows = [
        {"position": 0, "token": " 'Jack' <b>", "teacher": -0.1, "student": -2.3, "gap": 2.2},
        {"position": 1, "token": "<eos>", "teacher": -0.5, "student": -0.4, "gap": -0.1},
    ]
    fig = token_gaps_figure(rows)
    bars, teacher, student = fig.data
    assert list(bars.y) == [2.2, -0.1] and list(teacher.y) == [-0.1, -0.5] and list(student.y) == [-2.3, -0.4]
    assert all(t.yaxis in (None, "y") for t in fig.data)  # gaps and log p share the nats axis
    assert "'Jack' &lt;b&gt;" in bars.x[0] and "&lt;eos&gt;" in bars.x[1]  # quotes kept, markup escaped
    long = token_gaps_figure([{**rows[0], "token": "&&&&&&&&&&&&&&&&&&&&"}]).data[0].x[0]
    assert long.endswith("…") and not long.rstrip("…").endswith(("&", "&a", "&am"))  # never a cut entity


# --- the page ------------------------------------------------------------------------------------------------------


def _open(params: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    for k, v in (params or {}).items():
        at.query_params[k] = v
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _table(at: AppTest):
    return next(d.value for d in at.dataframe if "example id" in d.value.columns)


def _cell_button(at: AppTest, cell: str):
    return next(b for b in at.button if b.key == f"ea_cell_{cell}")


def test_page_shows_the_matrix_and_cells_filter_the_table(error_store):
    at = _open({"run": RUN})
    assert at.selectbox(key="ea_run").value == RUN
    labels = {b.key: b.label for b in at.button if b.key and b.key.startswith("ea_cell_")}
    assert labels["ea_cell_both_right"].endswith(": 5") and labels["ea_cell_teacher_only"].endswith(": 4")
    assert labels["ea_cell_student_only"].endswith(": 1") and labels["ea_cell_both_wrong"].endswith(": 2")
    sentence = next(m.value for m in at.markdown if m.value.startswith("The student is wrong on"))
    assert "wrong on 4 examples the teacher gets right and right on 1 it gets wrong" in sentence
    assert "not distinguishable" in sentence  # 4 vs 1 discordant: exact p = 0.375
    assert len(_table(at)) == 12
    first = _table(at).set_index("example id").loc["ex-01"]
    assert first["gold"] == "1: chair" and first["student answer"] == "1: chair"  # choice text beside the index
    _cell_button(at, "teacher_only").click().run()
    assert not at.exception
    table = _table(at)
    assert len(table) == 4 and set(table["cell"]) == {"teacher_only"}
    assert at.query_params["cell"] == ["teacher_only"] or at.query_params["cell"] == "teacher_only"


def test_bad_filter_is_one_error_line_and_a_good_one_filters(error_store):
    at = _open({"run": RUN})
    at.text_input(key="ea_filter").input("kl > ").run()
    assert not at.exception
    assert len(at.error) == 1 and "Filter not applied" in at.error[0].value
    assert len(_table(at)) == 12  # the table stays, unfiltered
    at.text_input(key="ea_filter").input("__import__('os')").run()
    assert not at.exception and len(at.error) == 1
    at.text_input(key="ea_filter").input("kl >= 0.3").run()
    assert not at.error and len(_table(at)) == 6


def test_query_params_select_run_cell_and_example(error_store):
    at = _open({"run": OTHER, "cell": "student_only", "example": "ex-10"})
    assert at.selectbox(key="ea_run").value == OTHER
    table = _table(at)
    assert set(table["cell"]) == {"student_only"} and len(table) == 2
    assert any("Example ex\\-10" in s.value for s in at.subheader)


def _note_form_save(at):
    return next(b for b in at.button if b.label == "Save" and b.proto.form_id == "ea_note_form")


def test_adding_a_note_and_tags_stores_them(error_store):
    from kd_analysis.error_analysis.notes import NotesStore

    at = _open({"run": RUN, "example": "ex-03"})
    at.text_area(key="ea_note_text").input("student confuses the *number* words")
    at.text_input(key="ea_note_author").input("ada")
    at.text_input(key="ea_note_tags").input("numbers, hard")
    _note_form_save(at).click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    notes = NotesStore.at(error_store.root)
    saved = notes.notes("demo:mcq", "ex-03")
    assert [(n.author, n.text) for n in saved] == [("ada", "student confuses the *number* words")]
    assert notes.tags("demo:mcq", "ex-03") == {"ex-03": ["hard", "numbers"]}
    assert any("student confuses the \\*number\\* words" in m.value for m in at.markdown)  # shown escaped
    next(b for b in at.button if b.key and b.key.startswith("ea_untag_") and "hard" in b.label).click().run()
    assert notes.tags("demo:mcq", "ex-03") == {"ex-03": ["numbers"]}


def test_default_run_follows_the_sidebar_data_set_and_flips_stay_on_it(error_store):
    """Every page uses the sidebar; the error page opens a run on the sidebar's data set, preferring a
    distillation student, and only offers flips against students evaluated on the same examples."""
    from kd_analysis.error_analysis.workspace import default_run

    kd = error_store.create(
        "train",
        {
            "data": "demo:sentiment",
            "name": "sentiment kd",
            "losses": [{"name": "ce", "weight": 0.5}, {"name": "kl", "weight": 0.5}],
        },
        run_id="test-sent-kd",
        state="finished",
    )
    ce = error_store.create(
        "train",
        {"data": "demo:sentiment", "name": "sentiment ce", "losses": [{"name": "ce", "weight": 1.0}]},
        run_id="test-sent-ce",
        state="finished",
    )
    for run in (ce, kd):
        with open(run.path / "predictions.jsonl", "w", encoding="utf-8") as fh:
            for row in page_records(run.run_id, PATTERN):
                fh.write(json.dumps(dict(row, data="demo:sentiment")) + "\n")
    paired = ["test-sent-ce", "test-sent-kd", RUN, OTHER]
    assert default_run(error_store, paired, "demo:sentiment") == "test-sent-kd"  # the KD student, not CE-only
    assert default_run(error_store, paired, "demo:sentiment", preferred=RUN) == "test-sent-kd"
    assert default_run(error_store, paired, "demo:mcq", preferred=OTHER) == OTHER
    assert default_run(error_store, paired, "demo:arithmetic", preferred=OTHER) == OTHER  # nothing on that data
    assert default_run(error_store, paired, "demo:arithmetic") == "test-sent-kd"
    assert default_run(error_store, [], "demo:mcq") is None

    at = _open({"data": "demo:sentiment"})
    assert at.selectbox(key="ea_run").value == "test-sent-kd"
    assert set(at.selectbox(key="ea_against").options) == {
        "(no: teacher × student of this run)",
        next(o for o in at.selectbox(key="ea_against").options if "sentiment ce" in o),
    }
    at.selectbox(key=state_key("data_source")).select("demo:mcq").run()  # the sidebar's data set changes
    assert not at.exception
    assert at.selectbox(key="ea_run").value in (RUN, OTHER)
    assert at.query_params["run"] in (RUN, OTHER, [RUN], [OTHER])


def state_key(field: str) -> str:
    from app_ui.state import widget_key

    return widget_key(field)


def test_against_shows_flips_and_no_records_is_explained(error_store, run_root):
    at = _open({"run": RUN, "against": OTHER})
    assert not at.exception
    sentence = next(m.value for m in at.markdown if m.value.startswith("The other run's student fixed"))
    assert "fixed 6 examples" in sentence and "broke 6" in sentence  # the other student flips every answer
    import shutil

    for run_id in (RUN, OTHER):
        shutil.rmtree(run_root / run_id)
    at = _open()
    assert any("errors backfill" in i.value for i in at.info)


def test_cached_explanation_is_shown_and_explain_starts_a_background_job(error_store):
    import time

    from kd_analysis.error_analysis.explain import EXPLANATIONS
    from kd_analysis.fileio import append_jsonl
    from tests.helpers.error_runs import explanation

    append_jsonl(error_store.root / RUN / EXPLANATIONS, explanation(RUN, "ex-05").to_dict())
    at = _open({"run": RUN, "example": "ex-05"})
    assert any("explains" in m.value and "apple" in m.value for m in at.markdown)
    assert not any(b.key == "ea_explain_one" for b in at.button)  # cached: nothing to start
    assert any("&lt;script&gt;" in h.proto.body for h in at.get("html"))  # attribution words escaped
    at = _open({"run": RUN, "example": "ex-06"})
    button = next(b for b in at.button if b.key == "ea_explain_one")
    assert button.label == "Rebuild weights and explain this example"  # the synthetic run kept no weights
    button.click().run()
    assert not at.exception and not at.error
    # the box polls from the click on: the page was redrawn with the job's progress, not left at the button
    assert any(p.proto.text.startswith("loading the models") for p in at.get("progress"))
    assert not any(b.key == "ea_explain_one" for b in at.button)
    jobs = error_store.list(kind="explanations")
    assert len(jobs) == 1 and error_store.get(jobs[0].run_id).config()["examples"] == ["ex-06"]
    deadline = time.monotonic() + 120
    while error_store.get(jobs[0].run_id).status()["state"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.5)
    at.run()
    assert any("the config needs a teacher" in e.value for e in at.error)  # the job's reason, one line


def test_sort_tags_saved_slices_and_prev_next_follow_the_table(error_store):
    from kd_analysis.error_analysis.notes import NotesStore

    notes = NotesStore.at(error_store.root)
    notes.add_tags("demo:mcq", "ex-02", ["hard"])
    notes.add_tags("demo:mcq", "ex-07", ["hard", "numbers"])
    notes.save_slice("demo:mcq", "low KL", "kl < 0.2")
    at = _open({"run": RUN})
    assert list(_table(at)["example id"])[:3] == ["ex-11", "ex-10", "ex-09"]  # KL, largest first
    at.toggle(key="ea_desc").set_value(False).run()
    ids = list(_table(at)["example id"])
    assert ids[:3] == ["ex-00", "ex-01", "ex-02"]
    assert any("Example ex\\-11" in s.value for s in at.subheader)  # still open, now the table's last row
    at.button(key="ea_next").click().run()  # next wraps to the table's first row, then its second
    assert any("Example ex\\-00" in s.value for s in at.subheader)
    at.button(key="ea_next").click().run()
    assert any("Example ex\\-01" in s.value for s in at.subheader)
    assert any("2 of 12 in this slice, sorted by KL" in c.value for c in at.caption)
    at.multiselect(key="ea_tags").set_value(["hard"]).run()
    assert list(_table(at)["example id"]) == ["ex-02", "ex-07"] and "hard, numbers" in list(_table(at)["tags"])
    at.multiselect(key="ea_tags").set_value([]).run()
    at.button(key="ea_use_saved").click().run()
    assert at.text_input(key="ea_filter").value == "kl < 0.2" and len(_table(at)) == 4


def test_pin_build_report_edit_and_delete_a_note(error_store):
    from kd_analysis.error_analysis.notes import NotesStore

    notes = NotesStore.at(error_store.root)
    note = notes.add_note("demo:mcq", "ex-03", "first thought", author="ada")
    at = _open({"run": RUN, "example": "ex-03"})
    at.button(key=f"ea_edit_btn_{note.id}").click().run()
    at.text_area(key=f"ea_edit_text_{note.id}").input("second thought")
    next(b for b in at.button if b.label == "Save" and b.proto.form_id == f"ea_edit_{note.id}").click().run()
    assert [n.text for n in notes.notes("demo:mcq", "ex-03")] == ["second thought"]
    assert any("edited" in m.value for m in at.markdown)
    at.button(key=f"ea_del_btn_{note.id}").click().run()
    assert notes.notes("demo:mcq", "ex-03") == []
    at.button(key="ea_pin").click().run()
    assert at.button(key="ea_pin").label == "Unpin"
    at.button(key="ea_build_report").click().run()
    assert not at.exception and not at.error
    assert any("1 pinned (0 with attributions)" in c.value for c in at.caption)


def test_two_runs_with_one_name_are_told_apart_in_the_run_picker(error_store):
    """Runs that differ in one setting share a name; the picker labels each with a short id, so choosing one
    (and a rerun after a click) never lands on the other."""
    from kd_analysis.fileio import atomic_write_json

    for rid in (RUN, OTHER):
        run = error_store.get(rid)
        atomic_write_json(run.path / "config.json", {**run.config(), "name": "0.5·ce + 0.5·kl"})
    at = _open({"run": OTHER})
    picker = at.selectbox(key="ea_run")
    labels = list(picker.options)  # AppTest lists the labels as drawn
    assert len(set(labels)) == len(labels), labels
    assert picker.value == OTHER


def _classifier_run(store, run_id: str, names: list[str] | None) -> None:
    """A two-class run's records: gold 0/1, no choices, as classification evaluations write them."""
    run = store.create("train", {"data": "demo:sentiment", "name": run_id}, run_id=run_id, state="finished")
    with open(run.path / "predictions.jsonl", "w", encoding="utf-8") as fh:
        for i, (t_ok, s_ok) in enumerate(PATTERN):
            gold = i % 2
            for role, ok, step in (("teacher", t_ok, 0), ("student", s_ok, 50)):
                pred = gold if ok else 1 - gold
                probs = [0.2, 0.2]
                probs[pred] = 0.8
                row = {
                    "run_id": run_id,
                    "data": "demo:sentiment",
                    "role": role,
                    "step": step,
                    "example_id": f"s-{i:02d}",
                    "gold": gold,
                    "prediction": pred,
                    "correct": ok,
                    "text": f"review {i}",
                    "choices": None,
                    "probs": probs,
                    "p_gold": probs[gold],
                    "p_pred": 0.8,
                }
                if names:
                    row["gold_name"] = names[gold]
                fh.write(json.dumps(row) + "\n")


@pytest.mark.parametrize("names", [["negative", "positive"], None], ids=["named classes", "a file's bare ids"])
def test_a_classifier_example_shows_its_classes_not_generated_text(error_store, names):
    """A classification example is its classes' probabilities under both models (it was shown as "generated 0,
    parsed: (none)"); classes are named where the records name them and by their ids otherwise."""
    _classifier_run(error_store, "test-sent-cls", names)
    at = _open({"run": "test-sent-cls", "example": "s-06"})
    assert not any(c.value in ("generated",) or c.value.startswith("parsed") for c in at.caption)
    chart = next(c for c in at.get("plotly_chart") if "ea_choices" in c.proto.id)
    figure = json.loads(chart.proto.spec)
    gold_bar = "✓ 0: negative" if names else "✓ 0"
    assert figure["data"][0]["x"] == ([gold_bar, "1: positive"] if names else [gold_bar, "1"])
    # a category axis: with bare ids plotly read "1" as a number and dropped the "✓ 0" bar
    assert figure["layout"]["xaxis"]["type"] == "category"
    table = _table(at)
    row = table[table["example id"] == "s-06"].iloc[0]
    assert row["gold"] == ("0: negative" if names else "0")
    assert all("LABEL" not in str(v) for v in row.values)


def test_switching_run_puts_the_new_run_and_its_first_example_in_the_address(error_store):
    at = _open({"run": RUN, "example": "ex-03"})
    at.selectbox(key="ea_run").select(OTHER).run()
    assert not at.exception
    assert at.query_params["run"] == [OTHER] or at.query_params["run"] == OTHER
    example = at.query_params["example"]
    assert (example[0] if isinstance(example, list) else example) == _table(at)["example id"].iloc[0]
