"""Priming & attention (Goyal et al. 2024): the teacher under prompting strategies, one student per strategy,
the accuracy table, and how the students' attention heads differ."""

import json
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from app_ui import state
from app_ui.background import TASKS, Task, task_panel
from app_ui.navigation import run_under_app
from app_ui.resources import dataset, load_run_model, load_teacher, load_teacher_quietly, loaded_teacher, show_error
from app_ui.safe_text import md
from app_ui.shared_results import PRIME_OUTPUTS
from app_ui.views import phase_text, saved_job_picker
from kd_analysis.attention import STATS
from kd_analysis.attention.compare import diff_map, rank_heads
from kd_analysis.attention.job import attention_config, load_attention_run
from kd_analysis.attention.stats import head_matrix
from kd_analysis.attention.views import attention_view, example_attentions
from kd_analysis.csv_export import csv_text
from kd_analysis.data.refs import describe_data
from kd_analysis.exceptions import KDLensError
from kd_analysis.losses import LOSSES
from kd_analysis.models.loading import expected_task
from kd_analysis.models.specs import ModelSpec, StudentSpec
from kd_analysis.plots.attention import diff_heatmap, head_grid, head_matrix_plot, profile_lines
from kd_analysis.plots.priming import accuracy_bars
from kd_analysis.priming import STRATEGIES
from kd_analysis.priming.experiment import (
    PAPER_SETUP,
    accuracy_table,
    paper_reference,
    priming_base_config,
    priming_runs,
    strategy_configs,
)
from kd_analysis.priming.job import KIND as OUTPUTS_KIND
from kd_analysis.priming.job import load_outputs_run, outputs_config
from kd_analysis.priming.teacher import check_gold_answers, summarise, teacher_outputs, to_jsonl
from kd_analysis.prompting.prompts import (
    check_template,
    format_prompt,
    has_chat_template,
    render_template,
    student_prompt,
)
from kd_analysis.prompting.strategies import PAPER_GAIN
from kd_analysis.runs import RunStore, layout, reconcile, start_run
from kd_analysis.runs.kinds import ATTENTION
from kd_analysis.training.config import ALIGNMENTS, LoraSettings
from kd_analysis.training.progress import run_progress

run_under_app()  # before anything draws: a page file run by itself hands over to app.py

PAGE_BATCH = 8  # examples generated together by "Compute now"


@dataclass(frozen=True)
class Setup:
    """What every tab uses: the teacher, the data, how many examples, and the strategies' templates."""

    teacher_src: str
    data_src: str
    n: int
    templates: dict[str, str]  # strategy -> template, only those that parse


def _sidebar_data_fits(sel: state.Selection) -> bool:
    """The sidebar's data set is in GSM8K's format (a question and a gold answer to generate)."""
    if sel.data_source.startswith("demo:arith"):
        return True
    try:
        examples = dataset(sel.data_source).examples[:20]
    except Exception:
        return False
    return bool(examples) and all(ex.task == "generation" for ex in examples)


def fit_notice(sel: state.Selection) -> tuple[str, str, bool]:
    """The sidebar's teacher and data where they fit (a causal LM, GSM8K-format data), else the built-in
    defaults, saying why."""
    teacher_task = expected_task(sel.teacher)  # "auto" resolved: the built-in's default or the checkpoint's head
    teacher_fits, data_fits = teacher_task == "causal_lm", _sidebar_data_fits(sel)
    default_teacher = sel.teacher.source if teacher_fits else "smollm2-135m-instruct"
    default_data = sel.data_source if data_fits else "demo:arithmetic"
    if not (teacher_fits and data_fits):
        if teacher_fits:
            misfit = []
        elif teacher_task:
            misfit = [
                f"the sidebar's teacher ({md(state.model_label(sel.teacher.source))}, a {teacher_task.replace('_', ' ')} model) is "
                "not a causal language model"
            ]
        else:  # a hub id under task "auto": its head is known only once loaded
            misfit = [
                f"the sidebar's teacher ({md(state.model_label(sel.teacher.source))}) has task auto, so whether it is a causal "
                "language model is known only once it loads (set its task to causal_lm in the sidebar if it is)"
            ]
        if not data_fits:
            misfit.append(
                f"{'its' if misfit else 'the sidebar’s'} data set ({md(describe_data(sel.data_source))}) is not in GSM8K's format"
            )
        st.info(
            "This page needs a causal language model (it generates answers) and GSM8K-format data (a question and "
            "an answer ending `#### N`). "
            + (lambda t: t[:1].upper() + t[1:])(" and ".join(misfit))
            + ", so the fields below use "
            f"{md(default_teacher)} on {md(default_data)} instead. Choose a causal LM (task causal_lm) and such "
            "data in the sidebar to use them here.",
            icon=":material/info:",
        )
    return default_teacher, default_data, teacher_fits and data_fits


