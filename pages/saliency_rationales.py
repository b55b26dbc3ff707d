"""Saliency rationales (Ballout et al. 2024): which input words drive the teacher's answer, and do they overlap
the gold answer?"""

import copy
import json
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from app_ui import state
from app_ui.background import TASKS, Task, task_panel
from app_ui.navigation import run_under_app
from app_ui.resources import dataset, load_pair, show_error
from app_ui.safe_text import code, md
from app_ui.shared_results import RATIONALES
from app_ui.sidebar import write_url_selection
from app_ui.views import headline_metric
from kd_analysis.attribution import DEFINITIONS, METHODS, PAPER_OVERLAP
from kd_analysis.attribution.agreement import agreement_summary
from kd_analysis.attribution.job import (
    agreement_table,
    load_rationale_run,
    newest_rationale_job,
    rationale_config,
    same_model_source,
)
from kd_analysis.attribution.report import (
    analyse_rationales,
    data_kind,
    filtered_exports,
    headline,
    mean_interval,
    paper_reference,
    proportion_interval,
    with_intervals,
)
from kd_analysis.csv_export import csv_text
from kd_analysis.data.refs import data_ref, describe_data
from kd_analysis.data.uploads import is_upload
from kd_analysis.error_analysis.explain import TARGETS
from kd_analysis.plots.attribution import overlap_vs_k, token_heatmap_html
from kd_analysis.runs import RunStore, reconcile, start_run
from kd_analysis.runs.kinds import RATIONALES as RATIONALE_JOBS
from kd_analysis.training.progress import run_progress

run_under_app()  # before anything draws: a page file run by itself hands over to app.py


# the live view's settings live in the URL too (?method=&explain=&k=&examples=): a copied link sets them again
LIVE_SETTINGS = {
    "method": ("rationale_method", lambda v: v in METHODS, str),
    "explain": ("rationale_target", lambda v: v in TARGETS, str),
    "k": ("rationale_k", lambda v: 1 <= int(v) <= 15, int),
    "examples": ("rationale_n", lambda v: 2 <= int(v) <= 200, int),
}


@dataclass(frozen=True)
class Settings:
    """The live view's settings: the method, k, overlap definition, what is explained, how many examples."""

    method: str
    k: int
    definition: str
    target: str
    n: int
    with_student: bool
    cap: int  # the most tokens of one input


@dataclass(frozen=True)
class Shown:
    """The report on the page: a saved job's or the live examples', with the method and target it used."""

    report: Any
    method: str
    target: str
    opened: str | None
    examples: list
    ds: Any


def _job_data(store: RunStore, job_id: str) -> str | None:
    try:
        return store.get(job_id).config().get("data")
    except Exception:
        return None


def follow_links(store: RunStore, sel: state.Selection) -> str | None:
    """Apply a copied link (an opened job, an example, the live settings); returns the job opened, if any."""
    # the opened job and the inspected example live in the URL (?job=, ?example=): a copied link reopens them
    linked = state.url_state("job", "_rationale_open", valid=lambda j: _job_data(store, j) is not None)
    state.url_state("example", "rationale_example")
    if linked and _job_data(store, st.session_state["_rationale_open"]) != sel.data_source:
        # a link to a saved job opens it on its own data set: the run store's record names that data set (never
        # the link), so it joins this session's data sets, as one the user added, and the sidebar follows it
        job_data = str(_job_data(store, st.session_state["_rationale_open"]))
        state.add_choice("custom_data", job_data)
        state.put("data_source", job_data)
        st.rerun()  # the sidebar, drawn before this page, shows the job's data set too
    # a saved job of another data set is closed when the sidebar's data set changes (it would describe other examples)
    opened = st.session_state.get("_rationale_open")
    if opened and _job_data(store, opened) != sel.data_source:
        st.session_state.pop("_rationale_open")
        st.info(
            f"Closed the saved job {md(opened)}: it attributed {md(_job_data(store, opened) or 'another data set')}, and "
            f"the sidebar's data set is now {md(describe_data(sel.data_source))}.",
            icon=":material/info:",
        )
        opened = None
    for param, (key, ok, kind) in LIVE_SETTINGS.items():
        if state.url_state(param, key, valid=ok):
            st.session_state[key] = kind(st.session_state[key])

    if opened and st.session_state.get("_rationale_synced") != opened:
        # an opened job (a link, the Open button) sets the boxes to its own method and target
        job_cfg = store.get(opened).config()
        if job_cfg.get("method") in METHODS:
            st.session_state["rationale_method"] = job_cfg["method"]
        st.session_state["rationale_target"] = job_cfg.get("target") if job_cfg.get("target") in TARGETS else "gold"
    st.session_state["_rationale_synced"] = opened
    return opened


