"""Compare runs: overlaid curves per loss term and eval metric, final metrics, config differences.

The runs compared live in the URL (`?runs=id1,id2`), so a copied link reopens the same comparison."""

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from app_ui import state
from app_ui.navigation import run_under_app
from app_ui.safe_text import md
from app_ui.views import missing_as_dash
from kd_analysis.csv_export import csv_text
from kd_analysis.evidence.summary import run_gaps
from kd_analysis.plots.runs import metric_curves
from kd_analysis.runs import RunStore, layout, reconcile
from kd_analysis.training.progress import (
    RATE_METRICS,
    common_prefix,
    curves,
    final_table,
    metric_names,
    readable_config_diff,
    reference_groups,
    runs_worth_comparing,
    teacher_lines,
    unique_labels,
)

run_under_app()  # before anything draws: a page file run by itself hands over to app.py

RUNS_KEY, PRESET_KEY = "cmp_runs", "cmp_preset"
OWN = "your runs"
VIEWS = {"runs": "Runs", "groups": "Groups over seeds (paired statistics)"}


@dataclass(frozen=True)
class TableShape:
    """What the final-metrics columns depend on: the runs' ids and which metrics are rates."""

    ids: list[str]
    rates: list[str]
    single_rate: bool


def choose_view() -> str:
    """Runs side by side, or groups over seeds; the address names the view."""
    state.url_state("view", "cmp_view", valid=lambda v: v in VIEWS, default="runs")
    if st.session_state.get("cmp_view") is None:
        st.session_state["cmp_view"] = "runs"
    view = (
        st.segmented_control("View", list(VIEWS), format_func=VIEWS.get, key="cmp_view", label_visibility="collapsed")
        or "runs"
    )
    state.write_url_state("view", None if view == "runs" else view)
    return view


def choose_runs(runs: list) -> tuple[list[str], dict[str, str]]:
    """The runs compared (a preset group, or a hand-made choice) and their names; the URL holds the choice."""
    states = {r.run_id: r.state for r in runs}
    labels = unique_labels({r.run_id: r.name for r in runs})  # names, with a short id where two are alike
    presets = reference_groups([r.run_id for r in runs if r.reference])
    own = runs_worth_comparing([r for r in runs if not r.reference])

    def _preset_runs(preset: str | None) -> list[str]:
        return presets.get(preset) or own or [r.run_id for r in runs[:3]]

    def _matching_preset(chosen: list[str]) -> str | None:
        return next((p for p, members in presets.items() if members == chosen), None)

    # the URL is the selection: applied when it changed from outside (a link, a pasted address) or on first draw
    arrived = state.url_arrivals("runs")
    url = state.url_param("runs")
    missing: list[str] = []
    if arrived is not None or RUNS_KEY not in st.session_state:
        if url is not None:
            wanted = [r for r in dict.fromkeys(url.split(",")) if r]
            missing = [r for r in wanted if r not in labels]
            st.session_state[RUNS_KEY] = [r for r in wanted if r in labels]
            st.session_state[PRESET_KEY] = _matching_preset(st.session_state[RUNS_KEY])
        else:
            first = next(iter(presets), OWN)
            st.session_state[PRESET_KEY] = first
            st.session_state[RUNS_KEY] = _preset_runs(first)
    st.session_state[RUNS_KEY] = [r for r in st.session_state.get(RUNS_KEY) or [] if r in labels]

    def _apply_preset() -> None:
        st.session_state[RUNS_KEY] = _preset_runs(st.session_state.get(PRESET_KEY))

    def _follow_choice() -> None:
        """A choice edited by hand is a preset only when it is exactly one."""
        st.session_state[PRESET_KEY] = _matching_preset(st.session_state.get(RUNS_KEY) or [])

    st.radio(
        "Start from",
        list(presets) + [OWN],
        key=PRESET_KEY,
        index=None,
        horizontal=True,
        on_change=_apply_preset,
        help="reference runs shipped with the demo, grouped by the question they answer",
    )
    chosen = st.multiselect(
        "Runs",
        list(labels),
        key=RUNS_KEY,
        format_func=lambda r: f"{labels[r]} ({states[r]})",
        on_change=_follow_choice,
        help="the link of this page keeps this choice (?runs=…)",
    )
    state.write_url_state("runs", ",".join(chosen) or None)
    if missing:
        st.warning(f"Not in the run store, so left out: {md(', '.join(missing))}", icon=":material/warning:")
    if not chosen:
        st.info("Choose at least one run.", icon=":material/info:")
    return chosen, {rid: labels[rid] for rid in chosen}


