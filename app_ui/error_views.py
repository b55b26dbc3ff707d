"""Pieces of the Error analysis page that hold state: one example's explanation (a background job with progress
and Cancel), its notes and tags (edit, delete), and the report builder. The page only arranges them."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import streamlit as st

from app_ui.resources import show_error
from app_ui.safe_text import md
from kd_analysis.attribution.methods import METHODS
from kd_analysis.csv_export import csv_text
from kd_analysis.error_analysis.explain import DEFAULT_METHOD, TARGETS, cached, explain_config
from kd_analysis.exceptions import KDLensError
from kd_analysis.plots.attribution import token_heatmap_html
from kd_analysis.plots.errors import token_gaps_figure
from kd_analysis.runs import RunStore, cancel_run, layout, start_run
from kd_analysis.runs.kinds import EXPLANATIONS
from kd_analysis.runs.origin import missing_words, origin_kind, outside_student
from kd_analysis.training.progress import run_progress

JOB_KEY = "ea_explain_job"


def _train_seconds(store: RunStore, run_id: str) -> float | None:
    """How long the run took to train, from its own metrics: the honest estimate of a rebuild."""
    times = [m.get("elapsed_s") for m in store.get(run_id).metrics() if isinstance(m.get("elapsed_s"), (int, float))]
    return float(times[-1]) if times else None


def _job_box(store: RunStore, run_id: str) -> bool:
    """Progress and Cancel of this session's explanation job; True while it is still working."""
    job = st.session_state.get(JOB_KEY)
    if not job or job.get("run") != run_id:
        return False
    try:
        p = run_progress(store.get(job["id"]))
    except Exception:
        st.session_state.pop(JOB_KEY, None)
        return False
    phase = p.last.get("phase", "starting")
    if p.state in ("queued", "running"):
        what = {
            "retraining": "retraining the run to rebuild its weights",
            "explaining": "computing attributions",
            "starting": "loading the models",
        }.get(phase, phase)
        counted = f" · {p.step}/{p.total}" if p.total else ""
        started = job.get("started", time.time())
        st.progress(p.fraction, text=f"{md(what)}{counted} · {time.time() - started:.0f} s so far")
        if st.button("Cancel", key="ea_explain_cancel"):
            cancel_run(store, job["id"], wait_s=5)
            st.rerun()
        return True
    if p.state == "finished":
        st.caption(f"Computed in {time.time() - job.get('started', time.time()):.0f} s (job {md(job['id'])}).")
    elif p.state == "cancelled":
        st.info(f"Cancelled: {md(p.reason or '')}", icon=":material/cancel:")
    else:
        st.error(
            f"The explanation job {md(p.state)}: {md(p.reason or 'see its log on the Distillation runs page')}",
            icon=":material/error:",
        )
    return False


def explanation_panel(
    store: RunStore, run_id: str, example_id: str, slice_ids: list[str], names: dict[str, str]
) -> None:
    """Both models' attributions over the example (and the gold answer's token log-probabilities for
    generation), from the run's cache; computing them is a background job started by a button."""
    c1, c2 = st.columns(2)
    methods = list(METHODS)
    method = c1.selectbox(
        "Attribution method",
        methods,
        index=methods.index(DEFAULT_METHOD),
        key="ea_method",
        format_func=lambda m: METHODS[m].title,
    )
    target = c2.selectbox("Explain", list(TARGETS), key="ea_target", format_func=lambda t: TARGETS[t])
    found = cached(store, run_id, method=method, target=target)
    have = found.get((example_id, method, target))

    job = st.session_state.get(JOB_KEY) or {}

    @st.fragment(run_every=2 if job.get("run") == run_id and not job.get("shown") else None)
    def live() -> None:
        working = _job_box(store, run_id)
        job = st.session_state.get(JOB_KEY) or {}
        if not working and job.get("run") == run_id and not job.get("shown"):
            job["shown"] = True  # the job just ended: redraw the page once so its results appear
            st.rerun()
        if working or have is not None:
            return
        missing = [e for e in slice_ids if (e, method, target) not in found]
        run = store.get(run_id)
        if origin_kind(run.config()) is not None and outside_student(run) is None:
            # trained elsewhere without a saved student: nothing to explain from, nothing kd-lens could retrain
            st.caption(md("This run " + "; ".join(w for w in missing_words(run) if "saved student" in w) + "."))
            return
        weights = (store.folder(run_id) / layout.CHECKPOINT).is_dir() or outside_student(run) is not None
        took = _train_seconds(store, run_id)
        if not weights:
            st.caption(
                "This run kept no weights. Explaining it first retrains it from its config"
                + (f" (it trained in {took:.0f} s)" if took else "")
                + " and keeps the weights only if every evaluation and loss it logged is reproduced."
            )
        b1, b2 = st.columns(2)
        one = b1.button(
            "Explain this example" if weights else "Rebuild weights and explain this example",
            key="ea_explain_one",
            type="primary",
        )
        many = b2.button(
            f"Explain the {len(missing)} examples of this slice not yet explained",
            key="ea_explain_slice",
            disabled=len(missing) < 2,
        )
        if one or many:
            ids = [example_id] if one else missing
            try:
                job = start_run(
                    explain_config(run_id, ids, method=method, target=target, rebuild=not weights),
                    store,
                    kind=EXPLANATIONS,
                )
                st.session_state[JOB_KEY] = {"id": job.run_id, "run": run_id, "started": time.time()}
                # the whole page: this fragment was declared without polling (no job yet); a fragment rerun
                # keeps that, so the box would sit at "0 s so far" until some unrelated click
                st.rerun()
            except Exception as exc:
                show_error(exc)

    live()
    if have is None:
        st.caption(
            f"Not computed yet for {METHODS[method].title} / {TARGETS[target]}"
            + (f" ({len(found)} other examples of this run are)" if found else "")
            + "."
        )
        return
    show_explanation(have, names)


