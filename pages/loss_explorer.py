"""Loss explorer: how each registered loss (KL, reverse KL, JS, TVD, skew KL, AKL, α-β, generalised JSD, TAID, ULD,
Sinkhorn) pulls a student.

Two views, and only the chosen one runs (st.tabs would run both on every rerun, loading the models and running
the batch even for a user who only moves the toy's sliders). Results are kept by their inputs: the toy's fits in
st.cache_data, the pair's forward passes and losses in SharedResults, so going back to a view is instant. Widget
values live under permanent keys too, since Streamlit forgets the state of widgets a run does not draw.
"""

import html
import json
from dataclasses import asdict

import numpy as np
import pandas as pd
import streamlit as st

from app_ui import state
from app_ui.navigation import run_under_app
from app_ui.resources import dataset, is_loaded, load_pair, show_error
from app_ui.safe_text import md
from app_ui.shared_results import PAIR_LOSSES, PAIR_OUTPUTS
from kd_analysis.csv_export import csv_text
from kd_analysis.loss_explorer.ab_plane import NAMED_POINTS, fit_at, plane_grid
from kd_analysis.loss_explorer.real_pair import MAX_BATCH, ExplorerSettings, explore_pair, pair_outputs
from kd_analysis.loss_explorer.toy import ToyConfig, describe_fits, fit_behaviour, fit_toy, shuffle_demo
from kd_analysis.losses import LOSSES
from kd_analysis.losses.registry import BUCKETED_SHORT
from kd_analysis.losses.transport_plans import summarise_plan
from kd_analysis.plots import losses as plots
from kd_analysis.training.teacher_cache import bytes_per_token

run_under_app()  # before anything draws: a page file run by itself hands over to app.py

PNG = {"toImageButtonOptions": {"format": "png", "scale": 2}}
VIEWS = {"toy": "Toy: one bump vs a multimodal teacher", "pair": "Your teacher and student"}
VIEW_KEY = "loss_view"


def _kept(key: str, default):
    """A widget key whose value survives runs that do not draw the widget (the other view): restored from a
    permanent copy before the widget is drawn; `_keep` updates the copy."""
    if key not in st.session_state:
        st.session_state[key] = st.session_state.get(f"_kd_{key}", default)
    return key


def _keep(*keys: str) -> None:
    for key in keys:
        if key in st.session_state:
            st.session_state[f"_kd_{key}"] = st.session_state[key]


@st.cache_data(show_spinner="Fitting a student under each loss…", max_entries=64)
def _toy(config_json: str) -> dict:
    cfg = ToyConfig(**json.loads(config_json))
    return fit_toy(cfg).to_dict()


@st.cache_data(show_spinner="Fitting the student at this point of the plane…", max_entries=128)
def _plane(alpha: float, beta: float, tau: float) -> dict:
    return fit_at(alpha, beta, ToyConfig(tau=tau)).result.to_dict()


def ab_plane_view(tau: float) -> None:
    """ABKD's α-β plane: click a point (or type α, β) and the toy student is fitted there."""
    st.subheader("The α-β plane (ABKD): move between forward KL, reverse KL and Hellinger")
    st.markdown(
        "The α-β divergence (Cichocki et al. 2011; ABKD, Wang et al. 2025) holds several losses as points: "
        "(1, 0) is forward KL, (0, 1) reverse KL, (½, ½) four times the squared Hellinger distance. Click a point "
        "of the plane, or type α and β, to fit the toy student there; forward and reverse KL are drawn beside it."
    )
    event = st.session_state.get("ab_plane_chart")
    points = ((event or {}).get("selection") or {}).get("points") or []
    if points:  # a click: move the inputs there before they are drawn
        clicked = (round(float(points[0]["x"]), 4), round(float(points[0]["y"]), 4))
        if clicked != st.session_state.get("_ab_last_click"):
            st.session_state["_ab_last_click"] = clicked
            st.session_state["ab_alpha"], st.session_state["ab_beta"] = clicked
    c1, c2 = st.columns(2)
    alpha = c1.number_input("α (teacher side)", 0.0, 2.0, step=0.05, key=_kept("ab_alpha", 0.5))
    beta = c2.number_input("β (student side)", 0.0, 2.0, step=0.05, key=_kept("ab_beta", 0.5))
    _keep("ab_alpha", "ab_beta")
    left, right = st.columns([2, 3])
    left.plotly_chart(
        plots.ab_plane(plane_grid(), NAMED_POINTS, (alpha, beta)),
        width="stretch",
        on_select="rerun",
        selection_mode="points",
        key="ab_plane_chart",
        config=PNG,
    )
    try:
        res = _plane(float(alpha), float(beta), float(tau))
        fits = res["fits"]
        t_mass = [m["mass"] for m in res["modes"]]
        notes = {k: fit_behaviour(v["mode_mass"], t_mass, res["main"])[0] for k, v in fits.items()}
        right.plotly_chart(
            plots.toy_fits(res["teacher"], {k: v["probs"] for k, v in fits.items()}, cols=3, notes=notes),
            width="stretch",
            config=PNG,
        )
        ab = fits["alpha_beta"]
        right.caption(
            f"At α {alpha:g}, β {beta:g}: {ab['outside_main']:.0%} of the student's mass lies outside the teacher's "
            f"main mode (teacher {res['teacher_outside_main']:.0%}), {ab['rare_mass']:.1%} on the rare mode "
            f"(teacher {res['teacher_rare_mass']:.1%}). `python -m kd_analysis losses toy --param ab_alpha={alpha:g} "
            f"--param ab_beta={beta:g} --only alpha_beta` prints the same fit."
        )
    except Exception as exc:
        show_error(exc)