def set_up(sel: state.Selection) -> Setup:
    """The teacher, data, examples and strategies (their templates editable and checked)."""
    default_teacher, default_data, sidebar_fits = fit_notice(sel)
    c1, c2, c3 = st.columns([2, 2, 1])
    teacher_src = c1.text_input(
        "Teacher (a causal language model)",
        default_teacher,
        key=f"prime_teacher_{default_teacher}",
        help="built-in name, local folder or hub id",
    )
    data_src = c2.text_input(
        "Data (GSM8K format: question, answer with ####)", default_data, key=f"prime_data_{default_data}"
    )
    if sidebar_fits and (teacher_src, data_src) != (sel.teacher.source, sel.data_source):

        def _use_sidebar() -> None:
            st.session_state[f"prime_teacher_{default_teacher}"] = sel.teacher.source
            st.session_state[f"prime_data_{default_data}"] = sel.data_source

        st.button(
            "Use the sidebar's teacher and data",
            on_click=_use_sidebar,
            help=f"{sel.teacher.source} on {sel.data_source}",
        )
    n = c3.number_input("examples", 1, 2000, 8)
    chosen = st.multiselect(
        "Strategies", list(STRATEGIES), default=list(STRATEGIES), format_func=lambda s: STRATEGIES[s].title
    )
    with st.expander(
        "Edit the prompt templates (our wording of the paper's strategies; {question} is required; "
        "{answer} / {solution} show the gold truth)"
    ):
        templates = {}
        for s in chosen:
            templates[s] = st.text_area(
                f"{STRATEGIES[s].title} · {STRATEGIES[s].wording}",
                STRATEGIES[s].template,
                key=f"tpl_{s}",
                height=90,
                help=STRATEGIES[s].description,
            )
    bad = {}
    for s, t in templates.items():
        try:
            check_template(t)
        except KDLensError as exc:
            bad[s] = str(exc)
    for s, msg in bad.items():
        st.error(f"{STRATEGIES[s].title}: {md(msg)}", icon=":material/error:")
    templates = {s: t for s, t in templates.items() if s not in bad}
    return Setup(teacher_src, data_src, int(n), templates)


def show_outputs(outs: dict, examples: list, templates: dict, tokenizer=None, key: str = "") -> None:
    """Per-strategy summary, then one example across strategies (live results and saved jobs alike)."""
    summary = pd.DataFrame(summarise(outs))
    st.dataframe(
        summary,
        hide_index=True,
        width="stretch",
        column_config={"accuracy": st.column_config.NumberColumn(format="percent")},
    )
    texts = {ex.id: ex for ex in examples}
    have = [{o.example_id for o in items} for items in outs.values()]
    ids = [i for i in texts if all(i in h for h in have)]
    if not ids:
        return
    pick = st.selectbox("Example", ids, format_func=lambda i: f"{i}: {texts[i].text[:100]}", key=f"ex_{key}")
    ex = texts[pick]
    st.markdown(f"**Question:** {md(ex.text)}  \n**Gold:** {md(ex.answer)}")
    rows = []
    for s, items in outs.items():
        o = next(x for x in items if x.example_id == pick)
        verdict = "" if o.generated is None else ("✓" if o.correct else ("✗ no number" if o.predicted is None else "✗"))
        rows.append(
            {
                "strategy": STRATEGIES[s].title if s in STRATEGIES else s,
                "gold log-prob / token": o.answer_logprob_per_token,
                "answer": o.generated,
                "parsed": o.predicted,
                "right": verdict,
                "prompt tokens": o.prompt_tokens,
            }
        )
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    with st.expander("Exact prompts the teacher read" if tokenizer else "Prompts (before the chat template)"):
        for s, t in templates.items():
            st.markdown(f"**{md(STRATEGIES[s].title if s in STRATEGIES else s)}**")
            text = render_template(t, ex)
            st.code(format_prompt(tokenizer, text) if tokenizer else text, language=None)
    st.download_button(
        "Teacher outputs (JSONL)", to_jsonl(outs), "teacher_outputs.jsonl", "application/json", key=f"dl_{key}"
    )