def show_explanation(have: Any, names: dict[str, str]) -> None:
    """One example's attributions per model as heat maps, and for generation the gold answer's token gaps."""
    for role, attr in have.attributions.items():
        words = [(w["text"], float(w["score"])) for w in attr.get("words", [])]
        reads = have.reads.get(role)
        answer = attr.get("target_label")
        peak = max((abs(s) for _, s in words), default=0.0)
        st.markdown(
            f"**{md(names.get(role, role))}** explains {md(repr(answer))}"
            + (f" · read {md(reads)}" if reads else "")
            + f" · strongest |score| {peak:.2g}",
            help="each row is scaled to its own strongest word; compare the strongest scores to compare "
            "the models (a confident model's log-probability barely moves, so its scores are small)",
        )
        st.html(token_heatmap_html(words))
    gaps = have.token_gaps()
    if gaps:
        st.plotly_chart(token_gaps_figure(gaps), width="stretch", key="ea_token_gaps")
        cut = have.tokens_cut()
        if cut:
            st.caption(
                "Scored answer tokens differ ("
                + ", ".join(f"{md(r)} {k}" for r, k in cut.items())
                + "): a longer prompt left fewer answer tokens under the run's max_length; the chart shows "
                "the tokens both scored."
            )
    elif have.token_logprobs:
        st.caption(
            "The two models scored different token sequences, so their log-probabilities cannot be compared "
            "token by token."
        )
    for note in have.notes:
        st.caption(md(note))
    st.caption(
        f"Orange words support the explained answer, blue words speak against it · computed "
        f"{md(have.created)} in {have.seconds:.1f} s"
    )


def notes_panel(ns: Any, data: str, example_id: str) -> None:
    """Notes (edit, delete) and tags (add, remove) of one example, keyed by the data set."""
    for note in ns.notes(data, example_id):
        editing = st.session_state.get("ea_editing") == note.id
        head = f"**{md(note.author or 'anonymous')}** · {md(note.created)}"
        if note.updated != note.created:
            head += f" · edited {md(note.updated)}"
        if editing:
            with st.form(f"ea_edit_{note.id}"):
                text = st.text_area("Edit the note", note.text, key=f"ea_edit_text_{note.id}")
                s1, s2 = st.columns(2)
                if s1.form_submit_button("Save"):
                    ns.edit_note(note.id, text)
                    st.session_state.pop("ea_editing", None)
                    st.rerun()
                if s2.form_submit_button("Keep as it was"):
                    st.session_state.pop("ea_editing", None)
                    st.rerun()
            continue
        t, e, d = st.columns([8, 1, 1])
        t.markdown(f"{head}  \n{md(note.text)}")
        if e.button("Edit", key=f"ea_edit_btn_{note.id}"):
            st.session_state["ea_editing"] = note.id
            st.rerun()
        if d.button("Delete", key=f"ea_del_btn_{note.id}"):
            ns.delete_note(note.id)
            st.rerun()
    tags = ns.tags(data, example_id).get(example_id, [])
    if tags:
        tag_cols = st.columns(min(len(tags), 6))
        for i, tag in enumerate(tags):
            if tag_cols[i % len(tag_cols)].button(f"✕ {md(tag)}", key=f"ea_untag_{i}_{tag}", help="remove this tag"):
                ns.remove_tag(data, example_id, tag)
                st.rerun()
    with st.form("ea_note_form", clear_on_submit=True):
        note_text = st.text_area("Note", key="ea_note_text")
        n1, n2 = st.columns(2)
        author = n1.text_input("Author", key="ea_note_author")
        new_tags = n2.text_input("Tags to add (comma-separated)", key="ea_note_tags")
        if st.form_submit_button("Save"):
            wanted = [t.strip() for t in new_tags.split(",") if t.strip()]
            if not note_text.strip() and not wanted:
                st.warning("Write a note or a tag first.", icon=":material/info:")
            else:
                if wanted:
                    ns.add_tags(data, example_id, wanted, author=author.strip() or None)
                if note_text.strip():
                    ns.add_note(data, example_id, note_text, author=author.strip() or None)
                st.rerun()


