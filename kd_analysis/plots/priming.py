"""Priming figures: student exact match per strategy beside the paper's reference numbers."""
from __future__ import annotations

import html
from typing import Sequence

import plotly.graph_objects as go

from kd_analysis.priming.strategies import STRATEGIES


def accuracy_bars(rows: Sequence[dict]) -> go.Figure:
    """Our students' exact match per strategy (bars, with the teacher's under the same prompt as markers); the
    paper's GSM8K numbers on a separate trace, since they come from another scale of model and data."""
    names = [html.escape(STRATEGIES[r["strategy"]].title if r["strategy"] in STRATEGIES else str(r["strategy"]))
             for r in rows]
    fig = go.Figure()
    acc = [r.get("student exact match") for r in rows]
    up = [(r["95% high"] - a) if a is not None and r.get("95% high") is not None else None for r, a in zip(rows, acc)]
    down = [(a - r["95% low"]) if a is not None and r.get("95% low") is not None else None for r, a in zip(rows, acc)]
    fig.add_trace(go.Bar(x=names, y=acc, name="student (ours, 95% interval)",
                         error_y=dict(type="data", array=up, arrayminus=down, visible=any(v is not None for v in up)),
                         text=[f"{v:.0%}" if v is not None else "" for v in (r.get("student exact match") for r in rows)],
                         textposition="outside"))
    fig.add_trace(go.Scatter(x=names, y=[r.get("teacher exact match") for r in rows], mode="markers",
                             marker=dict(symbol="diamond", size=11), name="teacher under this prompt"))
    paper = [r.get("paper (GSM8K, 8B student)") for r in rows]
    if any(v is not None for v in paper):
        fig.add_trace(go.Scatter(x=names, y=paper, mode="markers", marker=dict(symbol="x", size=10, color="grey"),
                                 name="paper: GSM8K, 8B student"))
    fig.update_layout(title="Exact match per priming strategy", yaxis=dict(title="exact match", range=[0, 1.05],
                                                                          tickformat=".0%"),
                      height=380, legend=dict(orientation="h", y=-0.25))
    return fig
