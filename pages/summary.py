"""Summary: the demo's story in five sections, from shipped runs and jobs only (nothing is computed on open but
the cached toy fit); "Export" writes the same story as one self-contained HTML file."""
import pandas as pd
import streamlit as st

from app_ui.safe_text import md
from kd_analysis.runs import RunStore
from kd_analysis.story import build_story, story_html

store = RunStore()
st.title("Summary: what distillation does, on the demo")
st.caption("Built from the shipped reference runs: CPU-scale runs on generated data, so no number here is "
           "comparable with the papers'. Every rate has its n and a 95% interval.")


def _stamp() -> tuple:
    out = []
    for r in store.list():
        try:
            s = (store.root / r.run_id / "status.json").stat()
            out.append((r.run_id, s.st_mtime_ns))
        except OSError:
            pass
    return tuple(out)


@st.cache_resource(show_spinner="Reading the shipped runs…", max_entries=4)
def _story(root: str, stamp: tuple):
    """Shared by every session of the server: the story changes only when a run does."""
    return build_story(RunStore(root))


sections = _story(str(store.root), _stamp())
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

st.divider()
st.download_button("Export this story (HTML, works offline)", lambda: story_html(sections), "kd-lens-story.html",
                   "text/html", icon=":material/download:", on_click="ignore",
                   help="one file: plotly's JavaScript inlined, no network; `python -m kd_analysis story --out "
                        "story.html` writes the same")