def export_buttons(view: pd.DataFrame, stem: str) -> None:
    """The slice as CSV, JSONL or Parquet; each file is made when its button is clicked."""
    import io

    def parquet() -> bytes:
        buf = io.BytesIO()
        view.to_parquet(buf, index=False)
        return buf.getvalue()

    c1, c2, c3 = st.columns(3)
    c1.download_button(
        "This slice (CSV)",
        lambda: csv_text(view),
        f"{stem}.csv",
        "text/csv",
        key="ea_export",
        on_click="ignore",
    )
    c2.download_button(
        "JSONL",
        lambda: view.to_json(orient="records", lines=True, force_ascii=False),
        f"{stem}.jsonl",
        "application/jsonl",
        key="ea_export_jsonl",
        on_click="ignore",
    )
    c3.download_button(
        "Parquet",
        parquet,
        f"{stem}.parquet",
        "application/vnd.apache.parquet",
        key="ea_export_parquet",
        on_click="ignore",
    )


def report_panel(store: RunStore, run_id: str, against: str | None, pins: list[str], saved: dict[str, str]) -> None:
    """Build the self-contained HTML report on a button, then offer it for download."""
    from kd_analysis.error_analysis.report import write_report
    from kd_analysis.error_analysis.slices import Slice

    st.caption(
        f"One HTML file that opens offline: the matrix, the slice finder, {len(saved)} saved slice"
        f"{'s' * (len(saved) != 1)} and {len(pins)} pinned example{'s' * (len(pins) != 1)} with their notes, "
        "probabilities and attributions (where computed). Pin examples from the example view."
    )
    if st.button("Build the report", key="ea_build_report"):
        import tempfile
        from pathlib import Path

        try:
            with st.spinner("Building the report…"), tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "report.html"
                result = write_report(
                    store, run_id, out, against=against, pins=pins, slices=[Slice(n, e) for n, e in saved.items()]
                )
                st.session_state["ea_report"] = {
                    "key": (run_id, against, tuple(pins)),
                    "html": out.read_bytes(),
                    "result": result.to_dict(),
                }
        except Exception as exc:
            show_error(exc)
    built = st.session_state.get("ea_report")
    if built and built["key"] == (run_id, against, tuple(pins)):
        r = built["result"]
        st.download_button(
            "Download the report (HTML)",
            built["html"],
            f"{run_id}-errors.html",
            "text/html",
            key="ea_report_download",
            on_click="ignore",
            type="primary",
        )
        st.caption(
            f"{r['bytes'] / 1e6:.1f} MB (plotly's JavaScript is inside), built in {r['seconds']:.1f} s: "
            f"{r['findings']} slice-finder rows, {len(r['slices'])} saved slices, {len(r['pinned'])} pinned "
            f"({len(r['explained'])} with attributions)."
        )


def inside_panel(store: RunStore, run_id: str, example_id: str) -> None:
    """One example inside the run's teacher and student: their logit lens by depth, where the student departs
    and falls behind, and its heads least like any teacher head here. Loads both models on a button."""
    import json

    from app_ui.background import TASKS, Task, task_panel
    from app_ui.shared_results import INSIDE
    from kd_analysis.inside.example import save_example_inside, saved_example_inside

    key = json.dumps(["example", str(store.root), run_id, example_id])
    found = INSIDE.peek(key) or saved_example_inside(store, run_id).get(example_id)
    if found is None:

        def work(task: Task):
            from app_ui.resources import run_models_quietly
            from kd_analysis.inside.example import example_inside

            task.progress(0, 2, "loading the run's teacher and student")
            models = run_models_quietly(store, run_id, progress=lambda m: task.progress(0, 2, m))
            if "teacher" not in models.models:
                raise KDLensError(f"run {run_id} has no teacher to look inside beside its student")
            task.progress(1, 2, "reading the example with both models, layer by layer")
            example = models.views["student"][example_id]
            found = example_inside(models.models["teacher"], models.models["student"], example)
            save_example_inside(store, run_id, found)  # reopens at once, and goes into the report when pinned
            return found

        task_panel(st, TASKS["inside"], key, work, "Look inside both models on this example", "ea_inside")
        return
    show_example_inside(found)


