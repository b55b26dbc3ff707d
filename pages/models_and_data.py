"""Models & data: load checkpoints from any source, see their architecture and the pair check, validate data."""

import pandas as pd
import streamlit as st

from app_ui import state
from app_ui.navigation import run_under_app
from app_ui.resources import load_pair, load_teacher, show_error
from app_ui.safe_text import md
from app_ui.sidebar import write_url_selection
from app_ui.uploads import forget_uploads, save_upload, session_owner
from app_ui.views import loss_table, pair_overview
from kd_analysis.data.loaders import ColumnMapping
from kd_analysis.data.refs import data_ref, with_columns
from kd_analysis.models.builtins import BUILTINS
from kd_analysis.models.specs import TASKS, ModelSpec
from kd_analysis.runs import RunStore, start_run, uploads_used_by_runs

run_under_app()  # before anything draws: a page file run by itself hands over to app.py


@st.cache_data(show_spinner=False, max_entries=64)
def _estimate(spec_key: str) -> dict:
    import json

    from kd_analysis.models.loading import estimate_memory

    return estimate_memory(ModelSpec.from_dict(json.loads(spec_key))).to_dict()


def load_a_model() -> None:
    """Any checkpoint, as teacher or student, with its memory estimate before anything loads."""
    st.markdown(
        "Load a **built-in** (real weights shipped as Python packages, offline), a **local folder** "
        "saved with `save_pretrained`, or a **hub id** (needs internet)."
    )
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
    trust = st.checkbox(
        "Trust remote code",
        value=False,
        help="Runs Python code shipped with the checkpoint. Only tick this for authors you trust.",
    )
    if trust:
        st.warning("Remote code will run with your permissions on this machine.", icon=":material/warning:")
    spec = ModelSpec(source=(source or "").strip(), task=None if task == "auto" else task, trust_remote_code=trust)
    if spec.source:
        refused = False
        try:
            from kd_analysis.models.memory import check_memory

            est = _estimate(spec.key())
            st.info(
                f"**Before loading:** {est['parameters'] / 1e6:,.1f}M parameters · about "
                f"{est['weights_mb']:,.0f} MB of weights in {est['dtype']} on {est['device']} "
                f"(~{est['training_mb']:,.0f} MB to train with Adam).",
                icon=":material/straighten:",
            )
            verdict = check_memory(est["inference_mb"], est["device"])  # free memory now, never cached
            if verdict.refused:
                st.error(f"**Will not fit:** this model {verdict.message}.", icon=":material/memory:")
                refused = True
            elif verdict.status == "warn":
                st.warning(f"**Tight fit:** this model {verdict.message}.", icon=":material/memory:")
            else:
                st.caption(f"Memory: this model {verdict.message}.")
        except Exception as exc:
            show_error(exc)
        if refused and st.checkbox(
            "Load anyway (I know it may not fit)",
            value=False,
            help="Loading a model larger than the free memory can make this machine swap or kill the app.",
        ):
            from dataclasses import replace

            spec, refused = replace(spec, force_memory=True), False
        if st.button(f"Load as {role.lower()}", type="primary", disabled=refused):
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
                st.success(f"Loaded {md(spec.source)} as {role.lower()}: {loaded.info().parameters:,} parameters.")
                st.rerun()
            except Exception as exc:
                show_error(exc)


def teacher_and_student(sel: state.Selection) -> None:
    """The selected pair: its architectures and which losses apply to it."""
    st.markdown(f"**Selection:** {md(sel.describe())}")
    if sel.student.kind == "drop_layers":
        st.text_input(
            "Teacher layers to keep (comma-separated; empty = evenly spaced)",
            key=state.widget_key("student_keep"),
            on_change=state.save,
            args=("student_keep",),
            placeholder="e.g. 0,3,5",
        )
        try:
            state.parse_keep(state.get("student_keep"))
        except ValueError as exc:
            st.error(md(exc))  # quotes what the user typed
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
            return
        try:
            inside_the_pair(sel, teacher, student)
        except Exception as exc:
            show_error(exc)


def saved_inside(sel: state.Selection) -> None:
    """Saved inside jobs (the shipped reference ones among them): each student beside the same teacher, e.g.
    before and after distillation, opened without computing anything."""
    from app_ui.views import saved_job_picker
    from kd_analysis.inside.job import load_inside_run
    from kd_analysis.plots.inside import cka_heatmap, lens_by_depth
    from kd_analysis.runs.kinds import INSIDE

    store = RunStore()
    jobs = store.list(kind=INSIDE)
    if not jobs:
        return
    job = saved_job_picker("Saved comparisons", store, jobs, "_inside_open")
    found = load_inside_run(job)
    if not found or not found["students"]:
        st.info("No student finished yet in this job.", icon=":material/hourglass_top:")
        return
    students = found["students"]
    st.caption(
        f"Teacher {md(state.model_label(found['teacher']['source']))} on {md(found['data'])}, "
        f"{students[0]['examples']} examples, each student beside it."
    )
    for i, (col, entry) in enumerate(zip(st.columns(len(students)), students)):
        col.markdown(f"**{md(entry['label'])}**")
        col.plotly_chart(
            cka_heatmap(entry["cka"], title="Layer similarity (CKA)"), width="stretch", key=f"inside_cka_{i}"
        )
        col.plotly_chart(lens_by_depth(entry["lens"]), width="stretch", key=f"inside_lens_{i}")
        pairs = entry["heads"]["pairs"]
        if pairs:
            mean = sum(p["similarity"] for p in pairs) / len(pairs)
            col.caption(
                f"Heads: mean similarity {mean:.3f} over {len(pairs)} matched heads; "
                f"{len(entry['heads']['lost'])} teacher heads below {entry['heads']['threshold']:g}."
            )
        elif entry["heads"]["note"]:
            col.caption(md(entry["heads"]["note"]))