def saved_outputs(store: RunStore) -> None:
    """A saved teacher-outputs job, picked from the list (and in the URL)."""
    saved = store.list(kind=OUTPUTS_KIND)
    if saved:
        try:
            state.url_state("outputs_job", "_outputs_open", valid=lambda j: j in {x.run_id for x in saved})
            job = saved_job_picker("Saved teacher outputs", store, saved, "_outputs_open")
            state.write_url_state("outputs_job", job.run_id)
            outs = load_outputs_run(job)
            if outs:
                jcfg = job.config()
                st.caption(
                    f"Teacher {md(jcfg['teacher']['source'])} on {md(jcfg['data'])}, first "
                    f"{md(jcfg.get('limit'))} examples, up to {md(jcfg.get('max_new_tokens'))} new tokens."
                )
                show_outputs(
                    outs,
                    dataset(jcfg["data"]).examples[: jcfg.get("limit") or None],
                    {t["strategy"]: t["template"] for t in jcfg["templates"]},
                    key="saved",
                )
            else:
                st.info("No strategy finished yet in this job.", icon=":material/hourglass_top:")
            if job.status().get("state") in ("failed", "cancelled"):
                st.warning(
                    f"This job {job.status()['state']}: {md(job.status().get('reason'))}", icon=":material/warning:"
                )
        except Exception as exc:
            show_error(exc)


def _outputs_work(setup: Setup, generate: bool, max_new: int):
    """The background task: load the teacher (if this server has not), then score and generate per strategy,
    saying which."""
    spec = ModelSpec(setup.teacher_src, task="causal_lm")
    templates = setup.templates

    def work(task: Task):
        teacher = loaded_teacher(spec) or load_teacher_quietly(
            spec, progress=lambda msg: task.progress(0, None, f"loading the teacher: {msg}")
        )
        examples = check_gold_answers(dataset(setup.data_src).examples[: setup.n], setup.data_src)
        units = len(templates) * (2 if generate else 1)
        state = {"unit": -1, "seen": {}}

        def say(strategy: str, done: float, k: int, what: str) -> None:
            """One progress line: this unit of work's share `done / k`, and where it is, in words."""
            position = list(templates).index(strategy) + 1 if strategy in templates else "?"
            task.progress(
                max(state["unit"], 0) * 100 + int(100 * done / max(k, 1)),
                units * 100,
                f"{strategy} (strategy {position} of {len(templates)}): {what}",
            )

        def tick(strategy: str, i: int, k: int) -> None:
            if i == 0:  # a new phase of work begins (teacher_outputs announces each with 0 done)
                state["unit"] += 1
                state["seen"][strategy] = state["seen"].get(strategy, 0) + 1
            phase = "scoring the gold answer" if state["seen"].get(strategy, 1) == 1 else "generating answers"
            say(strategy, i, k, f"{phase}, {i}/{k} examples done")

        def token(strategy: str, i: int, k: int, tokens: int, budget: int) -> None:
            """Within a batch: where generation is, token by token (Cancel takes effect at the next token)."""
            say(
                strategy,
                i + tokens / budget * min(PAGE_BATCH, k - i),
                k,
                f"generating answers, {i}/{k} examples done, examples {i + 1}–{min(i + PAGE_BATCH, k)} at token "
                f"{tokens} of at most {budget}",
            )

        return (
            teacher_outputs(
                teacher,
                examples,
                templates,
                generate=generate,
                max_new_tokens=max_new,
                batch_size=PAGE_BATCH,
                progress=tick,
                on_token=token,
            ),
            examples,
            teacher.tokenizer,
        )

    return work


