"""Error analysis: where the student fails and the teacher did not (or what a second run fixed and broke).

The 2×2 right/wrong matrix of one run with the exact McNemar test, the examples of one cell (safe filter, search,
CSV), one example side by side with notes and tags, and the slice finder. The view lives in the URL (`run`,
`against`, `cell`, `example`), so a copied link reopens it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from app_ui import state
from app_ui.error_views import (
    explanation_panel,
    export_buttons,
    inside_panel,
    inside_slices_panel,
    notes_panel,
    report_panel,
)
from app_ui.navigation import run_under_app
from app_ui.resources import show_error
from app_ui.safe_text import md
from app_ui.views import headline_metric
from kd_analysis.data.refs import describe_data
from kd_analysis.error_analysis.filters import select_examples
from kd_analysis.error_analysis.frames import (
    PREDICTIONS,
    answer_label,
    answer_options,
    frame_class_names,
    load_records,
    option_index,
    row_answer,
)
from kd_analysis.error_analysis.slices import find_slices, finding_rows
from kd_analysis.error_analysis.workspace import PairView, default_run, notes_store, pair_view, run_data
from kd_analysis.exceptions import user_message
from kd_analysis.plots.errors import choice_probs_figure, matrix_cells, matrix_figure, slice_gaps_figure
from kd_analysis.runs import RunStore
from kd_analysis.stats.intervals import wilson_interval
from kd_analysis.training.progress import unique_labels

run_under_app()  # before anything draws: a page file run by itself hands over to app.py

PARAMS = ("run", "against", "cell", "example")
DEFAULT_RUN = "reference-minilm-2l-kl"
NO_OTHER = ""  # a real option: a selectbox holding None shows an empty placeholder instead of its label


def _stamp(store: RunStore, run_id: str) -> tuple[float, int]:
    try:
        info = (store.folder(run_id) / PREDICTIONS).stat()
        return info.st_mtime, info.st_size
    except OSError:
        return 0.0, 0


@st.cache_data(show_spinner=False, max_entries=256)
def _roles(root: str, run_id: str, stamp: tuple[float, int]) -> tuple[str, ...]:
    try:
        frame = load_records(RunStore(root).folder(run_id) / PREDICTIONS)
    except Exception:
        return ()
    return tuple(sorted(str(r) for r in frame["role"].dropna().unique()))


@st.cache_data(show_spinner=False, max_entries=16)
def _pair(root: str, run_id: str, against: str | None, stamps: tuple) -> PairView:
    """Teacher × student of one run, or its student × another run's student (cached per file version)."""
    return pair_view(RunStore(root), run_id, against)


@dataclass(frozen=True)
class RecordedRuns:
    """The runs with per-example records, and which roles (teacher, student) each recorded."""

    store: RunStore
    runs: dict[str, Any]  # run id -> its summary
    roles: dict[str, tuple[str, ...]]

    @property
    def paired(self) -> list[str]:
        return [rid for rid in self.runs if {"teacher", "student"} <= set(self.roles[rid])]

    @property
    def students(self) -> list[str]:
        return [rid for rid in self.runs if "student" in self.roles[rid]]

    def label(self, rid: str) -> str:
        # two runs may share a name (runs that differ in one setting): a short id tells them apart
        names = unique_labels({r: s.name for r, s in self.runs.items()})
        kinds = "teacher + student" if rid in self.paired else " + ".join(self.roles[rid]) + " only"
        return f"{names[rid]} ({kinds}) · {describe_data(run_data(self.store, rid))}"


@dataclass(frozen=True)
class Opened:
    """The pair on the page (teacher × student of a run, or two runs' students) and what is filed under its data
    set: notes, tags and saved slices."""

    store: RunStore
    pv: PairView
    class_names: dict | None
    data_name: str
    ns: Any  # the notes store; None when it cannot be read
    tags_by_example: dict[str, list[str]]
    saved_slices: dict[str, str]

    @property
    def frame(self) -> pd.DataFrame:
        return self.pv.frame

    @property
    def first(self) -> str:
        return self.pv.first

    @property
    def second(self) -> str:
        return self.pv.second

    @property
    def names(self) -> tuple[str, str]:
        return self.pv.names

    @property
    def cell_words(self) -> dict[str, str]:
        return {
            "both_right": "both right",
            f"{self.first}_only": f"only {self.names[0]} right",
            f"{self.second}_only": f"only {self.names[1]} right",
            "both_wrong": "both wrong",
            "all": "all examples",
        }


