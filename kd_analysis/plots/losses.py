"""Figures for the loss explorer."""

from __future__ import annotations

import html
import math
import textwrap
from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kd_analysis.losses.registry import LOSSES
from kd_analysis.plots import LOG_AXIS

TEACHER_COLOR, STUDENT_COLOR = "#4C78A8", "#F58518"


def _title(name: str) -> str:
    return LOSSES[name].title if name in LOSSES else name


def toy_fits(
    teacher: Sequence[float], fits: dict[str, Sequence[float]], cols: int = 3, notes: dict[str, str] | None = None
) -> go.Figure:
    """One panel per loss: teacher bars and the fitted student's distribution, both at τ = 1 (as the student
    answers after distillation). `notes` adds a word per panel title (e.g. what the fit did)."""
    names = list(fits)
    rows = math.ceil(len(names) / cols)
    notes = notes or {}
    titles = [f"{_title(n)}<br>{notes[n]}" if notes.get(n) else _title(n) for n in names]  # two lines: no overlap
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, shared_yaxes=True, vertical_spacing=0.12)
    x = list(range(len(teacher)))
    for i, name in enumerate(names):
        r, c = i // cols + 1, i % cols + 1
        fig.add_trace(
            go.Bar(x=x, y=list(teacher), marker_color=TEACHER_COLOR, opacity=0.55, name="teacher", showlegend=i == 0),
            row=r,
            col=c,
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=list(fits[name]),
                mode="lines+markers",
                line=dict(color=STUDENT_COLOR),
                marker=dict(size=4),
                name="student",
                showlegend=i == 0,
            ),
            row=r,
            col=c,
        )
    fig.update_layout(
        height=300 * rows + 40,
        margin=dict(t=100, b=30),
        legend=dict(orientation="h", x=1, xanchor="right", y=1.0, yanchor="bottom", yref="container"),
        title=dict(
            text="Teacher (bars) and the student each loss converges to (line), over ordered classes, both at τ = 1",
            y=0.98,
            yref="container",
            yanchor="top",
        ),
    )
    return fig