def compute_outputs(store: RunStore, setup: Setup) -> None:
    """The teacher under each strategy for the settings above: here with progress and Cancel, or as a job."""
    st.subheader("Compute for the settings above")
    g1, g2, g3, g4 = st.columns([1, 1, 1, 1])
    generate = g1.checkbox("Also generate answers", value=True, help="about 1–3 s per answer on a CPU")
    max_new = g2.number_input("max new tokens", 8, 512, 96)
    g3.caption(
        "Computed here in the background (progress and Cancel below); cached per model, template and "
        "example, so reruns are instant."
    )
    if g4.button(
        "Compute in the background",
        disabled=not setup.templates,
        help="a saved job: keeps going if you close the browser, and reopens above",
    ):
        try:
            job = start_run(
                outputs_config(
                    ModelSpec(setup.teacher_src, task="causal_lm").to_dict(),
                    setup.data_src,
                    setup.templates,
                    limit=setup.n,
                    generate=generate,
                    max_new_tokens=int(max_new),
                ),
                store,
                kind=OUTPUTS_KIND,
            )
            st.session_state["_outputs_open_started"] = job.run_id
            st.rerun()
        except Exception as exc:
            show_error(exc)
    key = json.dumps([setup.teacher_src, setup.data_src, setup.n, setup.templates, generate, int(max_new)])

    work = _outputs_work(setup, generate, int(max_new))
    result = PRIME_OUTPUTS.peek(key) if setup.templates else None
    if result is None and setup.templates:
        task_panel(
            st,
            TASKS["teacher_outputs"],
            key,
            work,
            f"Compute now ({len(setup.templates)} strategies × {setup.n} examples)",
            "prime",
        )
    elif result is not None:
        outs, examples, tokenizer = result
        if not has_chat_template(tokenizer):
            st.info(
                "This model has no chat template: prompts are sent as plain text ending in 'Answer:'.",
                icon=":material/info:",
            )
        show_outputs(outs, examples, setup.templates, tokenizer, key="live")


def teacher_outputs_tab(store: RunStore, setup: Setup) -> None:
    st.caption(
        "Per strategy: the teacher's log-probability of the gold worked answer after the primed prompt "
        "(one forward pass; ours: the paper's teacher saved its logits over prompt + question, without the "
        "answer) and its own greedy answer scored by the rules of the authors' README (an answer with no "
        "number counts wrong)."
    )
    saved_outputs(store)
    compute_outputs(store, setup)


