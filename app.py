"""kd-lens home: what the app does, the current teacher/student/data, and links to each workflow."""
import streamlit as st

from app_ui import state
from app_ui.resources import dataset, is_loaded, load_pair, show_error
from app_ui.sidebar import render_sidebar
from app_ui.views import pair_overview

st.set_page_config(page_title="kd-lens", page_icon="🔬", layout="wide")
sel = render_sidebar()

st.title("kd-lens: see and run knowledge distillation")
st.markdown(
    "Distil a large **teacher** language model into a small **student**, and look inside while you do it. "
    "Three published methods are the core:\n"
    "- **Saliency rationales** (Ballout et al. 2024): the teacher's gradient attributions pick the input tokens "
    "behind its answer; those tokens become rationales for the student.\n"
    "- **Response-priming prompts** (Goyal et al. 2024): prompt strategies shape the teacher's outputs before "
    "the student is fine-tuned from them.\n"
    "- **SinKD** (Cui et al. 2024): a Sinkhorn (optimal-transport) distance between teacher and student outputs "
    "in place of KL-type losses.\n\n"
    "Pick the teacher, student and data set in the sidebar; every page uses them."
)

st.subheader("Current selection")
st.caption(sel.describe())
auto = sel.teacher.source == state.DEFAULTS["teacher_source"] and sel.student.kind != "model"
loaded = is_loaded(sel.teacher, sel.student)
if loaded or auto or st.button("Load teacher and student", type="primary"):
    try:
        teacher, student, report = load_pair(sel.teacher, sel.student)
        pair_overview(teacher, student, report)
    except Exception as exc:  # shown as a message, never a traceback
        show_error(exc)
else:
    st.info("Larger models load on request (the built-in demo pair loads by itself). "
            "See their size first on the Models & data page.")

try:
    ds = dataset(sel.data_source)
    c1, c2, c3 = st.columns(3)
    c1.metric("Data set", ds.name)
    c2.metric("Examples", f"{len(ds.examples):,}")
    c3.metric("Format", ds.format)
except Exception as exc:
    show_error(exc)

st.subheader("Workflows")
st.page_link("pages/1_Models_and_data.py", label="Models & data: load checkpoints, check the pair, validate data",
             icon="🧩")
