"""Priming figures: our students' exact match per strategy. The paper's GSM8K numbers are never drawn here: they
come from another scale of model and data and live in their own table (`priming.experiment.paper_reference`)."""

from __future__ import annotations

import html
from collections.abc import Sequence

import plotly.graph_objects as go

from kd_analysis.prompting.strategies import STRATEGIES


def accuracy_bars(rows: Sequence[dict]) -> go.Figure:
    """Our students' exact match per strategy with 95% intervals (bars, in registry order; the teacher under the
    same prompt as markers). Our runs only: no paper numbers, whatever keys the rows carry. Axis labels are the short
    strategy names; the full title is in the hover."""
    order = {name: i for i, name in enumerate(STRATEGIES)}
    rows = sorted(rows, key=lambda r: order.get(r["strategy"], len(order)))
    counts = {s: [r["strategy"] for r in rows].count(s) for s in {r["strategy"] for r in rows}}
    names = [
        html.escape(str(r["strategy"]) + (f" ({r.get('run')})" if counts[r["strategy"]] > 1 else ""), quote=False)
        for r in rows
    ]  # one bar per run, never two runs merged into one
    titles = [
        html.escape(STRATEGIES[r["strategy"]].title if r["strategy"] in STRATEGIES else str(r["strategy"]), quote=False)
        for r in rows
    ]
    acc = [r.get("student exact match") for r in rows]
    up = [(r["95% high"] - a) if a is not None and r.get("95% high") is not None else None for r, a in zip(rows, acc)]
    down = [(a - r["95% low"]) if a is not None and r.get("95% low") is not None else None for r, a in zip(rows, acc)]
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=names,
            y=acc,
            name="student (ours, 95% interval)",
            customdata=titles,
            hovertemplate="%{customdata}: %{y:.1%}<extra>student</extra>",
            error_y=dict(type="data", array=up, arrayminus=down, visible=any(v is not None for v in up)),
        )
    )
    fig.add_trace(
        go.Scatter(
            x=names,
            y=[r.get("teacher exact match") for r in rows],
            mode="markers",
            marker=dict(symbol="diamond", size=11),
            name="teacher under this prompt",
        )
    )
    values = [
        v
        for v in acc + [r.get("teacher exact match") for r in rows] + [r.get("95% high") for r in rows]
        if v is not None
    ]
    top = min(1.05, max(values, default=1.0) + 0.1)
    ns = {r.get("eval questions") for r in rows if r.get("student exact match") is not None}
    title = "Exact match per priming strategy" + (
        f" (n = {ns.pop()} held-out questions each)" if len(ns) == 1 and None not in ns else ""
    )
    fig.update_layout(
        title=title,
        yaxis=dict(title="exact match", range=[0, top], tickformat=".0%"),
        height=380,
        legend=dict(orientation="h", y=-0.2),
    )
    return fig