def toy_paths(paths: dict[str, list[dict]]) -> go.Figure:
    """How μ and σ of the one-bump student move under each loss."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["student mean μ", "student width σ"])
    for name, path in paths.items():
        steps = [p["step"] for p in path]
        fig.add_trace(
            go.Scatter(x=steps, y=[p["mu"] for p in path], mode="lines", name=_title(name), legendgroup=name),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=[p["sigma"] for p in path],
                mode="lines",
                name=_title(name),
                legendgroup=name,
                showlegend=False,
            ),
            row=1,
            col=2,
        )
    fig.update_xaxes(title_text="iteration")
    fig.update_layout(height=360, margin=dict(t=50, b=40), title="The path there")
    return fig


def loss_and_gradients(values: dict[str, float], grad_norms: dict[str, float]) -> go.Figure:
    """Loss values beside the gradient norms they send into the student's logits (log scale)."""
    names = list(values)
    labels = [_title(n) for n in names]
    fig = make_subplots(rows=1, cols=2, subplot_titles=["loss value", "‖∂loss/∂student logits‖"])
    fig.add_trace(
        go.Bar(
            x=labels,
            y=[max(values[n], 1e-12) for n in names],
            marker_color=TEACHER_COLOR,
            name="value",
            text=[f"{values[n]:.3g}" for n in names],
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Bar(
            x=labels,
            y=[max(grad_norms[n], 1e-12) for n in names],
            marker_color=STUDENT_COLOR,
            name="gradient norm",
            text=[f"{grad_norms[n]:.3g}" for n in names],
        ),
        row=1,
        col=2,
    )
    fig.update_yaxes(**LOG_AXIS)
    fig.update_layout(height=380, showlegend=False, margin=dict(t=50, b=40))
    return fig


def _distinct(labels: Sequence[str], width: int = 24) -> list[str]:
    """Escaped, shortened labels, made distinct (a category axis would merge equal ones)."""
    short = [html.escape(str(lab))[:width] for lab in labels]
    return [s if short.count(s) == 1 else f"{s} ·{i}" for i, s in enumerate(short)]


UNIFORM_RANGE = (0.0, 2.0)  # colour range of a uniform plan: 1 sits in the middle of the scale


def _diverging(zmax: float) -> list[list]:
    """Blue below the uniform level 1, white at 1, red above, on the range [0, zmax]."""
    mid = min(max(1.0 / zmax, 0.0), 1.0)
    return [[0.0, "#2166AC"], [mid, "#F7F7F7"], [1.0, "#B2182B"]]


def transport_plan(
    plan: Sequence[Sequence[float]], labels: Sequence[str], title: str = "", tolerance: float | None = None
) -> go.Figure:
    """B×B plan relative to the uniform plan: B²·P, so 1 = every pair gets 1/B², and B on the diagonal (0 elsewhere)
    is every student example matched to its own teacher example. Rows are student examples, columns teacher
    examples. A plan uniform within `tolerance` is drawn as uniform on a fixed range around 1, with a note, so
    that 1e-8 noise is never stretched over the whole colour scale."""
    from kd_analysis.losses.transport_plans import UNIFORM_TOLERANCE, summarise_plan

    summary = summarise_plan(plan, UNIFORM_TOLERANCE if tolerance is None else tolerance)
    b = summary.batch
    total = sum(float(v) for r in plan for v in r) or 1.0
    rel = [[float(v) / total * b * b for v in r] for r in plan]
    z = [[1.0] * b for _ in range(b)] if summary.uniform else rel
    zmin, zmax = UNIFORM_RANGE if summary.uniform else (0.0, max(UNIFORM_RANGE[1], max(map(max, rel))))
    short = _distinct(labels)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=short,
            y=short,
            zmin=zmin,
            zmax=zmax,
            colorscale=_diverging(zmax),
            customdata=rel,
            colorbar=dict(title="B²·plan", tickvals=[zmin, 1.0, zmax], ticktext=["0", "1 = uniform", f"{zmax:.3g}"]),
            hovertemplate="student %{y}<br>teacher %{x}<br>B²·plan %{customdata:.4g} (1 = uniform)<extra></extra>",
        )
    )
    fig.add_shape(type="line", x0=-0.5, y0=-0.5, x1=b - 0.5, y1=b - 0.5, line=dict(color="#444", dash="dot", width=1))
    note = textwrap.wrap(summary.note, 60)  # in the title block, where no axis labels can cover it
    head = title or (
        f"Sinkhorn plan × B² (B = {b})<br><sup>1 = uniform 1/B²; {b} on the dotted diagonal =<br>"
        "each example matched to its own</sup>"
    )
    lines = head.count("<br>") + 1 + len(note)
    fig.update_layout(
        title=dict(
            text=head + "".join(f"<br><sup><i>{html.escape(line)}</i></sup>" for line in note),
            y=0.98,
            yref="container",
            yanchor="top",
            pad=dict(t=6),
        ),
        meta={"note": summary.note, "uniform": summary.uniform},
        height=560 + 20 * lines,
        yaxis=dict(autorange="reversed", title="student example", type="category"),
        xaxis=dict(title="teacher example", type="category"),
        margin=dict(t=44 + 22 * lines),
    )
    return fig


def cost_matrix(cost: Sequence[Sequence[float]], labels: Sequence[str], title: str = "") -> go.Figure:
    """The ground cost between student row i and teacher row j that the plan is computed from."""
    short = _distinct(labels)
    fig = go.Figure(
        go.Heatmap(
            z=[[float(v) for v in r] for r in cost],
            x=short,
            y=short,
            colorscale="Viridis",
            reversescale=True,
            colorbar=dict(title="cost"),
            hovertemplate="student %{y}<br>teacher %{x}<br>cost %{z:.4g}<extra></extra>",
        )
    )
    fig.update_layout(
        title=dict(
            text=title
            or "Ground cost between the examples' outputs<br><sup>L1 between distributions; low = similar</sup>"
        ),
        height=600,
        yaxis=dict(autorange="reversed", title="student example", type="category"),
        xaxis=dict(title="teacher example", type="category"),
        margin=dict(t=80),
    )
    return fig


