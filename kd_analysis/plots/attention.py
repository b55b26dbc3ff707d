"""Attention figures: layer x head grids, difference maps, per-layer profiles, one head's matrix.

Pure functions (data in, figure out). Labels that come from models or users are HTML-escaped, since plotly
renders a subset of HTML in hover and tick text.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kd_analysis.attention.compare import DiffMap, layer_profile
from kd_analysis.attention.stats import STATS, HeadStats


def _hover(mean: np.ndarray, ci: np.ndarray | None) -> list[list[str]]:
    out = []
    for layer, row in enumerate(mean):
        cells = []
        for head, v in enumerate(row):
            txt = f"layer {layer}, head {head}<br>{'n/a' if not np.isfinite(v) else f'{v:.3f}'}"
            if ci is not None and np.isfinite(ci[layer, head]):
                txt += f" ± {ci[layer, head]:.3f}"
            cells.append(txt)
        out.append(cells)
    return out


def head_grid(stats: Sequence[HeadStats], stat: str, zrange: tuple[float, float] | None = None) -> go.Figure:
    """One layer x head heatmap per strategy, on a shared colour scale."""
    vals = np.concatenate([s.mean[stat].ravel() for s in stats])
    finite = vals[np.isfinite(vals)]
    lo, hi = zrange or ((float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0))
    fig = make_subplots(
        rows=1,
        cols=len(stats),
        shared_yaxes=True,
        horizontal_spacing=0.02,
        subplot_titles=[html.escape(f"{s.label} (n={s.examples})") for s in stats],
    )
    for i, s in enumerate(stats, 1):
        fig.add_trace(
            go.Heatmap(
                z=s.mean[stat],
                zmin=lo,
                zmax=hi,
                colorscale="Viridis",
                showscale=i == len(stats),
                hoverinfo="text",
                text=_hover(s.mean[stat], s.ci[stat]),
            ),
            1,
            i,
        )
        fig.update_xaxes(title_text="head", row=1, col=i)
    fig.update_yaxes(title_text="layer", row=1, col=1)
    fig.update_layout(
        title=f"{STATS.get(stat, stat)} per layer x head",
        height=max(300, 22 * stats[0].layers + 140),
        margin=dict(t=70),
    )
    return fig


def diff_heatmap(d: DiffMap) -> go.Figure:
    """a - b per head; clear differences (beyond both 95% intervals) are marked with a dot."""
    peak = float(np.nanmax(np.abs(d.diff))) if np.isfinite(d.diff).any() else 1.0
    fig = go.Figure(
        go.Heatmap(
            z=d.diff,
            zmid=0,
            zmin=-peak,
            zmax=peak,
            colorscale="RdBu_r",
            hoverinfo="text",
            text=_hover(d.diff, None),
            colorbar=dict(title="a − b"),
        )
    )
    ys, xs = np.nonzero(d.clear)
    if len(xs):
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="markers",
                marker=dict(symbol="circle", size=6, color="black"),
                name="beyond both 95% intervals",
                hoverinfo="skip",
            )
        )
    fig.update_layout(
        title=html.escape(
            f"{STATS.get(d.stat, d.stat)}: {d.a} − {d.b} ({int(d.clear.sum())} clear of {d.clear.size} heads)"
        ),
        xaxis_title="head",
        yaxis_title="layer",
        height=max(300, 22 * d.diff.shape[0] + 140),
        legend=dict(orientation="h", y=-0.2),
    )
    return fig


def profile_lines(stats: Sequence[HeadStats], stat: str) -> go.Figure:
    """Mean over heads per layer, one line per strategy (our summary of the per-head statistics)."""
    fig = go.Figure()
    for s in stats:
        y = layer_profile(s, stat)
        fig.add_trace(go.Scatter(x=list(range(len(y))), y=y, mode="lines+markers", name=html.escape(s.label)))
    fig.update_layout(
        title=f"{STATS.get(stat, stat)}: mean over heads per layer",
        xaxis_title="layer",
        yaxis_title=STATS.get(stat, stat),
        height=360,
    )
    return fig


def head_matrix_plot(matrix: np.ndarray, labels: Sequence[str], title: str = "") -> go.Figure:
    """One head's attention (query rows, key columns) with token labels."""
    ticks = [html.escape(f"{i}:{t!r}"[:24]) for i, t in enumerate(labels)]
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            x=ticks,
            y=ticks,
            colorscale="Blues",
            zmin=0,
            zmax=float(np.max(matrix)),
            colorbar=dict(title="weight"),
        )
    )
    fig.update_layout(
        title=html.escape(title),
        xaxis_title="key (attended to)",
        yaxis_title="query",
        yaxis_autorange="reversed",
        height=max(400, 14 * len(labels) + 160),
        xaxis=dict(tickangle=-60, tickfont=dict(size=9)),
        yaxis=dict(tickfont=dict(size=9)),
    )
    return fig
