"""Figures for training runs: one metric across runs, or several metrics of one run."""
from __future__ import annotations

import html

import plotly.graph_objects as go


def metric_curves(curves: dict[str, tuple[list[int], list[float]]], metric: str) -> go.Figure:
    fig = go.Figure()
    for label, (x, y) in curves.items():
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers" if len(x) < 30 else "lines",
                                 name=html.escape(label)[:60]))
    fig.update_layout(title=html.escape(metric), xaxis_title="step", yaxis_title=html.escape(metric), height=360,
                      margin=dict(t=50),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def run_losses(records: list[dict], title: str = "Loss terms") -> go.Figure:
    keys = sorted({k for r in records for k in r if k.startswith("loss") and isinstance(r.get(k), (int, float))})
    fig = go.Figure()
    for k in keys:
        pts = [(r["step"], r[k]) for r in records if isinstance(r.get(k), (int, float))]
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines", name=html.escape(k)))
    fig.update_layout(title=title, xaxis_title="step", height=340, margin=dict(t=50))
    return fig