def toy_view() -> None:
    st.markdown(
        "The teacher has two modes and a rare event over 24 ordered classes; the student is a single "
        "bump (mean μ, width σ) fitted under each loss (Newton's method, to convergence). It cannot copy the "
        "teacher, so each loss shows what it prefers. The loss compares teacher and student at the "
        "temperature τ; the chart draws both at τ = 1, the student as it answers after distillation."
    )
    c1, c2, c3 = st.columns(3)
    tau = c1.slider("Temperature τ", 0.5, 5.0, step=0.25, key=_kept("toy_tau", 1.0))
    eps = c2.slider("Sinkhorn ε", 0.01, 1.0, step=0.01, key=_kept("toy_eps", 0.05))
    alpha = c3.slider("Skew α", 0.0, 0.9, step=0.05, key=_kept("toy_alpha", 0.1))
    _keep("toy_tau", "toy_eps", "toy_alpha")
    toy_fits(tau, eps, alpha)
    ab_plane_view(tau)
    shuffle_demo_section(tau, eps)


def toy_fits(tau: float, eps: float, alpha: float) -> None:
    """The single-bump student fitted under each loss: the fits, what each did, and their paths."""
    try:
        res = _toy(json.dumps({"tau": tau, "eps": eps, "alpha": alpha}))
        fits = res["fits"]
        t_mass = [m["mass"] for m in res["modes"]]
        behaviour = {k: fit_behaviour(v["mode_mass"], t_mass, res["main"])[0] for k, v in fits.items()}
        st.plotly_chart(
            plots.toy_fits(res["teacher"], {k: v["probs"] for k, v in fits.items()}, notes=behaviour),
            width="stretch",
            config=PNG,
        )
        st.markdown(
            "**What each fit did** (measured on the fitted students above)\n\n"
            + "\n".join(f"- {sentence}" for sentence in describe_fits(res))
        )
        main = res["modes"][res["main"]]
        table = pd.DataFrame(
            [
                {
                    "loss": LOSSES[k].title,
                    "μ": round(v["mu"], 2),
                    "σ": round(v["sigma"], 2),
                    f"mass outside the main mode ({main['lo']}–{main['hi']})": round(v["outside_main"], 3),
                    "mass on the rare mode": round(v["rare_mass"], 3),
                    "what it did": behaviour[k],
                    "final loss": round(v["final_loss"], 4),
                    "iterations": v["iterations"],
                }
                for k, v in fits.items()
            ]
        )
        st.dataframe(table, hide_index=True, width="stretch")
        st.caption(
            f"The teacher puts {res['teacher_outside_main']:.3f} of its mass outside its main mode and "
            f"{res['teacher_rare_mass']:.3f} on the rare mode. Mode-seeking: outside the mode it sits on, "
            "the student keeps at most a quarter of the teacher's mass there; mass-covering: outside the "
            "main mode it keeps at least three quarters of the teacher's. On one distribution SinKD's "
            "batch-wise plan is trivial, so the Sinkhorn panel uses the class-level Sinkhorn distance "
            "with ground cost |k − l|: it moves mass a short way between neighbouring classes."
        )
        st.plotly_chart(plots.toy_paths({k: v["path"] for k, v in fits.items()}), width="stretch", config=PNG)
    except Exception as exc:
        show_error(exc)