def _close_job() -> None:
    """Method and Explain describe what the page shows: changing either leaves the saved job for live examples."""
    st.session_state.pop("_rationale_open", None)


def settings_row() -> Settings:
    c1, c2, c3, c4, c5 = st.columns(5)
    method = c1.selectbox(
        "Method", list(METHODS), format_func=lambda m: METHODS[m].title, key="rationale_method", on_change=_close_job
    )
    k = c2.slider("k (rationale words)", 1, 15, 5, key="rationale_k")
    definition = c3.selectbox(
        "Overlap definition",
        DEFINITIONS,
        help="any: a rationale word is in the answer · fraction: share of rationale words in the "
        "answer · f1 / iou: against the answer's words",
    )
    target = c4.selectbox(
        "Explain",
        list(TARGETS),  # its own answer first: our reading of what the paper attributed, so its 68% compares here
        format_func=TARGETS.get,
        key="rationale_target",
        on_change=_close_job,
        help="its own answer (what Ballout et al. attribute: the teacher's answer, compared with the ground truth), "
        "or the gold answer (its tokens are then in the ground truth by construction, so overlap runs high)",
    )
    n = c5.number_input("examples", 2, 200, 20, key="rationale_n")
    w1, w2 = st.columns([4, 1])
    with_student = w1.checkbox("Also attribute the student (side by side, with agreement)", value=True)
    cap = int(
        w2.number_input(
            "max tokens (cap)",
            16,
            32768,
            512,
            step=64,
            help="the most tokens of one input; the model's own maximum applies when smaller (512 "
            "for MiniLM, 8,192 for SmolLM2). A longer input loses the start of its question, "
            "never its choices or answer cue, and says so. Larger is slower.",
        )
    )
    return Settings(method, int(k), definition, target, int(n), bool(with_student), cap)


def background_jobs(store: RunStore, sel: state.Selection, s: Settings, opened: str | None) -> str | None:
    """Attribute the whole data set as a job; the saved jobs, and agreement across them. Returns the job still
    opened (Back to the live examples closes it)."""
    method, k, target, with_student, cap = s.method, s.k, s.target, s.with_student, s.cap
    with st.expander("Whole data set in the background", expanded=bool(opened)):
        st.caption(
            "Runs as a job that keeps going if you close the browser; results are saved in the run store and "
            "reopen instantly."
        )
        if st.button(f"Attribute every example of {md(describe_data(sel.data_source))} with {METHODS[method].title}"):
            job = start_run(
                rationale_config(
                    sel.teacher,
                    sel.student if with_student else None,
                    sel.data_source,
                    method=method,
                    target=target,
                    k=k,
                    max_tokens=cap,
                ),
                store,
                kind=RATIONALE_JOBS,
            )
            st.session_state["_rationale_open"] = job.run_id
            st.rerun()
        active = any(j.state in ("queued", "running") for j in store.list(kind=RATIONALE_JOBS)[:6])

        @st.fragment(run_every=2 if active else None)
        def job_list() -> None:
            """The saved jobs, refreshed every 2 s while one of them is queued or running."""
            jobs = store.list(kind=RATIONALE_JOBS)
            for summary in jobs[:6]:
                p = run_progress(store.get(summary.run_id))
                c1, c2 = st.columns([5, 1])
                data = _job_data(store, p.run_id)
                c1.progress(
                    p.fraction,
                    text=f"{md(p.name)} · {code(p.run_id)} · {p.state}"
                    + (f" · step {p.step}/{p.total}" if p.total and p.state in ("queued", "running") else "")
                    + (f" · {md(p.reason)}" if p.reason else ""),
                )
                other = data != sel.data_source
                if c2.button(
                    "Open",
                    key=f"open_{p.run_id}",
                    disabled=p.step == 0 or other,
                    help=f"on {data}: switch the sidebar's data set to open it" if other else None,
                ):
                    st.session_state["_rationale_open"] = p.run_id
                    st.rerun()
            still = any(j.state in ("queued", "running") for j in jobs[:6])
            if still != active:
                st.rerun()  # a job started or ended: redraw the page so polling starts or stops

        job_list()
        agree_rows = agreement_table(store)
        if agree_rows:
            st.markdown("**Teacher–student agreement across saved jobs** (before / after distillation)")
            st.dataframe(
                pd.DataFrame(agree_rows).drop(columns=["teacher"]),
                hide_index=True,
                width="stretch",
                column_config={
                    c: st.column_config.NumberColumn(format="%.3f")
                    for c in (
                        "mean spearman",
                        "top-k overlap",
                        "student overlap (any)",
                        "teacher overlap (any)",
                        "student accuracy",
                    )
                },
            )
        if opened and st.button("Back to the live examples"):
            st.session_state.pop("_rationale_open")
            opened = None
    return opened


