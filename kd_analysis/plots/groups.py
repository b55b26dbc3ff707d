"""Run groups as figures: one bar per group with its band across seeds and each seed's value as a dot; one line
per group over steps with its band."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go


def group_bars(rows: Sequence[dict[str, Any]], teacher: float | None = None, title: str = "") -> go.Figure:
    """Mean accuracy per group, the 95% interval across seeds as error bars, every seed as a dot; the teacher as a
    dashed line. Rows: `evidence.summary.group_rows`."""
    names = [html.escape(r["name"]) for r in rows]
    means = [r["mean"] for r in rows]
    fig = go.Figure(
        go.Bar(
            x=names,
            y=means,
            name="mean over seeds",
            marker_color="#4C78A8",
            error_y=dict(
                type="data",
                symmetric=False,
                array=[(r["high"] - r["mean"]) if r["high"] is not None else 0 for r in rows],
                arrayminus=[(r["mean"] - r["low"]) if r["low"] is not None else 0 for r in rows],
            ),
            customdata=[[r["seeds"], r["eval examples"]] for r in rows],
            hovertemplate="%{x}<br>mean %{y:.1%} · %{customdata[0]} seeds × %{customdata[1]} examples<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[n for n, r in zip(names, rows) for _ in r["accuracies"]],
            y=[a for r in rows for a in r["accuracies"]],
            mode="markers",
            name="one seed",
            marker=dict(color="#222222", size=6),
            hovertemplate="%{x}: %{y:.1%}<extra></extra>",
        )
    )
    if teacher is not None:
        fig.add_hline(
            y=teacher,
            line_dash="dash",
            line_color="#888888",
            annotation_text=f"teacher {teacher:.1%}",
            annotation_position="top left",
        )
    fig.update_layout(
        title=html.escape(title) or None,
        yaxis=dict(title="held-out accuracy", tickformat=".0%"),
        height=420,
        margin=dict(t=50),
        legend=dict(orientation="h", y=-0.3),
        bargap=0.35,
    )
    return fig


def group_band_curves(curves: dict[str, dict[str, list[float]]], metric: str) -> go.Figure:
    """One line per group (its mean across seeds over steps) inside its 95% band."""
    fig = go.Figure()
    palette = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D")
    for i, (name, c) in enumerate(curves.items()):
        colour = palette[i % len(palette)]
        fig.add_trace(
            go.Scatter(
                x=c["step"] + c["step"][::-1],
                y=c["high"] + c["low"][::-1],
                fill="toself",
                fillcolor=colour,
                opacity=0.18,
                line=dict(width=0),
                hoverinfo="skip",
                showlegend=False,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=c["step"],
                y=c["mean"],
                mode="lines+markers",
                name=html.escape(name),
                line=dict(color=colour),
                hovertemplate=f"{html.escape(name)}<br>step %{{x}}: %{{y:.3g}}<extra></extra>",
            )
        )
    fig.update_layout(
        title=html.escape(metric) + " (mean over seeds, 95% band)",
        xaxis_title="step",
        height=400,
        margin=dict(t=50),
        legend=dict(orientation="h", y=-0.25),
    )
    return fig