def shuffle_demo_section(tau: float, eps: float) -> None:
    """Row-wise losses see a mix-up of the student's rows; batch-wise Sinkhorn does not."""
    st.subheader("Why SinKD keeps KD and CE: shuffle the student's rows")
    st.markdown(
        "A batch of 6 examples over 5 classes where the student answers each example almost like the "
        "teacher; then the same student answers, handed to the wrong examples (a cyclic shift of its rows). "
        "Row-wise losses see the mix-up. Batch-wise Sinkhorn with uniform marginals compares the two sets of "
        "rows and never asks which row belongs to which example, so its value does not move: it cannot "
        "stand alone, which is why SinKD adds it to KD + CE."
    )
    try:
        demo = shuffle_demo(tau=tau, eps=max(eps, 0.05))
    except Exception as exc:
        show_error(exc)
        demo = None
    if demo is not None:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "loss": LOSSES[n].title,
                        "student in order": demo.aligned[n],
                        "student rows shuffled": demo.shuffled[n],
                        "changed": "no"
                        if abs(demo.shuffled[n] - demo.aligned[n]) <= 1e-9 * max(1.0, abs(demo.aligned[n]))
                        else "yes",
                    }
                    for n in demo.aligned
                ]
            ),
            hide_index=True,
            width="stretch",
            column_config={
                c: st.column_config.NumberColumn(format="%.4g") for c in ["student in order", "student rows shuffled"]
            },
        )


def _plan_section(rep, settings: ExplorerSettings) -> None:
    summary = summarise_plan(rep.plan)
    b = summary.batch
    st.subheader("Sinkhorn transport plan")
    st.markdown(
        f"The plan says how much of each student example's mass Sinkhorn moves to each teacher example. "
        f"A good plan puts its mass on the diagonal: each student example matched to its own teacher "
        f"example (B·plan = 1 there and 0 elsewhere). The worst is the uniform plan, 1/B² for every pair "
        f"(B = {b}): the cost then tells the examples apart no better than chance. The plan is drawn as "
        f"B²·plan, so 1 (white) is uniform, more is red, less is blue, and a perfect matching shows {b} on "
        "the dotted diagonal."
    )
    left, right = st.columns(2)
    left.plotly_chart(plots.transport_plan(rep.plan, rep.example_ids), width="stretch", config=PNG)
    right.plotly_chart(plots.cost_matrix(rep.cost, rep.example_ids), width="stretch", config=PNG)
    note = summary.note
    if summary.uniform:
        flat = [v for row in rep.cost for v in row]
        note += (
            f" The costs differ by at most {max(flat) - min(flat):.2g} between pairs, against ε = "
            f"{settings.eps:g}, so exp(−cost/ε) is almost the same for every pair; a smaller ε, or outputs "
            "that differ more between examples, would separate them."
        )
    st.caption(note)


def _bars_section(rep, tau: float) -> int:
    st.subheader("Teacher vs student probabilities, one example")
    pick = st.selectbox(
        "Example",
        range(len(rep.example_ids)),
        format_func=lambda i: f"{rep.example_ids[i]}: {rep.example_texts[i][:80]}",
    )
    shown = (getattr(rep, "shown", None) or [f"example {i}" for i in rep.example_ids])[pick]
    title = html.escape(f"Teacher vs student at τ = {tau:g}, {shown}")
    st.plotly_chart(
        plots.probability_bars(
            rep.columns[pick], rep.teacher_probs[pick], rep.student_probs[pick], rep.gold[pick], title=title
        ),
        width="stretch",
        config=PNG,
    )
    t_mass = (getattr(rep, "shown_teacher_mass", None) or [1.0] * len(rep.example_ids))[pick]
    s_mass = (getattr(rep, "shown_student_mass", None) or [1.0] * len(rep.example_ids))[pick]
    text = (
        f"The bars show {shown}, both softened at τ = {tau:g}; teacher on the left of each pair, student on the right."
    )
    if rep.kind == "tokens":
        text += (
            f" These tokens hold {t_mass:.1%} of the teacher's probability and {s_mass:.1%} of the "
            "student's; the rest is spread over the other tokens of the vocabulary."
        )
    st.caption(md(text))
    return pick