def write_url(sel: state.Selection, s: Settings) -> None:
    state.write_url_state("job", st.session_state.get("_rationale_open"))
    for param, value in (("method", s.method), ("explain", s.target), ("k", s.k), ("examples", s.n)):
        state.write_url_state(param, value)
    if not st.session_state.get("_rationale_open") and not is_upload(data_ref(sel.data_source).source):
        write_url_selection()  # live examples are of the sidebar's pair and data: the link carries them


def live_examples(store: RunStore, sel: state.Selection, s: Settings, key: str, examples: list) -> str | None:
    """The first n examples attributed on a button, with progress and Cancel; meanwhile the newest saved job on
    the same data set, if there is one (returned, to be shown)."""
    method, k, target, with_student, cap = s.method, s.k, s.target, s.with_student, s.cap
    teacher, student, _ = load_pair(sel.teacher, sel.student)
    total = len(examples) * (2 if with_student else 1)

    def work(task: Task):
        done = {"teacher": 0, "student": 0}

        def tick(role, i, count):
            done[role] = i
            total_done = done["teacher"] + done["student"]
            task.progress(total_done, total, f"{role}: example {i}/{count} · {total_done}/{total}")

        task.progress(0, total, f"attributing {len(examples)} examples")
        return analyse_rationales(
            teacher,
            examples,
            student=student if with_student else None,
            method=method,
            k=k,
            target=target,
            max_tokens=cap,
            progress=tick,
        )

    fallback = newest_rationale_job(store, sel.data_source, sel.teacher.source)
    st.markdown(
        f"**Live examples:** the first {len(examples)} examples of {md(describe_data(sel.data_source))} with "
        f"{METHODS[method].title} ({'teacher and student' if with_student else 'teacher'})."
        + (
            " A link cannot bring an uploaded file into another browser: to share these, attribute the data "
            "set in the background (above) and send the job's link."
            if is_upload(data_ref(sel.data_source).source)
            else ""
        )
    )
    task_panel(
        st,
        TASKS["rationales"],
        key,
        work,
        f"Attribute {len(examples)} examples ({total} attribution{'s' * (total != 1)})",
        "rationale",
    )
    if fallback is None:
        return None
    job_teacher = (store.get(fallback).config().get("teacher") or {}).get("source")
    same = same_model_source(job_teacher, sel.teacher.source)
    st.caption(
        f"Until then: the saved job {md(fallback)} on the same data set is shown below"
        + (", with the same teacher." if same else f", made with another teacher ({md(job_teacher)}).")
    )
    return fallback