def inside_the_pair(sel: state.Selection, teacher, student) -> None:
    """Where inside the student departs from the teacher: layer CKA, the logit lens by depth, heads matched."""
    import json

    from app_ui.background import TASKS, Task, task_panel
    from app_ui.shared_results import INSIDE
    from kd_analysis.inside.report import inside_report
    from kd_analysis.plots.inside import cka_heatmap, lens_by_depth

    st.subheader("Inside the pair")
    st.caption(
        "Each model reads the same examples; at the answer position, every layer is compared: how alike the two "
        "models' layers are (linear CKA, 1: the same up to rotation and scale), what each layer would answer "
        "(the logit lens, through the model's own output), and which teacher head each student head attends "
        "like. CKA measures similarity, not causation: a layer can be alike and still not be why an answer is "
        "right."
    )
    saved_inside(sel)
    st.markdown("**This pair, now**")
    c1, c2 = st.columns(2)
    n = int(c1.number_input("examples", 4, 512, 32, key="inside_n"))
    threshold = float(c2.slider("lost below (head similarity)", 0.0, 1.0, 0.5, 0.05, key="inside_threshold"))
    key = json.dumps([sel.teacher.key(), sel.student.key(), sel.data_source, n, threshold])

    def work(task: Task):
        from app_ui.resources import dataset

        examples = dataset(sel.data_source).examples[:n]
        task.progress(0, len(examples), "reading the examples with both models")
        return inside_report(
            teacher,
            student,
            examples,
            threshold=threshold,
            progress=lambda done, total: task.progress(done, total, f"example {done} of {total}"),
        ).to_dict()

    report = INSIDE.peek(key)
    if report is None:
        task_panel(st, TASKS["inside"], key, work, f"Compare the insides on {n} examples", "inside")
        return
    left, right = st.columns(2)
    left.plotly_chart(cka_heatmap(report["cka"]), width="stretch")
    measure = right.radio(
        "Lens", ["gold_prob", "kl_to_final"], horizontal=True, key="inside_measure",
        format_func={"gold_prob": "p(gold)", "kl_to_final": "KL to the final reading"}.get,
    )  # fmt: skip
    right.plotly_chart(lens_by_depth(report["lens"], measure), width="stretch")
    heads = report["heads"]
    if heads["note"]:
        st.info(f"Heads: {md(heads['note'])}.", icon=":material/info:")
    elif heads["pairs"]:
        st.markdown(
            f"**Heads** · each student head paired one to one with the teacher head it attends most like "
            f"(similarity 1 − JS/ln 2 over {report['examples']} examples); {len(heads['lost'])} teacher heads have "
            f"no student head above {heads['threshold']:g}."
        )
        rows = [
            {"student head": f"L{p['student'][0]}.H{p['student'][1]}", "teacher head": f"L{p['teacher'][0]}.H{p['teacher'][1]}", "similarity": p["similarity"]}
            for p in heads["pairs"]
        ]  # fmt: skip
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
            "similarity": st.column_config.NumberColumn(format="%.3f")})  # fmt: skip
    st.download_button("Inside views (JSON)", json.dumps(report), "inside.json", "application/json", on_click="ignore")
    if st.button("Save it as a job (reopens at once, here and for others)", key="inside_save"):
        from kd_analysis.inside.job import inside_config
        from kd_analysis.runs.kinds import INSIDE

        pair = [(sel.student.describe(), sel.student)]
        cfg = inside_config(sel.teacher, pair, sel.data_source, limit=n, threshold=threshold)
        st.session_state["_inside_open_started"] = start_run(cfg, RunStore(), kind=INSIDE).run_id
        st.rerun()


