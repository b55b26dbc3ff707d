"""Models & data: load checkpoints from any source, see their architecture and the pair check, validate data."""
import pandas as pd
import streamlit as st

from app_ui import state
from app_ui.resources import load_pair, load_teacher, show_error
from app_ui.uploads import save_upload
from app_ui.views import loss_table, pair_overview
from kd_analysis.data.loaders import ColumnMapping
from kd_analysis.models.builtins import BUILTINS
from kd_analysis.models.specs import TASKS, ModelSpec

sel = state.selection()
st.title("Models & data")

tab_pair, tab_models, tab_data = st.tabs(["Teacher & student", "Load a model", "Data"])


@st.cache_data(show_spinner=False, max_entries=64)
def _estimate(spec_key: str) -> dict:
    import json

    from kd_analysis.models.loading import estimate_memory

    return estimate_memory(ModelSpec.from_dict(json.loads(spec_key))).to_dict()


with tab_models:
    st.markdown("Load a **built-in** (real weights shipped as Python packages, offline), a **local folder** "
                "saved with `save_pretrained`, or a **hub id** (needs internet).")
    kind = st.radio("Source", ["Built-in", "Local folder", "Hub id"], horizontal=True)
    if kind == "Built-in":
        source = st.selectbox("Built-in model", list(BUILTINS), format_func=lambda b: BUILTINS[b].title)
        st.caption(BUILTINS[source].description)
    elif kind == "Local folder":
        source = st.text_input("Folder path", placeholder="/path/to/checkpoint (holds config.json)")
    else:
        source = st.text_input("Hub id", placeholder="org/model-name")
    c1, c2 = st.columns(2)
    task = c1.selectbox("Task", ["auto", *TASKS], help="auto: the checkpoint's own head, or the built-in's default")
    role = c2.radio("Use as", ["Teacher", "Student"], horizontal=True)
    trust = st.checkbox("Trust remote code", value=False,
                        help="Runs Python code shipped with the checkpoint. Only tick this for authors you trust.")
    if trust:
        st.warning("Remote code will run with your permissions on this machine.", icon=":material/warning:")
    spec = ModelSpec(source=(source or "").strip(), task=None if task == "auto" else task, trust_remote_code=trust)
    if spec.source:
        try:
            est = _estimate(spec.key())
            st.info(f"**Before loading:** {est['parameters'] / 1e6:,.1f}M parameters · about "
                    f"{est['weights_mb']:,.0f} MB of weights in {est['dtype']} on {est['device']} "
                    f"(~{est['training_mb']:,.0f} MB to train with Adam).", icon=":material/straighten:")
        except Exception as exc:
            show_error(exc)
        if st.button(f"Load as {role.lower()}", type="primary"):
            try:
                loaded = load_teacher(spec)
                state.add_choice("custom_models", spec.source)
                state.put("teacher_task", task)
                state.put("trust_remote_code", trust)
                if role == "Teacher":
                    state.put("teacher_source", spec.source)
                else:
                    state.put("student_kind", "model")
                    state.put("student_source", spec.source)
                st.success(f"Loaded {spec.source} as {role.lower()}: {loaded.info().parameters:,} parameters.")
                st.rerun()
            except Exception as exc:
                show_error(exc)

with tab_pair:
    st.markdown(f"**Selection:** {sel.describe()}")
    if sel.student.kind == "drop_layers":
        st.text_input("Teacher layers to keep (comma-separated; empty = evenly spaced)",
                      key=state.widget_key("student_keep"), on_change=state.save, args=("student_keep",),
                      placeholder="e.g. 0,3,5")
        try:
            state.parse_keep(state.get("student_keep"))
        except ValueError as exc:
            st.error(str(exc))
    if sel.student.kind == "model" and not sel.student.model.source:
        st.info("Name the student model in the sidebar, or load one as student in the first tab.")
    else:
        try:
            teacher, student, report = load_pair(sel.teacher, sel.student)
            pair_overview(teacher, student, report)
            st.subheader("Pair check: which losses apply")
            st.dataframe(loss_table(report), width="stretch", hide_index=True)
        except Exception as exc:
            show_error(exc)

with tab_data:
    st.markdown("Recognised without mapping: **GSM8K** (`question`, `answer` with `#### N`), **CommonsenseQA** "
                "(`question`, `choices`, `answerKey`), **SST-2** (`sentence`, `label`). Other files: map columns.")
    how = st.radio("Data file", ["Upload", "Path on this machine"], horizontal=True)
    path = None
    if how == "Upload":
        up = st.file_uploader("JSONL, CSV or TSV", type=["jsonl", "json", "csv", "tsv", "txt"])
        if up is not None:
            path = str(save_upload(up.name, up.getvalue()))
    else:
        path = st.text_input("File path", placeholder="/path/to/data.jsonl").strip() or None
    if path:
        from kd_analysis.data.inspect import preview_data
        from kd_analysis.data.loaders import read_rows

        mapping = None
        try:
            _, columns, _ = read_rows(path, limit=5)
            with st.expander("Column mapping (for files in no known format)"):
                opts = ["(guess)", *columns]
                m = {f: st.selectbox(f"{f} column", opts, key=f"map_{f}") for f in ("text", "label", "choices", "answer")}
                chosen = {k: v for k, v in m.items() if v != "(guess)"}
                mapping = ColumnMapping(**chosen) if chosen else None
            report = preview_data(path, mapping=mapping)
            c1, c2, c3, c4 = st.columns(4)
            c1.metric("Format", report.format)
            c2.metric("Rows", f"{report.rows:,}")
            c3.metric("Fields", len(report.fields))
            c4.metric("Problems", report.skipped)
            for p in report.problems[:5]:
                st.warning(p)
            if report.partial:
                st.caption(f"Preview of the first {len(report.preview)} rows of {report.rows:,}.")
            st.dataframe(pd.DataFrame(report.preview), width="stretch", hide_index=True)
            if st.button("Use this data set", type="primary"):
                state.add_choice("custom_data", path)
                state.put("data_source", path)
                st.rerun()
        except Exception as exc:
            show_error(exc)
    st.subheader(f"Current data set: {sel.data_source}")
    try:
        from app_ui.resources import dataset

        ds = dataset(sel.data_source)
        st.caption(f"{len(ds.examples):,} examples · format {ds.format} · fields {', '.join(ds.fields)}")
        table = pd.DataFrame([{k: v for k, v in e.to_dict().items() if k != "meta"} for e in ds.examples[:50]])
        st.dataframe(table.dropna(axis="columns", how="all"), width="stretch", hide_index=True)
    except Exception as exc:
        show_error(exc)