def recorded_runs(store: RunStore) -> RecordedRuns:
    with_records = {r.run_id: r for r in store.list() if (store.folder(r.run_id) / PREDICTIONS).is_file()}
    roles = {rid: _roles(str(store.root), rid, _stamp(store, rid)) for rid in with_records}
    return RecordedRuns(store, {rid: r for rid, r in with_records.items() if roles[rid]}, roles)


def follow_url_and_sidebar(recorded: RecordedRuns, sel: state.Selection) -> None:
    """The URL is the view: applied when it changed from outside (a link, a pasted address). The default run
    follows the sidebar's data set, as every page does; a link's run wins over it."""
    store, runs = recorded.store, recorded.runs
    start_run = default_run(store, recorded.paired, sel.data_source, DEFAULT_RUN) or next(iter(runs))
    url = state.url_arrivals(*PARAMS)
    if url is not None:
        st.session_state["ea_run"] = url["run"] if url["run"] in runs else start_run
        st.session_state["ea_against"] = url["against"] if url["against"] in recorded.students else ""
        st.session_state["ea_cell"] = url["cell"] or "all"
        st.session_state["ea_example"] = url["example"]
    st.session_state.setdefault("ea_cell", "all")
    st.session_state.setdefault("ea_example", None)
    if st.session_state.get("ea_run") not in runs:
        st.session_state["ea_run"] = start_run
    elif (
        st.session_state.get("_ea_sidebar_data") not in (None, sel.data_source)
        and run_data(store, st.session_state["ea_run"]) != sel.data_source
    ):
        # the sidebar's data set changed since this page last drew: open a run on it, from the matrix
        st.session_state.update(ea_run=start_run, ea_against="", ea_cell="all", ea_example=None)
    st.session_state["_ea_sidebar_data"] = sel.data_source


def write_url() -> None:
    want = {
        "run": st.session_state.get("ea_run"),
        "against": st.session_state.get("ea_against") or None,
        "cell": None if st.session_state.get("ea_cell") == "all" else st.session_state.get("ea_cell"),
        "example": st.session_state.get("ea_example"),
    }
    for k, v in want.items():
        state.write_url_state(k, v)


def _reset_view() -> None:
    st.session_state["ea_cell"] = "all"
    st.session_state["ea_example"] = None


def _pick_cell(cell: str) -> None:
    st.session_state["ea_cell"] = cell
    st.session_state["ea_example"] = None


def choose_runs(recorded: RecordedRuns) -> tuple[str, str | None] | None:
    """A run, and optionally another run's student to compare its student with (flips); None when the run has
    no teacher to pair its student with."""
    store = recorded.store
    c1, c2 = st.columns(2)
    run_id = c1.selectbox(
        "Run",
        list(recorded.runs),
        key="ea_run",
        format_func=recorded.label,
        on_change=_reset_view,
        help="runs with per-example records (predictions.jsonl)",
    )
    # flips compare the same examples: only students evaluated on this run's data set
    against_options = [NO_OTHER] + [
        r for r in recorded.students if r != run_id and run_data(store, r) == run_data(store, run_id)
    ]
    if st.session_state.get("ea_against") not in against_options:
        st.session_state["ea_against"] = NO_OTHER
    against = (
        c2.selectbox(
            "Compare its student with another run's (flips)",
            against_options,
            key="ea_against",
            format_func=lambda r: "(no: teacher × student of this run)" if r == NO_OTHER else recorded.label(r),
            on_change=_reset_view,
        )
        or None
    )
    write_url()  # the run is in the address as soon as it is picked, not only once the whole page has drawn
    if against is None and run_id not in recorded.paired:
        st.info(
            f"Run {md(run_id)} has {md(' and '.join(recorded.roles[run_id]))} records only; the matrix needs both a "
            "teacher and a student. Pick a distillation run, or compare its student with another run's.",
            icon=":material/info:",
        )
        return None
    return run_id, against