def pair_settings() -> tuple[ExplorerSettings, int]:
    """The loss settings and the batch size, kept while the other view is shown."""
    c1, c2, c3, c4, c5, c6 = st.columns(6)
    settings = ExplorerSettings(
        tau=c1.slider("τ", 0.5, 8.0, step=0.5, help="SinKD uses τ = 2", key=_kept("pair_tau", 2.0)),
        eps=c2.slider("ε", 0.01, 1.0, step=0.01, help="SinKD uses ε = 0.1", key=_kept("pair_eps", 0.1)),
        iters=c3.slider("iterations", 1, 100, help="SinKD uses 20", key=_kept("pair_iters", 20)),
        alpha=c4.slider("skew α", 0.0, 0.9, step=0.05, key=_kept("pair_alpha", 0.1)),
        cache_k=int(
            c6.number_input(
                "cache top-k (LM)",
                1,
                100_000,
                help="language models: the k a training run keeps per token (run option "
                "teacher_topk); the table below compares it with the full vocabulary",
                key=_kept("pair_cache_k", 64),
            )
        ),
    )
    batch = c5.number_input("batch", 2, MAX_BATCH, key=_kept("pair_batch", 16))
    _keep("pair_tau", "pair_eps", "pair_iters", "pair_alpha", "pair_cache_k", "pair_batch")
    return settings, int(batch)


def pair_view() -> None:
    """Every loss on a batch of the user's own teacher and student, its gradients, plan and per-example parts."""
    sel = state.selection()
    settings, batch = pair_settings()
    progress = st.empty()

    def stage(i: int, text: str) -> None:
        progress.progress(i / 3, text=f"Step {i + 1} of 3: {text}…")

    try:
        if not is_loaded(sel.teacher, sel.student):
            stage(0, "loading the teacher and building the student")
        teacher, student, report = load_pair(sel.teacher, sel.student)
        ds = dataset(sel.data_source)
        if not report.comparable:
            progress.empty()
            st.warning(
                "This pair's outputs are not comparable, so logit losses do not apply: " + md(" ".join(report.notes)),
                icon=":material/warning:",
            )
            return
        top = max(len(ds.examples) - int(batch), 0)
        start_key = _kept("pair_start", 0)
        st.session_state[start_key] = min(int(st.session_state[start_key]), top)  # another data set may be shorter
        start = st.number_input("first example", 0, top, key=start_key)
        _keep(start_key)
        examples = ds.examples[int(start) : int(start) + int(batch)]
        batch_key = json.dumps([sel.teacher.key(), sel.student.key(), sel.data_source, int(start), int(batch)])
        # the forward passes run once per batch, not per slider move, and are shared by every tab of this
        # server, as are the losses per setting (ten tabs on the same pair compute once: bench_server.py)
        if not PAIR_OUTPUTS.has(batch_key):
            stage(1, f"running teacher and student on {len(examples)} examples")
        outputs = PAIR_OUTPUTS.get(batch_key, lambda: pair_outputs(teacher, student, examples, report.aligned_outputs))
        key = json.dumps([batch_key, asdict(settings)], default=str)
        if not PAIR_LOSSES.has(key):
            stage(2, "computing every loss and its gradient")
        rep = PAIR_LOSSES.get(
            key, lambda: explore_pair(teacher, student, examples, settings, report.aligned_outputs, outputs=outputs)
        )
        progress.empty()
        if teacher.info().notes and any("head is new" in n for n in teacher.info().notes):
            st.info(
                "The teacher's task head is untrained, so its distributions are close to uniform and the "
                "losses are small. Fine-tune it first, or pick SmolLM2 on the arithmetic set for a real "
                "language-model teacher.",
                icon=":material/info:",
            )
        all_losses(rep)
        cache_comparison(rep, settings)
        balance_note(rep)
        st.plotly_chart(plots.loss_and_gradients(rep.values, rep.grad_norms), width="stretch", config=PNG)
        _plan_section(rep, settings)
        pick = _bars_section(rep, settings.tau)
        if rep.per_token:
            st.plotly_chart(
                plots.token_contributions(rep.per_token[rep.example_ids[pick]]), width="stretch", config=PNG
            )
        per_example = pd.DataFrame(rep.table())
        st.subheader("Per-example contributions")
        st.dataframe(per_example, hide_index=True, width="stretch")
        d1, d2 = st.columns(2)
        d1.download_button("Per-example values (CSV)", csv_text(per_example), "loss_contributions.csv", "text/csv")
        d2.download_button(
            "Everything (JSON)", json.dumps(rep.to_dict(), default=str), "loss_report.json", "application/json"
        )
    except Exception as exc:
        progress.empty()
        show_error(exc)


