"""Pieces of self-contained HTML files (the error report, the story): one file, no network. plotly's JavaScript is
inlined from the installed package, styles are inline, and every value from data, models or users is escaped."""

from __future__ import annotations

import html
from collections.abc import Sequence, Set
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;
color:#1f2328;line-height:1.45}
h1{font-size:1.6em;margin-bottom:0}h2{border-bottom:1px solid #d0d7de;padding-bottom:4px;margin-top:2em}
.muted{color:#59636e;font-size:.9em}table{border-collapse:collapse;margin:8px 0;font-size:.9em}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums}.example{border:1px solid #d0d7de;border-radius:6px;
padding:12px 16px;margin:16px 0}.tag{display:inline-block;background:#ddf4ff;border-radius:10px;padding:0 8px;
margin:0 4px 0 0;font-size:.85em}pre{white-space:pre-wrap;background:#f6f8fa;padding:8px;border-radius:4px}
.note{border-left:3px solid #d0d7de;padding-left:8px;margin:6px 0}
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def document_head(title: str) -> str:
    """Everything up to and including <body>: charset, title, styles and plotly's JavaScript."""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style>"
        f'<script type="text/javascript">{plotly_js()}</script></head><body>'
    )


EXPORT_TEMPLATE = "plotly"  # what a figure exported from the CLI draws with


def figure_html(fig) -> str:
    """The figure as a <div> that draws itself offline with its own colours. Inside the app, importing streamlit
    makes its template the default, whose colours are placeholders (#000001, …) only Streamlit's frontend
    replaces: exported as they are, every chart draws black. So an exported copy always carries plotly's own
    template, as a figure built outside the app does."""
    import plotly.graph_objects as go
    import plotly.io as pio

    own = go.Figure(fig).update_layout(template=pio.templates[EXPORT_TEMPLATE])
    return pio.to_html(own, full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True})


def table_html(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Set[int] = frozenset()) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{esc(v)}</td>' if i in numeric else f"<td>{esc(v)}</td>" for i, v in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
