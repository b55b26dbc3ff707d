"""The Compare page's run-group view: groups as bars with their band across seeds, the gap closed, and a paired
comparison of any two groups or runs in words beside its numbers."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_ui import state
from app_ui.safe_text import md
from app_ui.story_cache import store_stamp
from kd_analysis.csv_export import csv_text
from kd_analysis.evidence.groups import compare
from kd_analysis.evidence.summary import group_curve, group_rows
from kd_analysis.exceptions import KDLensError
from kd_analysis.plots.groups import group_band_curves, group_bars
from kd_analysis.runs import RunStore, layout
from kd_analysis.runs.kinds import TRAIN
from kd_analysis.stats.paired import INTERVAL_METHOD, TEST_NAME, describe, p_text
from kd_analysis.training.progress import common_prefix


@st.cache_data(show_spinner="Reading the groups' per-example records…", max_entries=8)
def _rows(root: str, stamp: tuple) -> list[dict]:
    return group_rows(RunStore(root))


@st.cache_data(show_spinner="Comparing on the shared examples…", max_entries=64)
def _compare(root: str, a: str, b: str, stamp: tuple) -> tuple:
    return compare(RunStore(root), a, b)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.1%}"


def groups_view(store: RunStore) -> None:
    stamp = store_stamp(store, (layout.PREDICTIONS, layout.STATUS))
    rows = _rows(str(store.root), stamp)
    if not rows:
        st.info(
            "No run groups yet. A group is one config trained with several seeds: `python -m kd_analysis runs "
            "start --config FILE --seeds 0,1,2`, or regenerate the reference groups with `python -m kd_analysis "
            "runs make-reference`.",
            icon=":material/info:",
        )
        return
    by_data: dict[str, list[dict]] = {}
    # the few-label blocks first (where distillation shows), then by data set
    for r in sorted(rows, key=lambda r: (r["data"], r["labels"] is None, r["labels"] or 0)):
        labels = f"{r['labels']} labels" if r["labels"] else "all labels"
        by_data.setdefault(f"{r['data']} · {labels}", []).append(r)
    st.caption(
        "A group is one config over several seeds, every seed scored on the same held-out examples. Bars: "
        "the mean over seeds with its 95% interval across seeds (Student t); dots: each seed."
    )
    for title, members in by_data.items():
        st.markdown(f"**{md(title)}**")
        teacher = next((r["teacher"] for r in members if r["teacher"] is not None), None)
        prefix = common_prefix([r["name"] for r in members])  # names differ after it: the bars show the rest
        short = [{**r, "name": r["name"][len(prefix) :]} for r in members]
        if prefix:
            st.caption(f"Groups named “{md(prefix.strip())} …”")
        st.plotly_chart(
            group_bars(short, teacher),
            width="stretch",
            config={"toImageButtonOptions": {"format": "png", "filename": "groups"}},
        )
        table = pd.DataFrame(
            [
                {
                    "group": r["name"],
                    "seeds": r["seeds"],
                    "eval n": r["eval examples"],
                    "mean": _pct(r["mean"]),
                    "95% across seeds": f"{_pct(r['low'])}–{_pct(r['high'])}" if r["low"] is not None else "one seed",
                    "gap closed": (
                        f"{r['gap closed']:.0%} (95% {r['gap low']:.0%} to {r['gap high']:.0%})"
                        if r["gap closed"] is not None
                        else r["gap note"]
                    ),
                    "id": r["group"],
                }
                for r in members
            ]
        )
        st.dataframe(
            table,
            hide_index=True,
            width="stretch",
            column_config={
                "gap closed": st.column_config.TextColumn(
                    width="large",
                    help="(KD − CE-only) / (teacher − CE-only) on the same "
                    "examples, with a paired bootstrap interval over examples and seeds",
                )
            },
        )
        st.download_button(
            "Groups (CSV)",
            csv_text(table),
            "run_groups.csv",
            "text/csv",
            key=f"grp_csv_{title}",
            on_click="ignore",
        )
    _paired(store, rows, stamp)
    _curves(store, rows)


def _paired(store: RunStore, rows: list[dict], stamp: tuple) -> None:
    st.subheader("Paired comparison")
    st.caption(
        f"Two groups (or runs) on the held-out examples both were scored on. Interval: {INTERVAL_METHOD}. "
        f"p: {TEST_NAME}; with one seed each it is the exact McNemar test."
    )
    ids = [r["group"] for r in rows]
    names = {r["group"]: f"{r['name']} ({r['data']})" for r in rows}
    short = {r["group"]: r["name"] for r in rows}
    # single runs too (a seed of a group, or a run of no group): the same paired statistics, one seed each
    for run in store.list(kind=TRAIN):
        if run.state == "finished" and run.run_id not in names:
            ids.append(run.run_id)
            names[run.run_id] = f"run: {run.name or run.run_id} · {run.run_id}"
            short[run.run_id] = run.name or run.run_id
    # default: the distillation group that closes the most of its gap, against its CE-only twin
    best = max(
        (r for r in rows if r["ce twin"]),
        default=None,
        key=lambda r: -1e9 if r["gap closed"] is None else r["gap closed"],
    )
    default_a = best["group"] if best else ids[0]
    default_b = best["ce twin"] if best else ids[min(1, len(ids) - 1)]
    url_a, url_b = state.url_param("a"), state.url_param("b")
    c1, c2 = st.columns(2)
    a = c1.selectbox(
        "A", ids, index=ids.index(url_a if url_a in ids else default_a), format_func=names.get, key="grp_a"
    )
    b = c2.selectbox(
        "B", ids, index=ids.index(url_b if url_b in ids else default_b), format_func=names.get, key="grp_b"
    )
    state.write_url_state("a", a)
    state.write_url_state("b", b)
    if a == b:
        st.info("Pick two different groups or runs.", icon=":material/info:")
        return
    try:
        result, out = _compare(str(store.root), a, b, stamp)
    except KDLensError as exc:
        st.error(md(exc), icon=":material/error:")
        return
    full = [short[g] for g in (a, b)]
    prefix = common_prefix(full)
    st.markdown(f"#### {md(describe(result, full[0][len(prefix) :], full[1][len(prefix) :]))}")
    m = st.columns(4)
    m[0].metric("A − B", f"{out['difference'] * 100:+.1f} pts", help="difference of mean accuracy")
    m[1].metric("95% interval", f"{out['interval'][0] * 100:+.1f} to {out['interval'][1] * 100:+.1f}")
    m[2].metric("p", "< 0.001" if out["p"] < 0.001 else f"{out['p']:.3f}")
    m[3].metric(
        "seeds · examples",
        f"{out['seeds'][0]}×{out['seeds'][1]} · {out['n']}",
        help="seeds of A × seeds of B · the eval examples both share",
    )
    if len(out["per_seed_p"]) > 1:
        st.caption(
            "Exact McNemar p per seed pair (seed k of A against seed k of B): "
            + ", ".join(p_text(p).removeprefix("p ").removeprefix("= ") for p in out["per_seed_p"])
        )


def _curves(store: RunStore, rows: list[dict]) -> None:
    with st.expander("Accuracy over steps, one band per group"):
        picked = st.multiselect(
            "Groups",
            [r["group"] for r in rows],
            default=[r["group"] for r in rows][:5],
            format_func={r["group"]: r["name"] for r in rows}.get,
            key="grp_curves",
        )
        curves = {next(r["name"] for r in rows if r["group"] == g): group_curve(store, g) for g in picked}
        if curves:
            st.plotly_chart(group_band_curves(curves, "eval_accuracy"), width="stretch")
