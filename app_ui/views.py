"""Small drawing helpers used by several pages (tables of library results, nothing computed here)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app_ui.safe_text import md

SUMMARY_FIELDS = [
    ("family", "Family"),
    ("architecture", "Class"),
    ("task", "Task"),
    ("parameters", "Parameters"),
    ("layers", "Layers"),
    ("decoder_layers", "Decoder layers"),
    ("heads", "Heads"),
    ("kv_heads", "KV heads"),
    ("hidden_size", "Hidden size"),
    ("vocab_size", "Vocabulary"),
    ("tokenizer_size", "Tokenizer size"),
    ("output_size", "Output size"),
    ("dtype", "Precision"),
    ("device", "Device"),
    ("attn_implementation", "Attention"),
    ("memory_mb", "Weights (MB)"),
]


def summary_table(infos: dict[str, Any]) -> pd.DataFrame:
    rows = {}
    for name, info in infos.items():
        d = info.to_dict()
        rows[name] = {
            label: ("—" if d.get(key) is None else f"{d[key]:,}" if isinstance(d.get(key), int) else str(d[key]))
            for key, label in SUMMARY_FIELDS
        }
    return pd.DataFrame(rows)


def loss_table(report: Any) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"Loss": v["title"], "Applies": "yes" if v["applies"] else "no", "Why": v["reason"]}
            for v in report.losses.values()
        ]
    )


def pair_overview(teacher: Any, student: Any, report: Any) -> None:
    t, s = teacher.info(), student.info()
    c1, c2, c3 = st.columns(3)
    c1.metric("Teacher parameters", f"{t.parameters / 1e6:.1f}M")
    c2.metric(
        "Student parameters",
        f"{s.parameters / 1e6:.1f}M",
        f"{s.parameters / t.parameters:.0%} of teacher",
        delta_color="off",
        delta_arrow="off",
    )
    c3.metric("Tokenizer", "shared" if report.same_tokenizer else f"{report.vocab_overlap:.0%} overlap")
    st.dataframe(summary_table({"Teacher": t, "Student": s}), width="stretch")
    for note in t.notes + s.notes + report.notes:
        st.caption(md(note))  # notes name models, paths and tokenizers


def saved_job_picker(label: str, store: Any, jobs: list, open_key: str) -> Any:
    """A select box of saved background jobs, with a progress bar while the chosen one runs; returns the chosen
    Run. A start button opens its new job by setting `open_key + "_started"` and rerunning."""
    from kd_analysis.training.progress import run_progress

    ids = [j.run_id for j in jobs]
    started = st.session_state.pop(open_key + "_started", None)  # set by a start button, before this widget
    if started in ids or st.session_state.get(open_key) not in ids:
        st.session_state[open_key] = started if started in ids else ids[0]
    opened = st.selectbox(
        label,
        ids,
        key=open_key,  # keyed: a job changing state must not reset the choice
        format_func=lambda j: f"{store.get(j).config().get('name')} · {j} · {run_progress(store.get(j)).state}",
    )
    run = store.get(opened)
    if run_progress(run).state in ("queued", "running"):

        @st.fragment(run_every=2)
        def follow() -> None:
            """Refreshes itself while the job works; redraws the page once it has ended."""
            p = run_progress(store.get(opened))
            if p.state not in ("queued", "running"):
                st.rerun()
            st.progress(
                p.fraction,
                text=f"{p.state}: {p.step}/{p.total or '?'}"
                + (f" · {md(p.reason)}" if p.reason else "")
                + phase_text(p)
                + " · refreshes by itself",
            )

        follow()
    return run


def shown_cells(rows: list[dict], empty: str = "—") -> list[dict]:
    """A read-only table's cells as text: a missing value reads `empty` (never "None"), a bool yes or no, a number
    as written (%g), so a column mixing them is one type for the table."""

    def text(v):
        if v is None or (isinstance(v, float) and v != v):
            return empty
        if isinstance(v, bool):
            return "yes" if v else "no"
        return f"{v:g}" if isinstance(v, (int, float)) else str(v)

    columns = list(dict.fromkeys(k for row in rows for k in row))  # a key some rows lack is a cell, not "None"
    return [{k: text(row.get(k)) for k in columns} for row in rows]


def missing_as_dash(frame: Any, config: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A table's missing cells as "—" (Streamlit draws them as "None"): a number column that has any becomes text
    in its own format, under a text column of the same label and width."""
    frame, config = frame.copy(), dict(config)
    for c in frame.columns:
        spec = config.get(c) or {}
        kind = (spec.get("type_config") or {}).get("type")
        if not frame[c].isna().any():
            continue
        if kind != "number":
            frame[c] = frame[c].astype(object).where(frame[c].notna(), "—")
            continue
        fmt = spec["type_config"].get("format") or "%g"

        def text(v: Any, fmt: str = fmt) -> str:
            if v is None or v != v:
                return "—"
            return f"{v:.1%}" if fmt == "percent" else fmt % v

        frame[c] = frame[c].map(text)
        config[c] = st.column_config.TextColumn(spec.get("label"), width=spec.get("width"), help=spec.get("help"))
    return frame, config


def phase_text(p) -> str:
    """· what a running job does right now (an evaluation, a generation, token by token), when it said."""
    return f" · {md(p.phase)}" if getattr(p, "phase", None) else ""


MIN_N = 10  # below this many examples a rate is shown greyed out, with a warning, never as a headline


def headline_metric(
    col: Any, label: str, value: str, n: int, detail: str = "", help: str | None = None, minimum: int = MIN_N
) -> None:
    """A headline figure with its n beside it; from fewer than `minimum` examples it is greyed out and says why
    (a rate from 1 example reads like a finding and is not one)."""
    text = f"n = {n}" + (f" · {detail}" if detail else "")
    if n >= minimum:
        col.metric(label, value, text, delta_color="off", delta_arrow="off", help=help)
        return
    col.markdown(md(label), help=help)
    col.markdown(f"### :gray[{md(value)}]")
    col.caption(f"{md(text)} · too few examples to read a rate (fewer than {minimum})")


def loss_param_inputs(losses: dict[str, Any], key_prefix: str) -> dict[str, dict[str, float]]:
    """One input per registered loss parameter (its range and help from the registry); returns, per loss, the
    values that differ from the defaults, so a config names only what the user changed."""
    out: dict[str, dict[str, float]] = {}
    for name, spec in losses.items():
        if not spec.params:
            continue
        cols = st.columns(max(4, len(spec.params) + 1))  # one grid for every loss: its inputs line up
        cols[0].markdown(f"**{md(spec.title)}**")
        for col, p in zip(cols[1:], spec.params):
            whole = isinstance(p.default, int)
            cast = int if whole else float
            value = col.number_input(
                p.name,
                cast(p.low),
                cast(p.high),
                cast(p.default),
                1 if whole else None,
                key=f"{key_prefix}{name}_{p.name}",
                help=p.help,
                format=None if whole else "%g",
            )
            if value != p.default:
                out.setdefault(name, {})[p.name] = value
    return out
