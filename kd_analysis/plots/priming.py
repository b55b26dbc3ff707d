"""Priming figures: student exact match per strategy beside the paper's reference numbers."""
from __future__ import annotations

import html
from typing import Sequence

import plotly.graph_objects as go

from kd_analysis.priming.strategies import STRATEGIES


def accuracy_bars(rows: Sequence[dict]) -> go.Figure:
    """Our students' exact match per strategy with 95% intervals (bars, in registry order; the teacher under the
    same prompt as markers); the paper's GSM8K numbers on a separate trace, since they come from another scale of
    model and data. Axis labels are the short strategy names; the full title is in the hover."""
    order = {name: i for i, name in enumerate(STRATEGIES)}
    rows = sorted(rows, key=lambda r: order.get(r["strategy"], len(order)))
    names = [html.escape(str(r["strategy"]), quote=False) for r in rows]
    titles = [html.escape(STRATEGIES[r["strategy"]].title if r["strategy"] in STRATEGIES else str(r["strategy"]),
                          quote=False) for r in rows]
    acc = [r.get("student exact match") for r in rows]
    up = [(r["95% high"] - a) if a is not None and r.get("95% high") is not None else None for r, a in zip(rows, acc)]
    down = [(a - r["95% low"]) if a is not None and r.get("95% low") is not None else None for r, a in zip(rows, acc)]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=names, y=acc, name="student (ours, 95% interval)", customdata=titles,
                         hovertemplate="%{customdata}: %{y:.1%}<extra>student</extra>",
                         error_y=dict(type="data", array=up, arrayminus=down, visible=any(v is not None for v in up))))
    fig.add_trace(go.Scatter(x=names, y=[r.get("teacher exact match") for r in rows], mode="markers",
                             marker=dict(symbol="diamond", size=11), name="teacher under this prompt"))
    paper = [r.get("paper (GSM8K, 8B student)") for r in rows]
    if any(v is not None for v in paper):
        fig.add_trace(go.Scatter(x=names, y=paper, mode="markers", marker=dict(symbol="x", size=10, color="grey"),
                                 name="paper: GSM8K, 8B student"))
    values = [v for v in acc + paper + [r.get("teacher exact match") for r in rows]
              + [r.get("95% high") for r in rows] if v is not None]
    top = min(1.05, max(values, default=1.0) + 0.1)
    fig.update_layout(title="Exact match per priming strategy", yaxis=dict(title="exact match", range=[0, top],
                                                                          tickformat=".0%"),
                      height=380, legend=dict(orientation="h", y=-0.2))
    return fig