def open_pair(store: RunStore, run_id: str, against: str | None) -> Opened | None:
    try:
        stamps = (_stamp(store, run_id), _stamp(store, against) if against else None)
        pv = _pair(str(store.root), run_id, against, stamps)
    except Exception as exc:
        show_error(exc)
        return None
    cells = [c for row in matrix_cells(pv.first, pv.second) for c in row]
    if st.session_state["ea_cell"] not in (*cells, "all"):
        st.session_state["ea_cell"] = "all"
    data_name = run_data(store, run_id)  # notes, tags and saved slices are filed under it
    try:
        ns = notes_store(store)
        tags_by_example, saved_slices = ns.tags(data_name), ns.slices(data_name)
    except Exception as exc:
        ns, tags_by_example, saved_slices = None, {}, {}
        show_error(exc)
    # "0: negative" where the records name the classes
    return Opened(store, pv, frame_class_names(pv.frame), data_name, ns, tags_by_example, saved_slices)


def right_wrong_matrix(o: Opened) -> None:
    """Both models' accuracies with their intervals, McNemar's sentence, the matrix and a button per cell."""
    st.subheader("Right/wrong matrix")
    pv, first, second, names, n = o.pv, o.first, o.second, o.names, o.pv.n
    m1, m2, m3 = st.columns([2, 2, 3])
    for col, name, acc in ((m1, names[0], pv.accuracies[0]), (m2, names[1], pv.accuracies[1])):
        lo, hi = wilson_interval(acc, n)
        headline_metric(
            col,
            f"{name} accuracy",
            f"{acc:.1%}",
            n,
            f"95% {lo:.1%}–{hi:.1%}",
            help="95% Wilson interval over the n held-out examples",
        )
    m3.markdown(pv.sentence())
    m3.caption(
        md(pv.counts.get("test", "exact McNemar test"))
        + f" · {md(describe_data(o.data_name))} data"
        + (f" · joined from {md('; '.join(pv.sources))}" if pv.sources else "")
    )
    fig_col, btn_col = st.columns([3, 2])
    fig_col.plotly_chart(matrix_figure(pv.cells, first, second, names=names), width="stretch", key="ea_matrix")
    btn_col.caption("Open a cell:")
    for row in matrix_cells(first, second):
        b1, b2 = btn_col.columns(2)
        for col, cell in zip((b1, b2), row):
            col.button(
                f"{o.cell_words[cell]}: {pv.cells[cell]}",
                key=f"ea_cell_{cell}",
                on_click=_pick_cell,
                args=(cell,),
                type="primary" if st.session_state["ea_cell"] == cell else "secondary",
                width="stretch",
            )
    btn_col.button(
        f"all examples: {len(o.frame)}",
        key="ea_cell_all",
        on_click=_pick_cell,
        args=("all",),
        type="primary" if st.session_state["ea_cell"] == "all" else "secondary",
        width="stretch",
    )


def filtered_examples(o: Opened, cell: str) -> tuple[pd.DataFrame, str, str, list[str]]:
    """The chosen cell's examples through the filter, the search and the tags."""
    frame, saved_slices, tags_by_example = o.frame, o.saved_slices, o.tags_by_example

    def _apply_saved() -> None:
        name = st.session_state.get("ea_saved_pick")
        if name in saved_slices:
            st.session_state["ea_filter"] = saved_slices[name]

    f1, f2, f3 = st.columns([3, 2, 2])
    expr = f1.text_input(
        "Filter",
        key="ea_filter",
        placeholder="kl > 0.5 and text_tokens < 20",
        help="a safe expression on the columns below: comparisons, in, and/or/not, + - * /; "
        f"columns: {', '.join(map(str, frame.columns))}",
    )
    search = f2.text_input("Search the text", key="ea_search")
    all_tags = sorted({t for ts in tags_by_example.values() for t in ts})
    tag_pick = f3.multiselect(
        "Tagged",
        all_tags,
        key="ea_tags",
        placeholder="any tag" if all_tags else "no tags yet",
        disabled=not all_tags,
        help="only examples with any of these tags (tags are per data set)",
    )
    if saved_slices:
        g1, g2 = st.columns([4, 1])
        g1.selectbox(
            "Saved slices", list(saved_slices), key="ea_saved_pick", format_func=lambda k: f"{k}: {saved_slices[k]}"
        )
        g2.button("Use as filter", key="ea_use_saved", on_click=_apply_saved)
    view = frame if cell == "all" else frame[frame["cell"] == cell]
    try:
        view = select_examples(view, expr)
    except Exception as exc:
        st.error(f"Filter not applied: {md(user_message(exc))}", icon=":material/error:")
    if search.strip():
        needle = search.strip().lower()
        hay = view["text"].fillna("").astype(str).str.lower() + " " + view["example_id"].str.lower()
        view = view[hay.str.contains(needle, regex=False).to_numpy()]
    if tag_pick:
        wanted = set(tag_pick)
        view = view[view["example_id"].map(lambda e: bool(wanted & set(tags_by_example.get(e, [])))).to_numpy()]
    return view, expr, search, tag_pick


