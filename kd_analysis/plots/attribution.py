"""Figures and token heatmaps for attributions. Token text is always HTML-escaped."""

from __future__ import annotations

import html
from collections.abc import Sequence

import plotly.graph_objects as go

from kd_analysis.attribution.rationales import PAPER_OVERLAP


def token_heatmap_html(
    words: Sequence[tuple[str, float]], highlight: set[int] | None = None, answer: set[int] | None = None
) -> str:
    """Words coloured by score (orange: supports the answer, blue: against); rationale words boxed, answer
    words underlined. Every word is escaped, so model or data text can never inject markup."""
    peak = max((abs(s) for _, s in words), default=0.0) or 1.0
    spans = []
    for i, (text, score) in enumerate(words):
        a = min(abs(score) / peak, 1.0)
        colour = f"rgba(245,133,24,{a:.2f})" if score >= 0 else f"rgba(76,120,168,{a:.2f})"
        style = [f"background:{colour}", "padding:1px 3px", "margin:1px", "border-radius:3px", "display:inline-block"]
        if highlight and i in highlight:
            style.append("outline:2px solid #222")
        if answer and i in answer:
            style.append("text-decoration:underline")
        spans.append(f'<span title="{score:.4g}" style="{";".join(style)}">{html.escape(text)}</span>')
    return '<div style="line-height:2.0;font-family:sans-serif">' + " ".join(spans) + "</div>"


def overlap_vs_k(
    rows: Sequence[dict], definition: str = "any", title: str = "", *, show_paper: bool = False
) -> go.Figure:
    """Mean overlap per k for each (method, group) series, with 95% intervals where the rows carry them
    ("<definition> 95% low/high", see `attribution.report.with_intervals`), and the chance level of random words.

    The paper's 68% is drawn only with `show_paper=True`: pass `attribution.report.paper_reference(...).comparable`,
    which holds for the "any" definition on multiple-choice data only."""
    fig = go.Figure()
    series: dict[str, list[tuple[int, float, float | None, float | None]]] = {}
    chance: dict[int, float] = {}  # random words drawn from the same candidates, over all examples
    for r in rows:
        if r.get(definition) is None:
            continue
        label = html.escape(f"{r.get('method', '')} {r['group']}".strip())
        series.setdefault(label, []).append(
            (r["k"], r[definition], r.get(f"{definition} 95% low"), r.get(f"{definition} 95% high"))
        )
        if r["group"] == "all" and r.get(f"chance {definition}") is not None:
            chance[r["k"]] = r[f"chance {definition}"]
    for i, (label, pts) in enumerate(series.items()):
        pts.sort(key=lambda p: p[0])
        up = [None if p[3] is None else p[3] - p[1] for p in pts]
        down = [None if p[2] is None else p[1] - p[2] for p in pts]
        has_ci = any(v is not None for v in up)
        shift = (i - (len(series) - 1) / 2) * 0.12 if has_ci else 0.0  # side by side, so intervals stay readable
        fig.add_trace(
            go.Scatter(
                x=[p[0] + shift for p in pts],
                y=[p[1] for p in pts],
                mode="lines+markers",
                name=label + (" (95% interval)" if has_ci else ""),
                customdata=[[p[0], p[2], p[3]] for p in pts],
                hovertemplate="k = %{customdata[0]}: %{y:.0%}"
                + (" [%{customdata[1]:.0%}, %{customdata[2]:.0%}]" if has_ci else ""),
                error_y=dict(type="data", array=up, arrayminus=down, visible=has_ci, thickness=1),
            )
        )
    if chance:
        ks = sorted(chance)
        fig.add_trace(
            go.Scatter(
                x=ks,
                y=[chance[k] for k in ks],
                mode="lines",
                name="random words (chance)",
                line=dict(dash="dot", color="black"),
            )
        )
    if show_paper:
        fig.add_hline(
            y=PAPER_OVERLAP,
            line_dash="dash",
            line_color="grey",
            annotation_text=f"Ballout et al. 2024: {PAPER_OVERLAP:.0%} (multiple choice, their teacher)",
            annotation_position="bottom right",
        )
    fig.update_layout(
        title=title or f"Ground-truth overlap ({definition}) vs k",
        xaxis_title="k (rationale words)",
        yaxis=dict(title=definition, range=[0, 1.05]),
        height=380,
        margin=dict(t=50),
    )
    return fig