def all_losses(rep) -> None:
    """Every loss on the batch: value, gradient norm, both against KL, and with the student's rows shuffled."""
    kl = rep.values.get("kl") or 1e-12
    kl_grad = rep.grad_norms.get("kl") or 1e-12
    summary = pd.DataFrame(
        [
            {
                "loss": LOSSES[n].title,
                "value": v,
                "× KL": v / kl,
                "gradient norm": rep.grad_norms[n],
                "grad × KL": rep.grad_norms[n] / kl_grad,
                "student rows shuffled": rep.shuffled.get(n),
            }
            for n, v in rep.values.items()
        ]
    )
    st.subheader(f"All losses on {len(rep.example_ids)} examples ({rep.kind})")
    st.dataframe(
        summary,
        hide_index=True,
        width="stretch",
        column_config={
            c: st.column_config.NumberColumn(format="%.4g")
            for c in ["value", "× KL", "gradient norm", "grad × KL", "student rows shuffled"]
        },
    )
    st.caption(
        "'Student rows shuffled': each loss after handing the student's outputs to the wrong "
        "examples. Sinkhorn does not move (uniform marginals ignore which row is which example), which "
        "is why SinKD adds it to KD + CE rather than replacing them."
    )


def balance_note(rep) -> None:
    """Sinkhorn against KL in value and in gradient norm: why loss weights are balanced by gradients."""
    if "sinkhorn" in rep.values and rep.values.get("kl"):
        value_ratio = rep.values["sinkhorn"] / rep.values["kl"]
        grad_ratio = rep.grad_norms["sinkhorn"] / (rep.grad_norms.get("kl") or 1e-12)
        st.caption(
            f"Balance loss weights by gradient norm, not by value: on this batch Sinkhorn is "
            f"{value_ratio:.2g}× KL in value and {grad_ratio:.2g}× "
            "in gradient norm. Users of SinKD's code reported Sinkhorn values far below KL's with "
            "larger gradients; the authors scale it by 0.001 and add it to KD + CE."
        )


def cache_comparison(rep, settings: ExplorerSettings) -> None:
    """What a run training from a top-k teacher cache computes, beside the full vocabulary."""
    if not rep.topk_values:
        return
    k = rep.settings["cache_k"]
    st.subheader(f"What training from a top-{k} teacher cache computes")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "loss": LOSSES[n].title,
                    "full vocabulary": rep.values[n],
                    f"top-{k} + tail bucket": rep.topk_values.get(n),
                    "on the buckets": BUCKETED_SHORT[LOSSES[n].bucketed],
                }
                for n in rep.values
                if LOSSES[n].rows is not None
            ]
        ),
        hide_index=True,
        width="stretch",
        column_config={
            c: st.column_config.NumberColumn(format="%.4g") for c in ["full vocabulary", f"top-{k} + tail bucket"]
        },
    )
    t_tail, s_tail = np.mean(rep.teacher_tail), np.mean(rep.student_tail)
    st.caption(
        f"A run caches the teacher's top {k} tokens per position ({bytes_per_token(k):,} bytes per "
        f"token: 8·k, and 8 for the tail at each τ) and merges the rest of the vocabulary into one tail bucket on both sides. Over "
        f"the {len(rep.teacher_tail)} token positions of this batch the tail holds {t_tail:.1%} of "
        f"the teacher's mass and {s_tail:.1%} of the student's (at τ = {settings.tau:g}). Merging "
        "can only lower an f-divergence (KL, reverse KL, JS, TVD, skew KL, generalised JSD) and soft "
        "CE, and is exact when the tail is empty; AKL, α-β and TAID are not f-divergences, so their "
        "bucketed values may be above or below the full ones; ULD ranks every token and has no bucketed "
        "form (a run refuses it with a cache). When the teacher's tail is large, train with a larger k "
        "or with teacher_cache none (full vocabulary)."
    )


def choose_view() -> str:
    """The toy or the user's pair; a link (?view=pair) or the view this session had last."""
    arrived = state.url_arrivals("view")
    if arrived is not None and arrived["view"] in VIEWS:
        st.session_state[VIEW_KEY] = arrived["view"]
    elif VIEW_KEY not in st.session_state:
        st.session_state[VIEW_KEY] = st.session_state.get(f"_kd_{VIEW_KEY}", "toy")
    view = (
        st.segmented_control(
            "View", list(VIEWS), format_func=VIEWS.get, required=True, key=VIEW_KEY, label_visibility="collapsed"
        )
        or "toy"
    )
    _keep(VIEW_KEY)
    state.write_url_state("view", None if view == "toy" else view)  # the address names the view, so it can be shared
    return view


def render() -> None:
    st.title("Loss explorer")
    st.caption(
        "SinKD (Cui et al. 2024) adds a batch-wise Sinkhorn distance to the usual KD + CE loss: "
        "(1−α)·CE + α·KD + β·Sinkhorn. See how each loss pulls a student, on a toy and on your own "
        "teacher/student pair. Every chart exports as PNG from its toolbar (camera icon)."
    )
    if choose_view() == "pair":
        pair_view()
    else:
        toy_view()


render()
