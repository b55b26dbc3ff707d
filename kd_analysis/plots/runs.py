"""Figures for training runs: one metric across runs, or several metrics of one run."""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go

from kd_analysis.plots import LOG_AXIS

RATES = ("accuracy", "exact_match")  # metrics that are proportions: values shown as percentages
TEACHER_DASHES = ("dash", "dot", "dashdot", "longdash", "longdashdot")  # teacher lines: greys, one dash each
TEACHER_GREYS = ("#444444", "#888888", "#222222", "#999999", "#666666")


def _value_text(metric: str, value: float) -> str:
    return f"{value:.1%}" if metric.endswith(RATES) else f"{value:.3g}"


def _legend_name(label: str, prefix: str, limit: int = 60) -> str:
    """The label without the prefix every run shares, shortened in the middle (its end, where a short id that
    tells colliding names apart sits, stays)."""
    text = label[len(prefix) :] if prefix and label.startswith(prefix) else label
    return text if len(text) <= limit else text[: limit - 22] + "…" + text[-21:]


def metric_curves(
    curves: dict[str, tuple[list[int], list[float]]], metric: str, teachers: list[dict[str, Any]] | None = None
) -> go.Figure:
    """One metric across runs: a line per run (named by its label), and each teacher's value of the metric as a
    dashed horizontal line across the steps ({"label", "value"} dicts, `teacher_lines`), its value in the legend.

    Legend entries drop the words every run's label starts with (they become the legend's title) and shorten
    long labels in the middle; hovering a line shows its whole label."""
    from kd_analysis.training.progress import common_prefix

    labels = list(curves)
    prefix = common_prefix(labels)
    names = {lb: _legend_name(lb, prefix) for lb in labels}
    if len(set(names.values())) < len(names):  # shortening made two alike: show them whole
        names = {lb: lb for lb in labels}
    fig = go.Figure()
    for label, (x, y) in curves.items():
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines+markers" if len(x) < 30 else "lines",
                name=html.escape(names[label]),
                hovertemplate=f"{html.escape(label)}<br>step %{{x}}: %{{y:.4g}}<extra></extra>",
            )
        )
    xs = [v for x, _ in curves.values() for v in x]
    span = [min(xs), max(xs)] if xs else [0, 1]
    for i, line in enumerate(teachers or []):
        text = f"{line['label']}: {_value_text(metric, line['value'])}"
        fig.add_trace(
            go.Scatter(
                x=span,
                y=[line["value"]] * 2,
                mode="lines",
                name=html.escape(_legend_name(text, "", 80)),
                line=dict(
                    dash=TEACHER_DASHES[i % len(TEACHER_DASHES)], width=2, color=TEACHER_GREYS[i % len(TEACHER_GREYS)]
                ),
                hovertemplate=f"{html.escape(text)}<extra></extra>",
            )
        )
    entries = len(fig.data)  # the legend sits below the plot: room for it, one line an entry past the fourth
    fig.update_layout(
        title=html.escape(metric),
        xaxis_title="step",
        yaxis_title=html.escape(metric),
        height=380 + 20 * max(0, entries - 4),
        margin=dict(t=50),
        legend=dict(orientation="h", y=-0.25, title_text=html.escape(prefix.strip()) or None),
    )
    return fig


def run_losses(records: list[dict], title: str = "Loss terms") -> go.Figure:
    keys = sorted({k for r in records for k in r if k.startswith("loss") and isinstance(r.get(k), (int, float))})
    fig = go.Figure()
    for k in keys:
        pts = [(r["step"], r[k]) for r in records if isinstance(r.get(k), (int, float))]
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines", name=html.escape(k)))
    fig.update_layout(title=title, xaxis_title="step", height=340, margin=dict(t=50))
    return fig


def balance_curves(
    series: dict[str, dict[str, list[tuple[int, float]]]], weights: dict[str, float], title: str = "Loss balance"
) -> go.Figure:
    """The loss-balance monitor of one run (`training.balance.balance_series`): each term's value (left) and its
    weighted gradient norm at the student's output (right), log scales, one colour per term in both panels."""
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("term value (unweighted)", "weight × ‖∂term/∂student output‖"),
        horizontal_spacing=0.12,
    )
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
    for i, term in enumerate(sorted(series.get("grad", {}))):
        colour = palette[i % len(palette)]
        name = html.escape(term)
        w = weights.get(term, 1.0)
        for col, pts, scale in ((1, series.get("value", {}).get(term, []), 1.0), (2, series["grad"][term], w)):
            pts = [(s, v * scale) for s, v in pts if v * scale > 0]
            fig.add_trace(
                go.Scatter(
                    x=[p[0] for p in pts],
                    y=[p[1] for p in pts],
                    mode="lines+markers",
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    line=dict(color=colour),
                ),
                row=1,
                col=col,
            )
    fig.update_yaxes(**LOG_AXIS)
    fig.update_xaxes(title_text="step")
    fig.update_layout(title=title, height=340, margin=dict(t=70, l=60), legend=dict(orientation="h", y=-0.25))
    return fig


def taid_curve(records: list[dict]) -> go.Figure:
    """TAID's interpolation weight t over steps (the share of the teacher in the training target)."""
    pts = [(r["step"], r["taid_t"]) for r in records if isinstance(r.get("taid_t"), (int, float))]
    fig = go.Figure(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name="t"))
    fig.update_layout(
        title="TAID: the target's share of the teacher, t",
        xaxis_title="step",
        yaxis=dict(range=[0, 1.02], title="t"),
        height=300,
        margin=dict(t=50),
    )
    return fig