def final_metrics(store: RunStore, chosen: list[str], names: dict[str, str]) -> None:
    """One row per run: the rates with their intervals and the teacher's, and the gap each closes."""
    st.subheader("Final metrics")
    table = pd.DataFrame(final_table(store, chosen, names))
    gaps = run_gaps(store, chosen)  # distillation runs with a CE-only twin (same set-up and seed) in the store
    if gaps:

        def _gap_text(rid: str) -> str:
            g = gaps.get(rid)
            if g is None:
                return ""
            if g["value"] is None:
                return "undefined: teacher not above CE-only"
            return f"{g['value']:.0%} ({g['interval'][0]:.0%} to {g['interval'][1]:.0%})"

        table["gap closed"] = [_gap_text(rid) for rid in table["run"]]
    rates = [c for c in table.columns if c.split(" ", 1)[-1] in RATE_METRICS]
    single_rate = sum(f"final {m}" in table.columns for m in RATE_METRICS) <= 1
    finals = [c for c in table.columns if c.startswith("final ") and c != "final loss" and not c.endswith("interval")]
    # the main table fits 1400 px: rates (with their interval and the teacher's); other metrics there only when one rate
    main = ["name", "steps", "losses", "final loss"] + [c for c in finals if c in rates or single_rate]
    unfinished = "state" in table.columns and bool((table["state"] != "finished").any())
    main += ["evaluated at"] if unfinished else []  # a cancelled run's numbers may be from before training
    main += [c for c in table.columns if c.endswith("interval")]
    main += [f"teacher {m}" for m in RATE_METRICS if f"teacher {m}" in table.columns]
    main += ["gap closed"]
    main = [c for c in main if c in table.columns]
    details = ["name", "state", "set-up", "eval n", "evaluated at"] + [
        c for c in table.columns if c.startswith("best ")
    ]
    details += [
        c for c in table.columns if c.startswith(("final ", "teacher ")) and c not in main and c != "final loss"
    ]
    details += ["minutes", "run"]
    details = [c for c in details if c in table.columns]

    shape = TableShape(chosen, rates, single_rate)

    def _show(columns: list[str]) -> None:
        config = _config(columns, shape)
        texts = [
            (str(v), config[c]["width"])
            for c in columns
            if c in ("name", "steps", "losses", "set-up")
            for v in table[c]
        ]
        rh = _row_height(texts)
        shown, config = missing_as_dash(table[columns], config)  # a run that never evaluated reads "—", not "None"
        st.dataframe(
            shown, hide_index=True, width="stretch", column_config=config, row_height=rh, height=_height(len(table), rh)
        )

    _show(main)
    with st.expander("Run details: state, set-up, other metrics, best values, ids"):
        _show(details)
    st.download_button("Final metrics (CSV)", csv_text(table), "runs_final_metrics.csv", "text/csv")


def _short(column: str, single_rate: bool) -> str:
    """Column headers short enough to be read whole ('final accuracy' -> 'accuracy'); the help says it all."""
    words = column.replace("_", " ").replace("answer nll", "answer NLL")
    if column.endswith("95% interval"):
        return "95% CI" if single_rate else words.removeprefix("final ").replace("95% interval", "95% CI")
    if column.startswith("teacher ") and column.split(" ", 1)[1] in RATE_METRICS:
        return "teacher" if single_rate else words.replace("exact match", "EM")
    return words.removeprefix("final ")


