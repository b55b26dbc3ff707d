"""kd-lens entry point and home page: what the app does, the current teacher/student/data, the workflows.

Run with `streamlit run app.py`. The sidebar (teacher, student, data set) is drawn here once for every page.
"""

import streamlit as st

from app_ui import state
from app_ui.navigation import WORKFLOW_PAGES
from app_ui.resources import dataset, is_loaded, load_pair, show_error
from app_ui.safe_text import md
from app_ui.sidebar import data_fit_warning, render_sidebar, sidebar_status, write_url_selection
from app_ui.story_cache import warm_in_background
from app_ui.uploads import keep_session_alive, prune_ended_sessions_daily
from app_ui.views import pair_overview

st.set_page_config(page_title="kd-lens", page_icon=":material/biotech:", layout="wide")


def home() -> None:
    sel = state.selection()
    write_url_selection()  # the selection is this page's view: a copied link reopens it
    st.title("kd-lens: see and run knowledge distillation")
    st.markdown(
        "Distil a large **teacher** language model into a small **student**, and look inside while you do it. "
        "Three published methods are the core:\n"
        "- **Saliency rationales** (Ballout et al. 2024): the teacher's gradient attributions pick the input "
        "tokens behind its answer; those tokens become rationales for the student.\n"
        "- **Response-priming prompts** (Goyal et al. 2024): prompt strategies shape the teacher's outputs "
        "before the student is fine-tuned from them.\n"
        "- **SinKD** (Cui et al. 2024): a batch-wise Sinkhorn (optimal-transport) distance between teacher and "
        "student outputs, added to the usual KD + CE loss.\n\n"
        "Pick the teacher, student and data set in the sidebar; every page uses them."
    )
    st.subheader("Workflows")
    for page in WORKFLOW_PAGES:
        # the link is the title; its summary wraps below it (a one-line link label was cut at the window's edge)
        link, words = st.columns([1, 3], vertical_alignment="center")
        link.page_link(PAGES[page.path], label=f"**{page.title}**")
        words.markdown(page.summary)

    st.subheader("Current selection")
    st.caption(md(sel.describe()))
    demo_pair = sel.teacher.source in (state.default_teacher(), "minilm") and sel.student.kind != "model"
    if is_loaded(sel.teacher, sel.student) or demo_pair or st.button("Load teacher and student", type="primary"):
        try:
            pair_overview(*load_pair(sel.teacher, sel.student))
        except Exception as exc:  # shown as a message, never a traceback
            show_error(exc)
    else:
        st.info(
            "Larger models load on request (the built-in demo pair loads by itself). Their size is shown "
            "before loading on the Models & data page.",
            icon=":material/info:",
        )
    try:
        ds = dataset(sel.data_source)
        c1, c2, c3 = st.columns(3)
        c1.metric("Data set", md(ds.name))
        c2.metric("Examples", f"{len(ds.examples):,}")
        c3.metric("Format", ds.format)
    except Exception as exc:
        show_error(exc)


PAGES = {p.path: st.Page(p.path, title=p.title, icon=p.icon, url_path=p.url_path) for p in WORKFLOW_PAGES}
navigation = st.navigation([st.Page(home, title="Home", icon=":material/home:", default=True), *PAGES.values()])
render_sidebar()
data_fit_warning()  # before the page: one that stops early (st.stop) still shows it
warm_in_background()  # the Summary page's story, read once per server while the user looks at another page
keep_session_alive()  # this session's uploads are in use
prune_ended_sessions_daily()  # other sessions' uploads, a week after their last page view
navigation.run()
sidebar_status()
