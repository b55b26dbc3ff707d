"""Figures and token heatmaps for attributions. Token text is always HTML-escaped."""
from __future__ import annotations

import html
from typing import Sequence

import plotly.graph_objects as go

from kd_analysis.attribution.rationales import PAPER_OVERLAP


def token_heatmap_html(words: Sequence[tuple[str, float]], highlight: set[int] | None = None,
                       answer: set[int] | None = None) -> str:
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


def overlap_vs_k(rows: Sequence[dict], definition: str = "any", title: str = "") -> go.Figure:
    """Mean overlap per k for each (method, group) series, the chance level of random words, and the paper's 68%
    as a reference line."""
    fig = go.Figure()
    series: dict[str, list[tuple[int, float]]] = {}
    chance: dict[int, float] = {}  # random words drawn from the same candidates, over all examples
    for r in rows:
        if r.get(definition) is None:
            continue
        label = html.escape(f"{r.get('method', '')} {r['group']}".strip())
        series.setdefault(label, []).append((r["k"], r[definition]))
        if r["group"] == "all" and r.get(f"chance {definition}") is not None:
            chance[r["k"]] = r[f"chance {definition}"]
    for label, pts in series.items():
        pts.sort()
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=label))
    if chance:
        ks = sorted(chance)
        fig.add_trace(go.Scatter(x=ks, y=[chance[k] for k in ks], mode="lines", name="random words (chance)",
                                 line=dict(dash="dot", color="black")))
    fig.add_hline(y=PAPER_OVERLAP, line_dash="dash", line_color="grey",
                  annotation_text="Ballout et al. 2024: 68%", annotation_position="bottom right")
    fig.update_layout(title=title or f"Ground-truth overlap ({definition}) vs k", xaxis_title="k (rationale words)",
                      yaxis=dict(title=definition, range=[0, 1.05]), height=380, margin=dict(t=50))
    return fig
