"""Figures for the inside views: the teacher-layer × student-layer CKA heatmap, both models' logit lens on one
relative-depth axis, and the head-similarity heatmap. Pure functions of an inside report's dict."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

TEACHER, STUDENT = "#0068c9", "#83c9ff"


def cka_heatmap(cka: dict[str, Any], title: str = "Layer similarity (linear CKA)") -> go.Figure:
    """Rows: teacher layers; columns: student layers; layer 0 is the embeddings. Blank: the layer does not vary
    across the examples, so CKA is undefined there."""
    fig = go.Figure(
        go.Heatmap(
            z=cka["matrix"],
            x=[f"S{j}" for j in cka["student_layers"]],
            y=[f"T{i}" for i in cka["teacher_layers"]],
            zmin=0,
            zmax=1,
            colorscale="Viridis",
            colorbar={"title": "CKA"},
            hovertemplate="teacher layer %{y} · student layer %{x}<br>CKA %{z:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        xaxis_title="student layer",
        yaxis_title="teacher layer",
        yaxis={"autorange": "reversed"},
        height=max(320, 18 * len(cka["teacher_layers"]) + 140),
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
    )
    return fig


def _band(fig: go.Figure, rows: list[dict[str, Any]], colour: str, opacity: float) -> None:
    """The 95% interval of p(gold) by depth as a filled band (no markers), where the rows have one."""
    band = [r for r in rows if r.get("gold_prob_interval")]
    if not band:
        return
    fig.add_trace(
        go.Scatter(
            x=[r["depth"] for r in band] + [r["depth"] for r in reversed(band)],
            y=[r["gold_prob_interval"][1] for r in band] + [r["gold_prob_interval"][0] for r in reversed(band)],
            mode="lines",
            fill="toself",
            fillcolor=colour,
            opacity=opacity,
            line={"width": 0},
            hoverinfo="skip",
            showlegend=False,
        )
    )


def lens_by_depth(lens: dict[str, Any], measure: str = "gold_prob") -> go.Figure:
    """One line per model over relative depth (layer / layers), so a deep teacher and a shallow student read
    together: p(gold) with its 95% interval as a band, or KL to the model's own final reading."""
    fig = go.Figure()
    for role, colour in (("teacher", TEACHER), ("student", STUDENT)):
        rows = [r for r in lens.get(role) or [] if r.get(measure) is not None]
        if not rows:
            continue
        x = [r["depth"] for r in rows]
        if measure == "gold_prob":
            _band(fig, rows, colour, 0.2)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[r[measure] for r in rows],
                mode="lines+markers",
                name=role,
                line={"color": colour},
                customdata=[[r["layer"], r.get("n", 0)] for r in rows],
                hovertemplate=f"{role} layer %{{customdata[0]}} (depth %{{x:.2f}})<br>%{{y:.3g}} · n %{{customdata[1]}}"
                "<extra></extra>",
            )
        )
    label = {"gold_prob": "p(gold) read at this layer", "kl_to_final": "KL(final ‖ this layer), nats"}[measure]
    fig.update_layout(
        title="Logit lens by relative depth",
        xaxis_title="relative depth (layer / layers; 0: embeddings)",
        yaxis_title=label,
        height=360,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
    )
    return fig


def slices_lens(reports: dict[str, dict[str, Any]], role: str = "student") -> go.Figure:
    """One model's p(gold) by relative depth for each slice, with its 95% interval as a band and its n in the
    legend: where the slices' readings part."""
    palette = ["#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    fig = go.Figure()
    for i, (name, report) in enumerate(reports.items()):
        colour = palette[i % len(palette)]
        rows = [r for r in report["lens"][role] if r.get("gold_prob") is not None]
        _band(fig, rows, colour, 0.18)
        fig.add_trace(
            go.Scatter(
                x=[r["depth"] for r in rows],
                y=[r["gold_prob"] for r in rows],
                mode="lines+markers",
                name=f"{name} (n = {report['examples']})",
                line={"color": colour},
            )
        )
    fig.update_layout(
        title=f"{role.capitalize()}: p(gold) by depth, per slice",
        xaxis_title="relative depth (layer / layers; 0: embeddings)",
        yaxis_title="p(gold) read at this layer",
        height=360,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
    )
    return fig