def sorted_examples(o: Opened, view: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str], str, bool]:
    """The examples in the order the user picks; previous/next follow it."""
    names, first, second = o.names, o.first, o.second
    against = o.pv.against
    KLS = (
        {"KL (teacher ‖ student)": "kl"}
        if against is None
        else {"KL (teacher ‖ student A)": "a_kl", "KL (teacher ‖ student B)": "b_kl"}
    )
    KLS = {k: v for k, v in KLS.items() if v in view.columns}
    SORTS = {
        **KLS,
        f"confidence gap: p(gold) {names[0]} − {names[1]}": "confidence_gap",
        f"{names[0]} p(gold)": f"{first}_p_gold",
        f"{names[1]} p(gold)": f"{second}_p_gold",
        "text tokens": "text_tokens",
        "example id": "example_id",
    }
    SORTS = {k: v for k, v in SORTS.items() if v in view.columns and (v == "example_id" or view[v].notna().any())}
    s1, s2 = st.columns([3, 1])
    sort_by = s1.selectbox(
        "Sort by", list(SORTS), key="ea_sort", help="previous/next in the example view follow this order"
    )
    descending = s2.toggle("Largest first", value=True, key="ea_desc")
    view = view.sort_values(SORTS[sort_by], ascending=not descending, na_position="last", kind="stable")

    return view, KLS, sort_by, descending


def examples_table(o: Opened, cell: str) -> tuple[pd.DataFrame, str]:
    """The examples of one cell as a table (a row opens the example), its exports, and saving a filter."""
    st.subheader(f"Examples: {o.cell_words[cell]}")
    frame, names, first, second, tags_by_example = o.frame, o.names, o.first, o.second, o.tags_by_example
    run_id, against, ns = o.pv.run_id, o.pv.against, o.ns
    view, expr, search, tag_pick = filtered_examples(o, cell)
    view, KLS, sort_by, descending = sorted_examples(o, view)

    def _labels(column: str) -> list[str]:
        """A column of answers as "index: choice text" (multiple choice), "index: class name" (classification)
        or as they are (generation)."""
        return [row_answer(r, r[column], o.class_names) for r in view.to_dict("records")]

    table = pd.DataFrame(
        {
            "example id": view["example_id"].astype(str),
            "cell": view["cell"].astype(str),
            "gold": _labels("gold"),
            f"{names[0]} answer": _labels(f"{first}_prediction"),
            f"{names[1]} answer": _labels(f"{second}_prediction"),
            f"{names[0]} p(gold)": view[f"{first}_p_gold"].astype(float),
            f"{names[1]} p(gold)": view[f"{second}_p_gold"].astype(float),
            **{label: view[col].astype(float) for label, col in KLS.items()},
            "confidence gap": view["confidence_gap"].astype(float) if "confidence_gap" in view else float("nan"),
            "text tokens": view["text_tokens"],
            "tags": view["example_id"].map(lambda e: ", ".join(tags_by_example.get(e, []))),
            "text": view["text"].map(answer_label),
        }
    )
    st.caption(f"{len(table)} of {len(frame)} examples · a row opens the example")
    table_key = f"ea_table_{abs(hash((run_id, against, cell, expr, search, tuple(tag_pick), sort_by, descending)))}"
    event = st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        on_select="rerun",
        selection_mode="single-row",
        key=table_key,
        column_config={"text": st.column_config.TextColumn(width="large")},
    )
    rows = list(getattr(getattr(event, "selection", None), "rows", []) or [])
    if rows and (table_key, rows) != st.session_state.get("_ea_seen"):
        st.session_state["_ea_seen"] = (table_key, rows)
        if rows[0] < len(table):
            st.session_state["ea_example"] = table["example id"].iloc[rows[0]]
    x1, x2 = st.columns([3, 2])
    with x1:
        export_buttons(view, f"{run_id}-{cell}")
    with x2.popover("Save this filter as a slice", disabled=ns is None or not expr.strip()):
        slice_name = st.text_input("Name", key="ea_slice_name")
        if st.button("Save", key="ea_save_slice", disabled=not slice_name.strip()):
            try:
                ns.save_slice(o.data_name, slice_name, expr)
                st.rerun()
            except Exception as exc:
                show_error(exc)

    return table, sort_by


