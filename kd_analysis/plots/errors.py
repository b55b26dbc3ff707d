"""Figures for error analysis: the right/wrong matrix, one example's choice probabilities, the slice finder's gaps.

Pure functions of plain values (no streamlit, no run store); labels taken from data are HTML-escaped, since plotly
renders a subset of HTML in text.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go


def _esc(value: Any, limit: int = 60) -> str:
    """Cut, then escape: cutting an escaped string can split an entity (`&#x2…`), which plotly shows raw."""
    text = str(value)
    return html.escape(text if len(text) <= limit else text[: limit - 1] + "…", quote=False)


def matrix_cells(first: str = "teacher", second: str = "student") -> list[list[str]]:
    """The cell names in the matrix's layout: rows = `first` right / wrong, columns = `second` right / wrong."""
    return [["both_right", f"{first}_only"], [f"{second}_only", "both_wrong"]]


def matrix_figure(
    counts: Mapping[str, int], first: str = "teacher", second: str = "student", names: tuple[str, str] | None = None
) -> go.Figure:
    """Annotated 2×2 heatmap of the counts (keys: both_right, <first>_only, <second>_only, both_wrong).

    Rows are `first` right / wrong, columns `second` right / wrong; each cell shows its count and share. `names`
    label the two models (default: `first`, `second`)."""
    cells = matrix_cells(first, second)
    z = [[int(counts.get(c, 0) or 0) for c in row] for row in cells]
    total = sum(sum(row) for row in z)
    text = [[f"{v}<br>({v / total:.0%})" if total else str(v) for v in row] for row in z]
    a, b = (_esc(x, 30) for x in (names or (first, second)))
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[f"{b} right", f"{b} wrong"],
            y=[f"{a} right", f"{a} wrong"],
            text=text,
            texttemplate="%{text}",
            customdata=cells,
            colorscale="Blues",
            showscale=False,
            hovertemplate="%{y}, %{x}: %{z}<extra></extra>",
            textfont=dict(size=18),
        )
    )
    fig.update_layout(height=300, margin=dict(t=30, l=10, r=10, b=10), title=f"{a} × {b} (n = {total})")
    fig.update_yaxes(autorange="reversed")
    return fig


def choice_probs_figure(
    choices: Sequence[Any],
    teacher_probs: Sequence[float] | None,
    student_probs: Sequence[float] | None,
    gold: int | None = None,
    names: tuple[str, str] = ("teacher", "student"),
) -> go.Figure:
    """Grouped bars: each choice's (or class's) probability under the two models; the gold one is marked with ✓.
    An empty name (a class the data leaves unnamed) shows as its index alone."""
    labels = [
        f"{'✓ ' if gold is not None and i == gold else ''}{i}" + (f": {_esc(c, 40)}" if str(c) else "")
        for i, c in enumerate(choices)
    ]
    fig = go.Figure()
    for name, probs in zip(names, (teacher_probs, student_probs)):
        if probs is None:
            continue
        values = [float(p) if p is not None else None for p in probs]
        fig.add_trace(
            go.Bar(
                x=labels[: len(values)],
                y=values,
                name=_esc(name, 30),
                hovertemplate="%{x}: %{y:.3f}<extra>" + _esc(name, 30) + "</extra>",
            )
        )
    fig.update_layout(
        barmode="group",
        height=320,
        margin=dict(t=30, l=10, r=10, b=10),
        # categories always: labels such as "✓ 0" beside "1" made plotly guess a number axis and drop the "✓ 0" bar
        xaxis=dict(type="category"),
        yaxis=dict(title="probability", range=[0, 1]),
        legend=dict(orientation="h", y=1.12),
    )
    return fig


def gap_interval(row: Mapping[str, Any]) -> tuple[float, float]:
    """The 95% interval of a slice's gap (first − second accuracy): the paired one the slice finder computed
    (`gap_ci`, Newcombe's method 10); for rows without it, the unpaired square-and-add of the two Wilson
    intervals (wider, since it ignores the pairing)."""
    if row.get("gap_ci") is not None:
        lo, hi = row["gap_ci"]
        return float(lo), float(hi)
    p1, p2 = float(row["teacher_accuracy"]), float(row["student_accuracy"])
    (l1, u1), (l2, u2) = row["teacher_ci"], row["student_ci"]
    gap = p1 - p2
    return gap - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), gap + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def slice_gaps_figure(rows: Sequence[Mapping[str, Any]], names: tuple[str, str] = ("teacher", "student")) -> go.Figure:
    """Horizontal bars of each slice's accuracy gap with its approximate 95% interval (rows: the slice finder's
    findings as dicts, in the order given; the first is drawn at the top)."""
    gaps = [float(r["gap"]) for r in rows]
    intervals = [gap_interval(r) for r in rows]
    labels = [_esc(r["name"], 50) for r in rows]
    fig = go.Figure(
        go.Bar(
            x=gaps,
            y=labels,
            orientation="h",
            error_x=dict(
                type="data",
                symmetric=False,
                array=[hi - g for g, (_, hi) in zip(gaps, intervals)],
                arrayminus=[g - lo for g, (lo, _) in zip(gaps, intervals)],
            ),
            customdata=[[int(r["n"]), float(r["adjusted_p"])] for r in rows],
            hovertemplate="%{y}: gap %{x:.2f}, n = %{customdata[0]}, adjusted p = %{customdata[1]:.3g}<extra></extra>",
        )
    )
    a, b = _esc(names[0], 30), _esc(names[1], 30)
    fig.update_layout(
        height=max(240, 28 * len(rows) + 80),
        margin=dict(t=30, l=10, r=10, b=10),
        xaxis_title=f"accuracy gap ({a} − {b})",
        title="Gap per slice, with paired 95% intervals",
    )
    fig.update_yaxes(autorange="reversed")
    fig.add_vline(x=0, line_color="grey", line_width=1)
    return fig


def token_gaps_figure(rows: Sequence[Mapping[str, Any]], names: tuple[str, str] = ("teacher", "student")) -> go.Figure:
    """Each gold-answer token's log-probability under both models (lines) and the gap between them (bars, first −
    second), all in nats on one axis: a tall bar is where the student leaves the teacher's path. `rows` come from
    `Explanation.token_gaps()`."""
    labels = [f"{r['position']}: {_esc(repr(r['token']), 14)}" for r in rows]
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=labels,
            y=[float(r["gap"]) for r in rows],
            name=f"gap ({_esc(names[0], 20)} − {_esc(names[1], 20)})",
            marker_color="rgba(120,120,120,0.45)",
            hovertemplate="%{x}: gap %{y:+.2f} nats<extra></extra>",
        )
    )
    for role, colour in zip(names, ("#1f77b4", "#ff7f0e")):
        fig.add_trace(
            go.Scatter(
                x=labels,
                y=[float(r[role]) for r in rows],
                mode="lines+markers",
                name=f"{_esc(role, 20)} log p",
                line=dict(color=colour),
                hovertemplate="%{x}: log p %{y:.2f}<extra>" + _esc(role, 20) + "</extra>",
            )
        )
    fig.update_layout(
        height=360,
        margin=dict(t=40, l=10, r=10, b=10),
        legend=dict(orientation="h", y=1.15),
        yaxis=dict(title="nats"),
        xaxis=dict(title="gold-answer token"),
        title="Gold answer, token by token",
    )
    fig.add_hline(y=0, line_color="grey", line_width=1)
    return fig