def probability_bars(
    columns: Sequence[str], teacher: Sequence[float], student: Sequence[float], gold: int | None = None, title: str = ""
) -> go.Figure:
    """Teacher and student probabilities side by side (grouped, never overlaid), each bar outlined and labelled
    with its value so that a small student bar stays visible. `title` should say which example (and, for a
    language model, which token position) the bars show."""
    names = [
        html.escape(repr(c)[1:-1] if str(c).strip() == "" or str(c) != str(c).strip() else str(c)) or f"#{i}"
        for i, c in enumerate(columns)
    ]  # whitespace tokens shown visibly ("\\n", " ")
    names = [n if names.count(n) == 1 else f"{n} ·{i}" for i, n in enumerate(names)]  # distinct bars
    if gold is not None and 0 <= gold < len(names):
        names[gold] = f"{names[gold]} ✓"
    bars = [
        go.Bar(
            x=names,
            y=list(values),
            name=who,
            marker=dict(color=color, line=dict(color="#222", width=1)),
            opacity=1.0,
            offsetgroup=who,
            text=[f"{v:.2g}" for v in values],
            textposition="outside",
            cliponaxis=False,
        )
        for who, values, color in (("teacher", teacher, TEACHER_COLOR), ("student", student, STUDENT_COLOR))
    ]
    fig = go.Figure(bars)
    top = max([float(v) for v in (*teacher, *student)] or [1.0])
    fig.update_layout(
        barmode="group",
        bargap=0.25,
        bargroupgap=0.05,
        title=title or "Teacher vs student probabilities (at τ)",
        height=380,
        yaxis=dict(title="probability", range=[0, top * 1.18 or 1]),
        margin=dict(t=60),
        legend=dict(orientation="h", x=1, xanchor="right", y=1.02, yanchor="bottom"),
        xaxis=dict(type="category"),
    )  # token texts such as "1" or "." stay labels, never numbers
    return fig


def token_contributions(tokens: Sequence[tuple[str, float]], title: str = "") -> go.Figure:
    labels = [f"{i}:{html.escape(t)}" for i, (t, _) in enumerate(tokens)]
    fig = go.Figure(go.Bar(x=labels, y=[v for _, v in tokens], marker_color=STUDENT_COLOR))
    fig.update_layout(title=title or "KL per token position", height=320, yaxis_title="KL", margin=dict(t=50))
    return fig


def ab_plane(
    grid: Sequence[tuple[float, float]],
    named: dict[str, tuple[float, float]],
    selected: tuple[float, float] | None = None,
) -> go.Figure:
    """The α-β plane: a clickable grid, the named losses as labelled points, the chosen point as a star. Each
    grid point carries its (α, β) as customdata, so a click selects it."""
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[a for a, _ in grid],
            y=[b for _, b in grid],
            customdata=[[a, b] for a, b in grid],
            mode="markers",
            marker=dict(size=7, color="#c8c8c8"),
            name="click a point",
            hovertemplate="α %{x:.2f}, β %{y:.2f}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[a for a, _ in named.values()],
            y=[b for _, b in named.values()],
            customdata=[[a, b] for a, b in named.values()],
            text=[html.escape(n) for n in named],
            mode="markers+text",
            textposition="top right",
            marker=dict(size=12, color=TEACHER_COLOR),
            name="named losses",
            hovertemplate="%{text}: α %{x:g}, β %{y:g}<extra></extra>",
        )
    )
    if selected is not None:
        fig.add_trace(
            go.Scatter(
                x=[selected[0]],
                y=[selected[1]],
                mode="markers",
                marker=dict(size=18, symbol="star", color=STUDENT_COLOR),
                name=f"chosen: α {selected[0]:g}, β {selected[1]:g}",
                hoverinfo="skip",
            )
        )
    fig.update_layout(
        title="The α-β plane (click a point)",
        xaxis=dict(title="α (teacher side)", range=[-0.1, 2.1]),
        yaxis=dict(title="β (student side)", range=[-0.1, 2.1], scaleanchor="x"),
        height=460,
        clickmode="event+select",
        legend=dict(orientation="h", y=-0.2),
    )
    return fig