def one_example(o: Opened, ids: list[str], sort_by: str) -> list[str]:
    """One example side by side: its answers, attributions, notes and tags; returns the pinned examples."""
    frame, run_id, against = o.frame, o.pv.run_id, o.pv.against
    example = st.session_state.get("ea_example")
    if example not in set(frame["example_id"]):
        example = ids[0] if ids else None
    st.session_state["ea_example"] = example
    write_url()  # and the example as soon as it is known (the attributions below can take a while)
    pins = st.session_state.setdefault("ea_pins", {}).setdefault((run_id, against), [])
    if example is None:
        return pins
    row = frame[frame["example_id"] == example].iloc[0]
    head, pin_col, prev_col, next_col = st.columns([5, 1, 1, 1])
    head.subheader(f"Example {md(example)}")
    at = ids.index(example) if example in ids else None

    def _go(step: int) -> None:
        st.session_state["ea_example"] = ids[(at + step) % len(ids)]

    def _toggle_pin() -> None:
        if example in pins:
            pins.remove(example)
        else:
            pins.append(example)

    pin_col.button(
        "Unpin" if example in pins else "Pin",
        key="ea_pin",
        on_click=_toggle_pin,
        help="pinned examples go into the HTML report",
    )
    prev_col.button("Previous", key="ea_prev", on_click=_go, args=(-1,), disabled=at is None or len(ids) < 2)
    next_col.button("Next", key="ea_next", on_click=_go, args=(1,), disabled=at is None or len(ids) < 2)
    st.caption(
        f"{o.cell_words.get(row['cell'], md(row['cell']))} · "
        + (
            f"{at + 1} of {len(ids)} in this slice, sorted by {md(sort_by)}"
            if at is not None
            else "not in the current slice"
        )
    )
    st.markdown(md(row["text"]) if isinstance(row["text"], str) else "_(no text)_")
    answers(o, row)
    # the gold answer token by token is for generation: an example with choices or classes has none
    options = answer_options(row, o.first, o.class_names) or answer_options(row, o.second, o.class_names)
    why_and_notes(o, example, ids, has_choices=bool(row["choices"]) or bool(options))
    return pins


def answers(o: Opened, row: pd.Series) -> None:
    """Each option's probability under both models (multiple choice, classification), or both generations."""
    names, first, second, class_names = o.names, o.first, o.second, o.class_names
    gold = row["gold"]
    options = answer_options(row, first, class_names) or answer_options(row, second, class_names)
    if options:  # multiple choice or classification: each option's probability under both models
        gold_i = option_index(gold)
        tp, sp = row[f"{first}_probs"], row[f"{second}_probs"]
        st.plotly_chart(
            choice_probs_figure(
                options,
                tp if isinstance(tp, list) else None,
                sp if isinstance(sp, list) else None,
                gold_i,
                names=names,
            ),
            width="stretch",
            key="ea_choices",
        )
    else:
        st.markdown(f"**Gold answer:** {md(answer_label(gold))}")
        g1, g2 = st.columns(2)
        for col, role, name in ((g1, first, names[0]), (g2, second, names[1])):
            mark = {True: "right", False: "wrong"}.get(row[f"{role}_correct"], "not scored")
            col.markdown(f"**{md(name)}** ({mark})")
            col.caption("generated")
            col.code(
                answer_label(row[f"{role}_generated"]) or answer_label(row[f"{role}_prediction"]) or "(none)",
                language=None,
                wrap_lines=True,
            )
            col.caption(f"parsed: {md(answer_label(row[f'{role}_parsed']) or '(none)')}")


