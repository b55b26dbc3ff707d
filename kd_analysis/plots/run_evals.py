"""One run's evaluation curve: each eval metric over steps, with the teacher's score as a reference line."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from kd_analysis.training.evals import EVAL_PREFIX


def eval_curves(rows: Sequence[dict[str, Any]], title: str = "Evaluation") -> go.Figure:
    """`rows` from `training.evals.eval_rows`. A dashed line per teacher score (teacher_<metric>) sits at the
    teacher's value for the live model's matching eval_<metric>, so the gap to the teacher is read directly."""
    fig = go.Figure()
    metrics = sorted({k for r in rows for k in r if k.startswith(EVAL_PREFIX)})
    for name in metrics:
        pts = [(r["step"], r[name]) for r in rows if isinstance(r.get(name), (int, float))]
        fig.add_trace(
            go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=html.escape(name))
        )
        teacher = next(
            (
                r[f"teacher_{name[len(EVAL_PREFIX) :]}"]
                for r in rows
                if isinstance(r.get(f"teacher_{name[len(EVAL_PREFIX) :]}"), (int, float))
            ),
            None,
        )
        if teacher is not None and pts:
            fig.add_trace(
                go.Scatter(
                    x=[min(p[0] for p in pts), max(p[0] for p in pts)],
                    y=[teacher, teacher],
                    mode="lines",
                    line=dict(dash="dash", color="grey"),
                    name=html.escape(f"teacher {name[len(EVAL_PREFIX) :]}"),
                )
            )
    fig.update_layout(
        title=html.escape(title),
        xaxis_title="step",
        height=320,
        margin=dict(t=50),
        legend=dict(orientation="h", y=-0.25),
    )
    return fig