def show_example_inside(found: dict) -> None:
    """One example's inside view: in words, the lens by depth, the layers side by side, the heads least alike."""
    from kd_analysis.plots.inside import lens_by_depth

    words = []
    if found["departs_at"] is not None:
        words.append(
            f"The student's reading departs from the teacher's at its layer {found['departs_at']} "
            f"(more than {found['depart_nats']:g} nats from the teacher's at the same depth)"
        )
    else:
        words.append("The student's reading stays within a hair of the teacher's at every depth")
    if found["falls_behind_at"] is not None:
        words.append(f"the gold answer falls behind the teacher's rank at its layer {found['falls_behind_at']}")
    st.markdown(md("; ".join(words) + "."))
    st.plotly_chart(
        lens_by_depth({"teacher": found["teacher"], "student": found["student"]}), width="stretch", key="ea_inside_lens"
    )
    rows = [
        {
            "student layer": r["layer"],
            "depth": r["depth"],
            "teacher layer": r.get("teacher_layer"),
            "student p(gold)": r["gold_prob"],
            "teacher p(gold)": found["teacher"][r["teacher_layer"]]["gold_prob"] if r.get("teacher_layer") is not None else None,
            "student rank": r["gold_rank"],
            "KL(teacher ‖ student)": r.get("kl_from_teacher"),
            "student's top answers": ", ".join(f"{t} {p:.0%}" for t, p in r["top"][:3]),
        }
        for r in found["student"]
    ]  # fmt: skip
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    if found["heads_note"]:
        st.caption(md(found["heads_note"]))
    elif found["heads_least_alike"]:
        st.markdown("**Student heads least like any teacher head on this example**")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "student head": f"L{h['student'][0]}.H{h['student'][1]}",
                        "closest teacher head": f"L{h['closest_teacher'][0]}.H{h['closest_teacher'][1]}",
                        "similarity": h["similarity"],
                    }
                    for h in found["heads_least_alike"]
                ]
            ),
            hide_index=True,
            width="stretch",
        )
    st.caption(
        "Layers are set side by side by relative depth. The lens reads a layer through the model's own output, "
        "which earlier layers were not trained to feed: compare the two models at one depth, not a layer with "
        "the final answer. Alike is not the same as why."
    )


def inside_slices_panel(store: RunStore, run_id: str, frame: pd.DataFrame, cell_words: dict[str, str]) -> None:
    """Two cells of the matrix compared inside the run's models: the lens by depth per slice, with n and 95%
    intervals, computed on a button (both models load; at most 64 examples a slice)."""
    import json

    from app_ui.background import TASKS, Task, task_panel
    from app_ui.shared_results import INSIDE
    from kd_analysis.inside.slices import MAX_PER_SLICE
    from kd_analysis.plots.inside import slices_lens

    cells = [c for c in cell_words if c != "all" and int((frame["cell"] == c).sum()) >= 2]
    if len(cells) < 2:
        st.caption("Two cells with at least 2 examples each are needed.")
        return
    c1, c2 = st.columns(2)
    first = c1.selectbox("Slice", cells, format_func=cell_words.get, key="ea_inside_a")
    second = c2.selectbox(
        "against", [c for c in cells if c != first], format_func=cell_words.get, key="ea_inside_b"
    )  # fmt: skip
    chosen = {cell_words[c]: frame.loc[frame["cell"] == c, "example_id"].astype(str).tolist() for c in (first, second)}
    key = json.dumps(["slices", str(store.root), run_id, chosen])
    found = INSIDE.peek(key)
    if found is None:

        def work(task: Task):
            from app_ui.resources import run_models_quietly
            from kd_analysis.inside.slices import slice_reports

            task.progress(0, None, "loading the run's teacher and student")
            models = run_models_quietly(store, run_id, progress=lambda m: task.progress(0, None, m))
            if "teacher" not in models.models:
                raise KDLensError(f"run {run_id} has no teacher to look inside beside its student")
            view = models.views["student"]
            slices = {name: [view[i] for i in ids if i in view] for name, ids in chosen.items()}
            return slice_reports(
                models.models["teacher"],
                models.models["student"],
                slices,
                progress=lambda done, total: task.progress(done, total, f"example {done} of {total}"),
            )

        sizes = " and ".join(f"{min(len(ids), MAX_PER_SLICE)}" for ids in chosen.values())
        task_panel(st, TASKS["inside"], key, work, f"Compare the two slices inside ({sizes} examples)", "ea_slices")
        return
    left, right = st.columns(2)
    left.plotly_chart(slices_lens(found, "student"), width="stretch", key="ea_slices_student")
    right.plotly_chart(slices_lens(found, "teacher"), width="stretch", key="ea_slices_teacher")
    st.caption(
        "Each slice's first 64 examples at most. A band is a 95% Student t interval of the mean over that "
        "slice's examples: where two bands part, the slices read differently at that depth."
    )