def why_and_notes(o: Opened, example: str, ids: list[str], has_choices: bool) -> None:
    """The attributions behind both answers, and the example's notes and tags."""
    run_id, against, store = o.pv.run_id, o.pv.against, o.store
    with st.expander(
        "Why: attributions" + (" and the gold answer token by token" if not has_choices else ""), expanded=True
    ):
        if against is not None:
            st.caption(f"The teacher and student of run {md(run_id)} (student A).")
        try:
            explanation_panel(
                store,
                run_id,
                example,
                ids,
                {"teacher": "teacher", "student": "student" if against is None else "student A"},
            )
        except Exception as exc:
            show_error(exc)

    if against is None:
        with st.expander("Inside: where the student departs from its teacher (logit lens, heads)"):
            try:
                inside_panel(store, run_id, example)
            except Exception as exc:
                show_error(exc)

    # notes and tags, keyed by the data set so they follow the example into later runs
    with st.expander(f"Notes and tags ({md(describe_data(o.data_name))} data)", expanded=True):
        try:
            if o.ns is None:
                raise RuntimeError("the notes database cannot be read (see the message above)")
            notes_panel(o.ns, o.data_name, example)
        except Exception as exc:
            show_error(exc)


def slice_finder(o: Opened) -> None:
    """Slices where the first model beats the second, with paired intervals and adjusted p."""
    st.subheader("Slice finder")
    frame, pv, names, first, second = o.frame, o.pv, o.names, o.first, o.second
    min_n = st.number_input(
        "Smallest slice",
        min_value=2,
        max_value=max(2, len(frame)),
        value=min(10, max(2, len(frame) // 4)),
        key="ea_min_n",
    )
    try:
        findings = [
            f.to_dict() for f in find_slices(frame, columns=list(pv.features), min_n=int(min_n), roles=(first, second))
        ]
    except Exception as exc:
        findings = []
        show_error(exc)
    if not findings:
        st.caption("No slice with enough examples.")
    else:
        st.dataframe(
            pd.DataFrame(finding_rows(findings, names)),
            hide_index=True,
            width="stretch",
            key="ea_slices",
            column_config={"slice": st.column_config.TextColumn(width="medium")},
        )
        st.plotly_chart(slice_gaps_figure(findings[:15], names=names), width="stretch", key="ea_gaps")

        def _use_slice() -> None:
            chosen = st.session_state.get("ea_slice_pick")
            if chosen is not None:
                st.session_state["ea_filter"] = findings[chosen]["expr"]
                st.session_state["ea_search"] = ""
                _pick_cell("all")

        s1, s2 = st.columns([4, 1])
        s1.selectbox(
            "Slice",
            range(len(findings)),
            key="ea_slice_pick",
            format_func=lambda i: f"{findings[i]['name']} (n = {findings[i]['n']}, gap {findings[i]['gap']:+.2f})",
        )
        s2.button("Use as filter", key="ea_use_slice", on_click=_use_slice)
        st.caption(
            "Gap intervals are paired 95% intervals (Newcombe's method 10: the two Wilson intervals combined "
            "with the correlation of the two models' answers on the same examples). The adjusted p is "
            "Benjamini–Hochberg over all candidate slices."
        )


def inside_two_slices(o: Opened) -> None:
    """Two cells compared inside the run's teacher and student (a run, not a comparison of two runs)."""
    if o.pv.against is not None:
        return
    with st.expander("Inside two slices: where the student reads one cell differently from another"):
        try:
            inside_slices_panel(o.store, o.pv.run_id, o.frame, o.cell_words)
        except Exception as exc:
            show_error(exc)


def render() -> None:
    store = RunStore()
    sel = state.selection()
    st.title("Error analysis")
    st.caption(
        "Which examples did distillation lose? The teacher/student right/wrong matrix of one run, the examples "
        "behind each cell, and the slices where the student falls behind."
    )
    recorded = recorded_runs(store)
    if not recorded.runs:
        st.info(
            "No run has per-example records yet. Runs write them (`predictions.jsonl`) when they evaluate; for a "
            "finished run from before that, `python -m kd_analysis errors backfill RUN_ID` recomputes them from "
            "its checkpoint. Or train a run on the Distillation runs page.",
            icon=":material/info:",
        )
        return
    follow_url_and_sidebar(recorded, sel)
    chosen = choose_runs(recorded)
    opened = open_pair(store, *chosen) if chosen else None
    if opened is None:
        return
    right_wrong_matrix(opened)
    table, sort_by = examples_table(opened, st.session_state["ea_cell"])
    pins = one_example(opened, table["example id"].tolist(), sort_by)
    slice_finder(opened)
    inside_two_slices(opened)
    st.subheader("Share: HTML report")
    report_panel(store, opened.pv.run_id, opened.pv.against, list(pins), opened.saved_slices)
    write_url()


render()