def start_student_runs(store: RunStore, setup: Setup) -> None:
    """One LoRA student per strategy, all else equal, from one form."""
    with st.form("prime_runs"):
        r1, r2, r3, r4, r5, r6 = st.columns(6)
        layers = r1.number_input("student layers", 1, 64, 10, help="layers kept from the teacher, evenly spaced")
        steps = r2.number_input("steps", 1, 100_000, 60)
        lr = r3.number_input("learning rate", 1e-7, 1.0, 3e-4, format="%.1e")
        kd = r4.selectbox(
            "KD loss", list(LOSSES), index=list(LOSSES).index("rkl"), format_func=lambda n: LOSSES[n].title
        )
        kd_w = r5.number_input("KD weight", 0.0, 10.0, 0.4, 0.05)
        tau = r6.number_input("τ", 0.1, 20.0, 2.0, 0.5)
        s1, s2, s3, s4, s5 = st.columns(5)
        ce_w = s1.number_input("CE weight", 0.0, 10.0, 0.6, 0.05)
        lora_r = s2.number_input("LoRA r", 1, 256, 8)
        batch = s3.number_input("batch", 1, 256, 8)
        eval_size = s4.number_input("eval examples", 1, 5000, 40)
        alignment = s5.selectbox(
            "KD alignment",
            list(ALIGNMENTS),
            format_func=lambda a: {"answer": "answer tokens (ours)", "paper": "positions (paper's code)"}[a],
        )
        go = st.form_submit_button(
            f"Start {len(setup.templates)} student runs", type="primary", disabled=not setup.templates
        )
    if go:
        try:
            base = priming_base_config(
                setup.teacher_src,
                setup.data_src,
                StudentSpec(num_layers=int(layers)),
                ce_weight=float(ce_w),
                kd_loss=kd,
                kd_weight=float(kd_w),
                lora=LoraSettings(r=int(lora_r), alpha=2 * int(lora_r)),
                steps=int(steps),
                lr=float(lr),
                tau=float(tau),
                batch_size=int(batch),
                eval_size=int(eval_size),
                eval_every=max(int(steps) // 2, 1),
            )
            ids = [
                start_run(c.to_dict(), store, name=c.name).run_id
                for c in strategy_configs(base, list(setup.templates), setup.templates, alignment=alignment)
            ]
            st.success(f"Started {len(ids)} runs: {md(', '.join(ids))}", icon=":material/play_circle:")
        except Exception as exc:
            show_error(exc)


@st.fragment(run_every=3)
def runs_table(store: RunStore) -> None:
    """Each strategy's student: progress while it runs, then exact match with its interval and the gain."""
    ids = priming_runs(store)
    if not ids:
        st.info(
            "No priming runs yet: start them above, or regenerate the reference runs with "
            "`python -m kd_analysis runs make-reference`.",
            icon=":material/info:",
        )
        return
    for rid in ids[:12]:
        p = run_progress(store.get(rid))
        if p.state in ("queued", "running"):
            st.progress(p.fraction, text=f"{md(p.name)} · {p.state} · step {p.step}/{p.total or '?'}{phase_text(p)}")
    rows = accuracy_table(store, ids)
    table = pd.DataFrame(rows)
    st.plotly_chart(accuracy_bars(rows), width="stretch")
    shown = table.drop(columns=["gain vs none"], errors="ignore").rename(
        columns={"gain vs none note": "gain vs none"}
    )  # the number where the intervals support it, else why not
    first = ["strategy", "student exact match", "95% low", "95% high", "eval questions", "gain vs none"]
    shown = shown[[c for c in first if c in shown] + [c for c in shown if c not in first]]
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        column_config={
            c: st.column_config.NumberColumn(format="percent")
            for c in ("student exact match", "95% low", "95% high", "student before", "teacher exact match")
        },
    )
    st.caption(
        "95% Wilson intervals over the eval questions. Gain vs none is relative to the none student and "
        "is given only where the two intervals do not overlap."
    )
    st.download_button("Accuracy table (CSV)", csv_text(table), "priming_accuracy.csv", "text/csv")


def paper_reference_table() -> None:
    st.subheader("Paper reference: Goyal et al. 2024 on GSM8K")
    st.caption(
        f"{PAPER_SETUP}. Another teacher, student and data set than any run above: read it for the paper's "
        "pattern across strategies, never as a target for ours or beside our numbers."
    )
    reference = pd.DataFrame(paper_reference()).drop(columns=["source"]).fillna({"strategy": "—"})
    st.dataframe(
        reference.rename(columns={"strategy": "our strategy"}),
        hide_index=True,
        width="stretch",
        column_config={
            **{c: st.column_config.NumberColumn(format="percent") for c in ("GSM8K accuracy", "95% low", "95% high")},
            "correct (repo logs)": st.column_config.NumberColumn(format="%d"),
        },
    )


def student_runs_tab(store: RunStore, setup: Setup) -> None:
    st.caption(
        "One LoRA student per strategy, all else equal. The student reads the bare question. KD alignment "
        "'answer' (ours): the teacher is forced on the gold answer after its prompt and compared with the "
        "student on the same answer tokens. 'paper' (Goyal et al.'s code): the teacher reads prompt + "
        "question only, and its logits, the student's and the answer tokens are cut to one length and "
        "compared position by position. Reverse KL by default, as in the paper; the paper's loss, optimiser, "
        "schedule and alignment are the goyal-priming preset on the Distillation runs page. Runs queue for the device and keep going if "
        "you close the browser."
    )
    start_student_runs(store, setup)
    runs_table(store)
    paper_reference_table()