def truncation_warnings(report) -> None:
    """Inputs cut to the token limit, per model, with the first one's note."""
    for role, cut in report.truncated().items():
        if cut["cut"]:
            first_id, first_note = next(iter(cut["notes"].items()))
            st.warning(
                f"{role.capitalize()}: {cut['cut']} of {cut['examples']} inputs were longer than the token "
                f"limit and were cut from the left of the question (their choices and answer cue kept). "
                f"Example {md(first_id)}: {md(first_note)}. Raise *max tokens (cap)* to keep more.",
                icon=":material/content_cut:",
            )


def load_report(store: RunStore, sel: state.Selection, s: Settings, opened: str | None) -> Shown | None:
    """The opened job's report, or the live examples' (computed on a button, with progress); None until there is
    one to show."""
    method, k, target, n, with_student, cap = s.method, s.k, s.target, s.n, s.with_student, s.cap
    ds = dataset(sel.data_source)
    examples = ds.examples[: int(n)]
    key = json.dumps([sel.teacher.key(), sel.student.key(), sel.data_source, method, target, int(n), with_student, cap])
    cache = st.session_state.setdefault("_rationale_cache", {})
    if not opened and not RATIONALES.has(key):
        opened = live_examples(store, sel, s, key, examples)
        if opened is None:
            return None
    if opened:
        key = f"run:{opened}:{len(store.get(opened).metrics())}"
        if key not in cache:
            cache.clear()
            # shared by every session of the server: ten tabs opening the same saved job read it once
            cache[key] = RATIONALES.get(f"{store.root}:{key}", lambda: load_rationale_run(store.get(opened)))
        shown = len(cache[key].teacher)
        if shown == 0:
            st.info(
                f"The job {md(opened)} is running: no example attributed yet. The list above refreshes by itself.",
                icon=":material/hourglass_top:",
            )
            return None
        job_cfg = store.get(opened).config()
        method = job_cfg.get("method") if job_cfg.get("method") in METHODS else method
        target = job_cfg.get("target") if job_cfg.get("target") in TARGETS else "gold"
        st.info(
            f"Showing the saved job {md(opened)} ({shown} examples): {md(METHODS[method].title)}, explaining "
            f"{TARGETS[target]}. Changing Method or Explain above goes back to live examples with those settings.",
            icon=":material/folder_open:",
        )
    else:
        cache.clear()
        cache[key] = RATIONALES.peek(key)
    report = copy.copy(cache[key])  # the shared report stays as computed; this page's k is set on a copy
    if report.k != k:
        report.k = k
        if report.student:
            report.agreement = agreement_summary(report.teacher, report.student, k)
    truncation_warnings(report)
    return Shown(report, method, target, opened, examples, ds)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0%}"


def headline_metrics(shown: Shown, s: Settings) -> None:
    """The teacher's overlap with its interval, chance, the paper's figure where it compares, accuracy and
    teacher–student agreement; then overlap against k."""
    report = shown.report
    kind = data_kind(report.teacher if shown.opened else shown.examples)
    ref = paper_reference(s.definition, kind, target=shown.target)
    head = headline(report.teacher, s.k, s.definition)
    top, bottom = st.columns(3), st.columns(3)
    overlap_metrics(top, bottom[0], head, ref, s)
    accuracy_and_agreement(bottom[1], bottom[2], report)
    st.caption(ref.caption)
    overlap_plots(shown, s, kind, ref)


