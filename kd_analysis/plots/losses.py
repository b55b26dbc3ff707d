"""Figures for the loss explorer."""
from __future__ import annotations

import html
import math
from typing import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kd_analysis.losses.registry import LOSSES

TEACHER_COLOR, STUDENT_COLOR = "#4C78A8", "#F58518"


def _title(name: str) -> str:
    return LOSSES[name].title if name in LOSSES else name


def toy_fits(teacher: Sequence[float], fits: dict[str, Sequence[float]], cols: int = 3) -> go.Figure:
    """One panel per loss: teacher bars and the fitted student's distribution."""
    names = list(fits)
    rows = math.ceil(len(names) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[_title(n) for n in names], shared_yaxes=True,
                        vertical_spacing=0.12)
    x = list(range(len(teacher)))
    for i, name in enumerate(names):
        r, c = i // cols + 1, i % cols + 1
        fig.add_trace(go.Bar(x=x, y=list(teacher), marker_color=TEACHER_COLOR, opacity=0.55, name="teacher",
                             showlegend=i == 0), row=r, col=c)
        fig.add_trace(go.Scatter(x=x, y=list(fits[name]), mode="lines+markers", line=dict(color=STUDENT_COLOR),
                                 marker=dict(size=4), name="student", showlegend=i == 0), row=r, col=c)
    fig.update_layout(height=300 * rows + 40, margin=dict(t=100, b=30),
                      legend=dict(orientation="h", x=1, xanchor="right", y=1.0, yanchor="bottom", yref="container"),
                      title=dict(text="Teacher (bars) and the student each loss converges to (line), over ordered "
                                      "classes", y=0.98, yref="container", yanchor="top"))
    return fig


def toy_paths(paths: dict[str, list[dict]]) -> go.Figure:
    """How μ and σ of the one-bump student move under each loss."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["student mean μ", "student width σ"])
    for name, path in paths.items():
        steps = [p["step"] for p in path]
        fig.add_trace(go.Scatter(x=steps, y=[p["mu"] for p in path], mode="lines", name=_title(name),
                                 legendgroup=name), row=1, col=1)
        fig.add_trace(go.Scatter(x=steps, y=[p["sigma"] for p in path], mode="lines", name=_title(name),
                                 legendgroup=name, showlegend=False), row=1, col=2)
    fig.update_xaxes(title_text="step")
    fig.update_layout(height=360, margin=dict(t=50, b=40), title="The path there")
    return fig


def loss_and_gradients(values: dict[str, float], grad_norms: dict[str, float]) -> go.Figure:
    """Loss values beside the gradient norms they send into the student's logits (log scale)."""
    names = list(values)
    labels = [_title(n) for n in names]
    fig = make_subplots(rows=1, cols=2, subplot_titles=["loss value", "‖∂loss/∂student logits‖"])
    fig.add_trace(go.Bar(x=labels, y=[max(values[n], 1e-12) for n in names], marker_color=TEACHER_COLOR,
                         name="value", text=[f"{values[n]:.3g}" for n in names]), row=1, col=1)
    fig.add_trace(go.Bar(x=labels, y=[max(grad_norms[n], 1e-12) for n in names], marker_color=STUDENT_COLOR,
                         name="gradient norm", text=[f"{grad_norms[n]:.3g}" for n in names]), row=1, col=2)
    fig.update_yaxes(type="log")
    fig.update_layout(height=380, showlegend=False, margin=dict(t=50, b=40))
    return fig


def transport_plan(plan: Sequence[Sequence[float]], labels: Sequence[str], title: str = "") -> go.Figure:
    """B×B plan: rows are student examples, columns teacher examples; mass off the diagonal is borrowed."""
    short = [html.escape(str(lab))[:24] for lab in labels]
    fig = go.Figure(go.Heatmap(z=[list(r) for r in plan], x=short, y=short, colorscale="Viridis",
                               colorbar=dict(title="mass"),
                               hovertemplate="student %{y}<br>teacher %{x}<br>mass %{z:.4f}<extra></extra>"))
    fig.update_layout(title=title or "Sinkhorn transport plan (rows: student, columns: teacher)", height=520,
                      yaxis=dict(autorange="reversed", title="student example"),
                      xaxis=dict(title="teacher example"), margin=dict(t=60))
    return fig


def probability_bars(columns: Sequence[str], teacher: Sequence[float], student: Sequence[float],
                     gold: int | None = None, title: str = "") -> go.Figure:
    names = [html.escape(repr(c)[1:-1] if str(c).strip() == "" or str(c) != str(c).strip() else str(c))
             or f"#{i}" for i, c in enumerate(columns)]  # whitespace tokens shown visibly ("\\n", " ")
    names = [n if names.count(n) == 1 else f"{n} ·{i}" for i, n in enumerate(names)]  # distinct bars
    if gold is not None and 0 <= gold < len(names):
        names[gold] = f"{names[gold]} ✓"
    fig = go.Figure([go.Bar(x=names, y=list(teacher), name="teacher", marker_color=TEACHER_COLOR),
                     go.Bar(x=names, y=list(student), name="student", marker_color=STUDENT_COLOR)])
    fig.update_layout(barmode="group", title=title or "Teacher vs student probabilities (at τ)", height=360,
                      yaxis_title="probability", margin=dict(t=50),
                      xaxis=dict(type="category"))  # token texts such as "1" or "." stay labels, never numbers
    return fig


def token_contributions(tokens: Sequence[tuple[str, float]], title: str = "") -> go.Figure:
    labels = [f"{i}:{html.escape(t)}" for i, (t, _) in enumerate(tokens)]
    fig = go.Figure(go.Bar(x=labels, y=[v for _, v in tokens], marker_color=STUDENT_COLOR))
    fig.update_layout(title=title or "KL per token position", height=320, yaxis_title="KL", margin=dict(t=50))
    return fig