def _config(columns: list[str], shape: TableShape) -> dict:
    cfg = {
        "name": st.column_config.TextColumn(
            "run", width=190, pinned=True, help="the run's name (a short id is added where names are alike)"
        ),
        "run": st.column_config.TextColumn(
            "id", width=max(int(max(map(len, shape.ids)) * 6.4) + 24, 60), help="the run's folder in the run store"
        ),
        "steps": st.column_config.TextColumn(
            "steps",
            width=105,
            help=(
                "optimiser steps and the epochs of training data they covered; with epochs set, a run trains whole "
                "epochs and the config's steps is not used"
            ),
        ),
        "losses": st.column_config.TextColumn("loss terms", width=150, help="weight·term; τ: the temperature"),
        "final loss": st.column_config.NumberColumn(
            "loss", width=70, format="%.3g", help="the training loss at the last step"
        ),
        "set-up": st.column_config.TextColumn("set-up", width=250),
        "state": st.column_config.TextColumn("state", width=75),
        "evaluated at": st.column_config.TextColumn(
            "evaluated at",
            width=120,
            help="the step of the evaluation these numbers come from: the last one, which for a cancelled or failed "
            "run may be its step-0 evaluation, before any training",
        ),
        "eval n": st.column_config.NumberColumn("eval n", width=65, help="held-out examples evaluated"),
        "minutes": st.column_config.NumberColumn("minutes", width=70, format="%.1f"),
        "gap closed": st.column_config.TextColumn(
            "gap closed",
            width=120,
            help=(
                "(KD − CE-only) / (teacher − CE-only) against the CE-only run with the same set-up and seed, with a "
                "paired bootstrap 95% interval over the eval examples"
            ),
        ),
    }
    for c in columns:
        if c in cfg:
            continue
        if c.endswith("interval"):
            cfg[c] = st.column_config.TextColumn(
                _short(c, shape.single_rate),
                width=110 if shape.single_rate else 150,
                help=f"{md(c)} (Wilson score interval)",
            )
        else:
            percent = c in shape.rates
            cfg[c] = st.column_config.NumberColumn(
                _short(c, shape.single_rate),
                width=max(70, 8 * len(_short(c, shape.single_rate)) + 20),
                help=md(c.replace("_", " ")),
                format="percent" if percent else "%.3g",
            )
    return {c: cfg[c] for c in columns}