def overlap_metrics(top: list, undefined_col: Any, head: dict, ref: Any, s: Settings) -> None:
    """The teacher's overlap against chance and the paper, and how many examples it is defined on."""
    k, definition, pct = s.k, s.definition, _pct
    if head["low"] is None:
        ci = ""
    elif head["interval"] == "t" and head["all equal"]:
        ci = " · every example equal"  # a t-interval of zero width says nothing
    else:
        ci = f" · 95% {head['low']:.0%}–{head['high']:.0%}"
    headline_metric(
        top[0],
        f"Teacher overlap ({definition}) at k={k}",
        pct(head["value"]),
        head["n"],
        ci.removeprefix(" · "),
        help=f"mean over the n examples whose answer text is in the input; 95% interval: "
        f"{'Wilson (each example is 0 or 1)' if definition == 'any' else 'Student t over examples'}",
    )
    if head["chance"] is None or head["distinguishable"] is None:
        vs_chance, arrow = None, "off"
    elif head["distinguishable"]:
        vs_chance, arrow = f"{head['vs chance'] * 100:+.0f} points vs chance", "auto"
    else:
        vs_chance, arrow = f"not distinguishable at n = {head['n']}", "off"
    top[1].metric(
        "Random words (chance)",
        pct(head["chance"]),
        vs_chance,
        delta_color="off",
        delta_arrow=arrow,
        help=f"expected overlap of k words drawn at random from the same candidate words, on the same n = "
        f"{head['n']} examples: an exact expectation, so it has no interval of its own; with few candidates (a "
        "question and one-word choices) it is high. A difference is given only when the chance level lies "
        "outside our 95% interval.",
    )
    if ref.comparable:
        top[2].metric(
            "Ballout et al. 2024 (reference)",
            pct(ref.value),
            "multiple choice, their ~3B teacher",
            delta_color="off",
            delta_arrow="off",
            help=ref.caption,
        )
    undefined_col.metric(
        "Defined / undefined",
        f"{head['n']} / {head['undefined']}",
        help="undefined: the answer text is not in the input; excluded, never counted as 0",
    )


def accuracy_and_agreement(acc_col: Any, agree_col: Any, report: Any) -> None:
    right = [a.correct for a in report.teacher if a.correct is not None]
    low, high = proportion_interval(sum(right), len(right))
    if right:
        headline_metric(
            acc_col,
            "Teacher accuracy",
            f"{sum(right) / len(right):.0%}",
            len(right),
            f"95% {low:.0%}–{high:.0%}",
            help="95% Wilson interval",
        )
    else:
        acc_col.metric(
            "Teacher accuracy",
            "not computed",
            help="generation under 'gold': the teacher's own answer was not computed (it scores the gold answer only)",
        )
    if report.agreement and report.agreement["mean_topk_overlap"] is not None:
        spearman = report.agreement["mean_spearman"]
        a_low, a_high = mean_interval([r["topk_overlap"] for r in report.agreement["rows"]])
        headline_metric(
            agree_col,
            "Teacher–student top-k agreement",
            f"{report.agreement['mean_topk_overlap']:.0%}",
            int(report.agreement["examples"]),
            " · ".join(
                ([f"95% {a_low:.0%}–{a_high:.0%}"] if a_low is not None and a_high is not None else [])
                + ([f"Spearman {spearman:.2f}"] if spearman is not None else [])
            ),
            help="mean share of the teacher's top-k words among the student's, over the examples both attributed; "
            "95% Student t interval over examples",
        )


def overlap_plots(shown: Shown, s: Settings, kind: str, ref: Any) -> None:
    """Overlap against k for the teacher (with the paper's point where it compares) and the student."""
    report, method, target, definition = shown.report, shown.method, shown.target, s.definition
    from kd_analysis.attribution.rationales import aggregate

    ks = list(range(1, 16))
    agg = [
        dict(r, method=method, model="teacher")
        for r in with_intervals(aggregate(report.teacher, ks=ks), report.teacher)
    ]
    if report.student:
        agg += [
            dict(r, method=method, model="student")
            for r in with_intervals(aggregate(report.student, ks=ks), report.student)
        ]
    for model in ["teacher"] + (["student"] if report.student else []):
        rows = [dict(r, method=f"{model}:") for r in agg if r["model"] == model]
        model_ref = paper_reference(definition, kind, role=model, target=target)
        st.plotly_chart(
            overlap_vs_k(
                rows, definition, f"{model.capitalize()}: overlap ({definition}) vs k", show_paper=model_ref.comparable
            ),
            width="stretch",
            config={"toImageButtonOptions": {"format": "png"}},
        )
        if model != "teacher" and ref.comparable:
            st.caption(model_ref.caption)  # why the teacher's plot has the paper's line and this one has not