def finished_students(store: RunStore) -> list[str]:
    return [
        r
        for r in priming_runs(store)
        if store.get(r).status().get("state") == "finished" and (store.get(r).path / layout.CHECKPOINT).exists()
    ]


def head_statistics(stats: list) -> None:
    """Per layer × head statistics of the students of a saved job: profiles, grids, a difference, the top heads."""
    stat = st.selectbox("Statistic", list(STATS), format_func=STATS.get)
    cut = [f"{md(s.label)} {s.truncated} of {s.examples}" for s in stats if s.truncated]
    if cut:
        st.warning(
            "Inputs longer than the token limit were cut from the left of the question (the "
            "end of the prompt, with its answer cue, kept): " + ", ".join(cut) + " examples. "
            "The notes below say how much.",
            icon=":material/content_cut:",
        )
    for s in stats:
        for note in s.notes:
            st.caption(f"{md(s.label)}: {md(note)}")
    st.plotly_chart(profile_lines(stats, stat), width="stretch")
    st.plotly_chart(head_grid(stats, stat), width="stretch")
    if len(stats) >= 2:
        strategy_difference(stats, stat)
    st.download_button(
        "Head statistics (JSON)",
        json.dumps([s.to_dict() for s in stats]),
        "head_stats.json",
        "application/json",
    )


def strategy_difference(stats: list, stat: str) -> None:
    """Strategy a minus strategy b, head by head, and the heads that vary most; the pair is in the URL."""
    labels = [s.label for s in stats]
    # the strategy pair lives in the URL (?a=&b=), so a copied link shows the same difference
    state.url_state("a", "prime_diff_a", valid=lambda v: v in labels)
    state.url_state("b", "prime_diff_b", valid=lambda v: v in labels)
    if st.session_state.get("prime_diff_a") not in labels:
        st.session_state["prime_diff_a"] = labels[-1]
    if st.session_state.get("prime_diff_b") not in labels:
        st.session_state["prime_diff_b"] = labels[0]
    d1, d2 = st.columns(2)
    a = d1.selectbox("Difference: strategy a", labels, key="prime_diff_a")
    b = d2.selectbox("minus strategy b", labels, key="prime_diff_b")
    state.write_url_state("a", a)
    state.write_url_state("b", b)
    by = {s.label: s for s in stats}
    st.plotly_chart(diff_heatmap(diff_map(by[a], by[b], stat)), width="stretch")
    st.markdown("**Heads that vary most across strategies**")
    st.dataframe(pd.DataFrame(rank_heads(stats, stat, top=10)), hide_index=True, width="stretch")


def saved_head_statistics(store: RunStore, setup: Setup, finished: list[str]) -> None:
    """Start a head-statistics job for the chosen students, and show a saved one."""
    jobs = list(store.list(kind=ATTENTION))
    h1, h2 = st.columns([3, 1])
    pick_runs = h1.multiselect(
        "Students (finished priming runs)",
        finished,
        default=finished[:6],
        format_func=lambda r: f"{(store.get(r).config().get('priming') or {}).get('strategy')} · {r}",
    )
    n_heads = h2.number_input("examples for head statistics", 2, 2000, 100)
    if st.button("Compute head statistics in the background", disabled=not pick_runs):
        models = [
            {"label": (store.get(r).config().get("priming") or {}).get("strategy", r), "run": r} for r in pick_runs
        ]
        job = start_run(attention_config(models, setup.data_src, limit=int(n_heads)), store, kind=ATTENTION)
        st.session_state["_attention_open_started"] = job.run_id
        st.rerun()
    if jobs:
        try:
            state.url_state("heads_job", "_attention_open", valid=lambda j: j in {x.run_id for x in jobs})
            heads_job = saved_job_picker("Saved head statistics", store, jobs, "_attention_open")
            state.write_url_state("heads_job", heads_job.run_id)
            stats = load_attention_run(heads_job)
            if heads_job.status().get("state") in ("failed", "cancelled"):
                st.warning(
                    f"This job {heads_job.status()['state']}: {md(heads_job.status().get('reason'))}",
                    icon=":material/warning:",
                )
            if not stats:
                st.info("No model finished yet in this job.", icon=":material/hourglass_top:")
            else:
                head_statistics(stats)
        except Exception as exc:
            show_error(exc)


