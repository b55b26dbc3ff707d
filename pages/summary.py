"""Summary: the demo's story in five sections, from shipped runs and jobs only. Nothing is computed on open: the
story is read once per server (warmed in the background, `app_ui/story_cache.py`); "Export" writes the same story
as one self-contained HTML file."""

import pandas as pd
import streamlit as st

from app_ui.navigation import run_under_app
from app_ui.safe_text import md
from app_ui.story_cache import cached_story, store_stamp
from kd_analysis.demo.story import story_html
from kd_analysis.runs import RunStore

run_under_app()  # before anything draws: a page file run by itself hands over to app.py


def story(sections: list) -> None:
    """Each section: its sentences, figures, tables and a link to the page that goes deeper."""
    for sec in sections:
        st.header(sec.title, divider="gray")
        if sec.missing:
            st.info(f"Not available yet: {md(sec.missing)}", icon=":material/info:")
            continue
        for sentence in sec.sentences:
            st.markdown(md(sentence))
        for i, fig in enumerate(sec.figures):
            st.plotly_chart(fig, width="stretch", key=f"{sec.key}_figure_{i}")
        for header, rows in sec.tables:
            st.dataframe(pd.DataFrame(rows, columns=header), hide_index=True, width="stretch")
        for fragment in sec.html:
            st.html(fragment)
        st.page_link(sec.page, label=f"Go deeper: {sec.page_label}", icon=":material/arrow_forward:")


def export(sections: list) -> None:
    st.download_button(
        "Export this story (HTML, works offline)",
        lambda: story_html(sections),
        "kd-lens-story.html",
        "text/html",
        icon=":material/download:",
        on_click="ignore",
        help="one file: plotly's JavaScript inlined, no network; `python -m kd_analysis story --out "
        "story.html` writes the same",
    )


def render() -> None:
    store = RunStore()
    st.title("Summary: what distillation does, on the demo")
    st.caption(
        "Built from the shipped reference runs: CPU-scale runs on generated data, so no number here is "
        "comparable with the papers'. Every rate has its n and a 95% interval."
    )
    sections = cached_story(str(store.root), store_stamp(store))
    story(sections)
    st.divider()
    export(sections)


render()