def examples_section(shown: Shown) -> pd.DataFrame:
    """The examples through the filters, and one of them as a heat map per model; returns the filtered table."""
    report, ds = shown.report, shown.ds
    st.subheader("Examples")
    table = pd.DataFrame(report.rows())
    f1, f2, f3 = st.columns(3)
    t_filter = f1.selectbox("Teacher", ["all", "right", "wrong"])
    s_filter = f2.selectbox("Student", ["all", "right", "wrong"], disabled=not report.student)
    o_filter = f3.selectbox("Overlap", ["all", "yes", "no", "undefined"])
    view = table
    if t_filter != "all":
        view = view[view["teacher right"] == (t_filter == "right")]
    if report.student and s_filter != "all":
        view = view[view["student right"] == (s_filter == "right")]
    if o_filter == "undefined":
        view = view[~view["overlap defined"]]
    elif o_filter != "all":
        view = view[view["overlap defined"] & ((view["overlap any"] > 0) == (o_filter == "yes"))]
    st.dataframe(view, hide_index=True, width="stretch")
    if not view.empty:
        texts = {e.id: e.text for e in ds.examples}
        choices = list(view["example"])
        if st.session_state.get("rationale_example") not in choices:
            st.session_state["rationale_example"] = choices[0]
        pick = st.selectbox(
            "Example to inspect",
            choices,
            key="rationale_example",
            format_func=lambda i: f"{i}: {texts.get(i, '')[:90]}",
        )
        state.write_url_state("example", pick)
        for role in ["teacher"] + (["student"] if report.student else []):
            heat = report.heat(pick, role)
            a = heat["attribution"]
            verdict = "" if a.correct is None else (" ✓" if a.correct else " ✗")
            explains = ("its own answer" if a.target == "predicted" else "the gold answer") + f" *{md(a.target_label)}*"
            if a.prediction_computed:
                said = f"answered *{md(a.predicted_label)}*{verdict} · gold *{md(a.gold_label)}* · explains {explains}"
            else:  # a free-text gold answer was scored: the model chose nothing here
                said = (
                    f"explains log p(gold answer *{md(a.gold_label)}*) · its own answer was not computed "
                    "(generate it on the Priming page)"
                )
            st.markdown(
                f"**{role.capitalize()}** {said}" + (f" · IG delta {a.delta:.3g}" if a.delta is not None else "")
            )
            st.html(token_heatmap_html(heat["words"], heat["rationale"], heat["answer"]))
            for note in a.notes:
                st.caption(md(note))
        st.caption(
            "Orange supports the explained answer, blue works against it; boxed words are the rationale, "
            "underlined words are the gold answer."
        )
    return view


def exports(shown: Shown, view: pd.DataFrame) -> None:
    report, ds = shown.report, shown.ds
    # exports follow the filters on screen and carry the example text, not only ids
    rows, lines = filtered_exports(view.to_dict("records"), report, {e.id: e.text for e in ds.examples})
    d1, d2 = st.columns(2)
    d1.download_button(
        f"These {len(rows)} examples (CSV)",
        csv_text(pd.DataFrame(rows)),
        "rationales.csv",
        "text/csv",
        on_click="ignore",
    )
    d2.download_button(
        f"Their attributions (JSONL, {len(lines)} lines)",
        "\n".join(json.dumps(line) for line in lines) + "\n",
        "attributions.jsonl",
        "application/json",
        on_click="ignore",
    )


def render() -> None:
    sel = state.selection()
    st.title("Saliency rationales")
    st.caption(
        "Ballout et al. (2024) rank input tokens by the teacher's attributions and give the top ones to the "
        "student as rationales; on multiple-choice data the extracted tokens were part of the ground truth in "
        f"{PAPER_OVERLAP:.0%} of cases. Here: your teacher, your data, every definition of overlap; the paper's "
        "figure is shown only where it measures the same thing (the 'any' definition on multiple-choice data)."
    )
    store = RunStore()
    reconcile(store)
    opened = follow_links(store, sel)
    s = settings_row()
    opened = background_jobs(store, sel, s, opened)
    write_url(sel, s)
    try:
        shown = load_report(store, sel, s, opened)
        if shown is None:
            return
        headline_metrics(shown, s)
        view = examples_section(shown)
        exports(shown, view)
    except Exception as exc:
        show_error(exc)


render()