def one_head(store: RunStore, setup: Setup, finished: list[str]) -> None:
    """One head of one model (a student, or the teacher under a strategy) on one example, and bertviz's view."""
    st.subheader("One head, one example")
    models = [("run", r) for r in finished] + [("teacher", t) for t in setup.templates]
    if models and st.toggle("Drill into one head", help="loads the model: a few seconds the first time"):
        try:
            e1, e2, e3, e4 = st.columns([2, 2, 1, 1])
            kind, which = e1.selectbox(
                "Model",
                models,
                format_func=lambda m: (
                    f"student of {(store.get(m[1]).config().get('priming') or {}).get('strategy')} · {m[1]}"
                    if m[0] == "run"
                    else f"teacher under {STRATEGIES[m[1]].title}"
                ),
            )
            examples = dataset(setup.data_src).examples
            idx = e2.number_input("example index", 0, len(examples) - 1, 0)
            if kind == "run":
                model = load_run_model(store, which)
                text = student_prompt(model.tokenizer, examples[int(idx)])
            else:
                model = load_teacher(ModelSpec(setup.teacher_src, task="causal_lm"))
                text = format_prompt(model.tokenizer, render_template(setup.templates[which], examples[int(idx)]))
            n_layers = model.info().layers
            layer = e3.number_input("layer", 0, max(n_layers - 1, 0), max(n_layers - 1, 0))
            head = e4.number_input("head", 0, max(model.info().heads - 1, 0), 0)
            matrix, tokens = head_matrix(model, text, int(layer), int(head))
            st.plotly_chart(head_matrix_plot(matrix, tokens, f"layer {layer}, head {head}"), width="stretch")
            with st.expander("bertviz view (offline, last 48 tokens)"):
                view = st.radio("view", ["head", "model"], horizontal=True)
                att, toks = example_attentions(model, text, 48)
                html, notes = attention_view(
                    att,
                    toks,
                    kind=view,
                    max_tokens=48,
                    layers=None if view == "head" else list(range(max(0, len(att) - 4), len(att))),
                )
                for note in notes:
                    st.caption(md(note))
                st.iframe(html, height=720 if view == "model" else 560)
        except Exception as exc:
            show_error(exc)
    elif not models:
        st.info("Pick a strategy above, or finish a priming run with a saved student.", icon=":material/info:")


def attention_heads_tab(store: RunStore, setup: Setup) -> None:
    st.caption(
        "Per layer × head statistics over many examples with 95% intervals, computed layer by layer (one "
        "attention matrix in memory at a time). Students of one experiment share an architecture, so heads "
        "line up across strategies."
    )
    finished = finished_students(store)
    saved_head_statistics(store, setup, finished)
    one_head(store, setup, finished)


def render() -> None:
    store = RunStore()
    reconcile(store)
    sel = state.selection()
    st.title("Priming & attention")
    st.caption(
        "Goyal et al. (2024) prime the teacher with a prompt before it answers, distil a LoRA student from "
        f'its logits, and report +{PAPER_GAIN:.0%} GSM8K accuracy for their "Ground Truth" prompt over '
        "unprompted KD. Here: your teacher under each strategy, one student per strategy, and their heads."
    )
    setup = set_up(sel)
    tab_out, tab_runs, tab_heads = st.tabs(["Teacher outputs", "Student runs", "Attention heads"])
    with tab_out:
        teacher_outputs_tab(store, setup)
    with tab_runs:
        student_runs_tab(store, setup)
    with tab_heads:
        attention_heads_tab(store, setup)


render()