def check_a_data_file() -> None:
    """Upload or name a file, map its columns, preview it and make it the data set."""
    st.markdown(
        "Recognised without mapping: **GSM8K** (`question`, `answer` with `#### N`), **CommonsenseQA** "
        "(`question`, `choices`, `answerKey`), **SST-2** (`sentence`, `label`). Other files: map columns."
    )
    how = st.radio("Data file", ["Upload", "Path on this machine"], horizontal=True)
    path = None
    if how == "Upload":
        up = st.file_uploader(
            "JSONL, CSV or TSV",
            type=["jsonl", "json", "csv", "tsv", "txt"],
            key=f"data_upload_{st.session_state.get('_kd_upload_generation', 0)}",
        )
        if up is not None:
            try:
                path = str(save_upload(up))  # streamed to disk in chunks; the same content is stored once
            except Exception as exc:
                show_error(exc)
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
                m = {
                    f: st.selectbox(f"{f} column", opts, key=f"map_{f}") for f in ("text", "label", "choices", "answer")
                }
                chosen = {k: v for k, v in m.items() if v != "(guess)"}
                mapping = ColumnMapping(**chosen) if chosen else None
            report = preview_data(path, mapping=mapping)
            c1, c2, c3, c4 = st.columns(4)
            c1.metric("Format", report.format)
            c2.metric("Rows", f"{report.rows:,}")
            c3.metric("Fields", len(report.fields))
            c4.metric("Problems", report.skipped)
            for p in report.problems[:5]:
                st.warning(md(p))  # problems quote rows of the file
            if report.partial:
                st.caption(f"Preview of the first {len(report.preview)} rows of {report.rows:,}.")
            preview = pd.DataFrame(report.preview).dropna(axis="columns", how="all")  # no columns of bare "None"
            st.dataframe(preview, width="stretch", hide_index=True)
            if st.button("Use this data set", type="primary"):
                chosen_key = with_columns(path, mapping)  # the mapping travels with the name: jobs, runs, links
                state.add_choice("custom_data", chosen_key)
                state.put("data_source", chosen_key)
                st.rerun()
        except Exception as exc:
            show_error(exc)


def current_data_set(sel: state.Selection) -> None:
    st.subheader(f"Current data set: {md(data_ref(sel.data_source).describe())}")
    try:
        from app_ui.resources import dataset

        ds = dataset(sel.data_source)
        st.caption(f"{len(ds.examples):,} examples · format {ds.format} · fields {md(', '.join(ds.fields))}")
        table = pd.DataFrame([{k: v for k, v in e.to_dict().items() if k != "meta"} for e in ds.examples[:50]])
        st.dataframe(table.dropna(axis="columns", how="all"), width="stretch", hide_index=True)
    except Exception as exc:
        show_error(exc)


def uploaded_files(sel: state.Selection) -> None:
    """This session's uploads: their size, and removing them without touching what is in use."""
    st.subheader("Uploaded files")
    from pathlib import Path

    from kd_analysis.data.uploads import format_bytes, is_upload, list_uploads, remove_uploads, total_size, uploads_root

    if st.session_state.get("_kd_upload_removed"):
        st.success(st.session_state.pop("_kd_upload_removed"), icon=":material/delete:")
    owner = session_owner()
    stored = list_uploads(owner=owner)
    in_use = sel.data_source if is_upload(sel.data_source) else None
    if not stored:
        st.caption("This session has stored no uploaded files.")
    else:
        st.caption(
            f"{len(stored)} file{'s' if len(stored) != 1 else ''} uploaded in this session, "
            f"{format_bytes(total_size(stored))} in {md(str(uploads_root()))}."
            + (f" The current data set ({md(Path(in_use).name)}) is one of them and will be kept." if in_use else "")
        )
        if st.button(
            "Remove this session's uploaded files",
            help="Deletes the files uploaded in this browser session from this server's disk. Kept: the data set "
            "selected in the sidebar, and any file a run trained on. Other sessions' uploads are never touched.",
        ):
            used_by_runs = uploads_used_by_runs(RunStore())  # reads every run's config: only when asked
            result = remove_uploads(keep=[*([in_use] if in_use else []), *used_by_runs], owner=owner)
            gone = [d for d in state.get("custom_data") if is_upload(d) and not Path(data_ref(d).source).exists()]
            state.put("custom_data", [d for d in state.get("custom_data") if d not in gone])
            forget_uploads()
            st.session_state["_kd_upload_generation"] = st.session_state.get("_kd_upload_generation", 0) + 1
            names = ", ".join(sorted({u.name for u in result.removed}))
            msg = (
                f"Removed {len(result.removed)} uploaded file{'s' if len(result.removed) != 1 else ''} "
                f"({format_bytes(result.freed_bytes)}){': ' + md(names) if names else ''}."
            )
            for u in result.kept:
                run = used_by_runs.get(str(u.path))
                msg += (
                    f" Kept {md(u.name)}: run {md(run)} trained on it."
                    if run
                    else f" Kept {md(u.name)}: it is the current data set; choose another data set in the sidebar "
                    "to remove it too."
                )
            if result.failed:
                msg += f" Could not remove {len(result.failed)}: {md(result.failed[0])}."
            st.session_state["_kd_upload_removed"] = msg
            st.rerun()


def render() -> None:
    sel = state.selection()
    write_url_selection()  # this page's view is the sidebar's selection: a copied link reopens it
    st.title("Models & data")
    tab_pair, tab_models, tab_data = st.tabs(["Teacher & student", "Load a model", "Data"])
    with tab_models:  # first: a model loaded here reruns the page before the pair is drawn
        load_a_model()
    with tab_pair:
        teacher_and_student(sel)
    with tab_data:
        check_a_data_file()
        current_data_set(sel)
        uploaded_files(sel)


render()