def _row_height(texts: list[tuple[str, int]]) -> int | None:
    """Rows tall enough for the longest text to wrap into its column (text, column width in px); None: one line.
    Streamlit wraps cell text only in rows taller than 64 px."""
    lines = max((-(-int(len(text) * 6.4) // max(width - 18, 1)) for text, width in texts), default=1)
    return None if lines <= 1 else max(66, 19 * lines + 10)


def _height(rows: int, row_height: int | None) -> int:
    """The whole table, no inner scrolling (header and border included)."""
    return rows * (row_height or 35) + 38


def error_analysis_link(store: RunStore, chosen: list[str], names: dict[str, str]) -> None:
    """A link to the Error analysis page for the runs that wrote per-example records."""
    with_records = [r for r in chosen if (store.folder(r) / layout.PREDICTIONS).is_file()]
    if len(with_records) == 1:
        st.page_link(
            "pages/error_analysis.py",
            label=f"Analyse errors of {md(names[with_records[0]])}",
            icon=":material/rule:",
            query_params={"run": with_records[0]},
        )
    elif with_records:
        pick_col, link_col = st.columns([3, 1], vertical_alignment="bottom")
        target = pick_col.selectbox(
            "Error analysis of",
            with_records,
            format_func=names.get,
            key="cmp_errors_run",
            help="the runs compared that have per-example records (predictions.jsonl)",
        )
        link_col.page_link(
            "pages/error_analysis.py", label="Analyse errors", icon=":material/rule:", query_params={"run": target}
        )


def curve_charts(store: RunStore, chosen: list[str], names: dict[str, str]) -> None:
    """Loss terms and eval metrics over steps, overlaid, with the teachers' values dashed."""
    metrics = metric_names(store, chosen)
    pick = st.multiselect(
        "Curves",
        metrics,
        default=[n for n in metrics if n in ("loss", "eval_accuracy", "eval_exact_match")] or metrics[:2],
    )
    cols = st.columns(2)
    drawn = {m: curves(store, chosen, m, names) for m in pick}
    teachers = {m: teacher_lines(store, chosen, m, names) for m in pick}
    for i, metric in enumerate(pick):
        cols[i % 2].plotly_chart(
            metric_curves(drawn[metric], metric, teachers[metric]),
            width="stretch",
            config={"toImageButtonOptions": {"format": "png", "filename": metric}},
        )
    if any(teachers.values()):
        st.caption(
            "Dashed lines: the teacher's value of the metric on the same held-out examples, one line per teacher."
        )
    if pick:
        long = pd.DataFrame(
            [
                {"run": label, "metric": m, "step": x, "value": y}
                for m in pick
                for label, (xs, ys) in drawn[m].items()
                for x, y in zip(xs, ys)
            ]
        )
        st.download_button("Curves (CSV)", csv_text(long), "runs_curves.csv", "text/csv")


def config_differences(store: RunStore, chosen: list[str], names: dict[str, str]) -> None:
    """Only the settings where the runs differ, in words."""
    st.subheader("Config differences")
    diff = readable_config_diff(store, chosen, names)
    if diff:
        frame = pd.DataFrame(diff)
        prefix = common_prefix(list(names.values()))
        headers = {rid: names[rid].removeprefix(prefix) if prefix else names[rid] for rid in chosen}
        # headers cannot wrap: each run's column as wide as its header needs (about 6 px a character), the room left
        # at 1400 px shared out; values wrap in taller rows
        need = {rid: int(len(h) * 6.2) + 30 for rid, h in headers.items()}
        room = 760
        if sum(need.values()) <= room:  # every header whole, the rest shared out
            widths = {rid: need[rid] + (room - sum(need.values())) // len(chosen) for rid in chosen}
        else:  # no sideways scrolling: long headers shortened alike (the name row and the tooltip say them whole)
            widths = {rid: max(100, need[rid] * room // sum(need.values())) for rid in chosen}
        diff_config = {"setting": st.column_config.TextColumn("setting", width=150, pinned=True)}
        for rid in chosen:
            diff_config[names[rid]] = st.column_config.TextColumn(
                headers[rid], width=widths[rid], help=f"{md(names[rid])} · id {md(rid)}"
            )
        rh = _row_height(
            [(k, 150) for k in frame["setting"]] + [(str(v), widths[rid]) for rid in chosen for v in frame[names[rid]]]
        )
        st.dataframe(
            frame,
            hide_index=True,
            width="stretch",
            column_config=diff_config,
            row_height=rh,
            height=_height(len(frame), rh),
        )
        if prefix:
            st.caption(f"Runs named “{md(prefix.strip())} …”; hover a header for the whole name and the run's id.")
        st.download_button("Differences (CSV)", csv_text(frame), "runs_config_diff.csv", "text/csv")
    else:
        st.caption("The chosen runs share every setting.")


def render() -> None:
    store = RunStore()
    reconcile(store)
    st.title("Compare runs")
    if choose_view() == "groups":
        from app_ui.group_views import groups_view

        groups_view(store)
        return
    runs = store.list(kind="train")
    if not runs:
        st.info(
            "No runs yet. Start one on the Distillation runs page, or regenerate the reference runs with "
            "`python -m kd_analysis runs make-reference`.",
            icon=":material/info:",
        )
        return
    chosen, names = choose_runs(runs)
    if not chosen:
        return
    final_metrics(store, chosen, names)
    error_analysis_link(store, chosen, names)
    curve_charts(store, chosen, names)
    config_differences(store, chosen, names)


render()
