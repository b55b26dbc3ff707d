"""Loss explorer: how KL, reverse KL, JS, TVD, skew KL and Sinkhorn (SinKD) pull a student."""
import json
from dataclasses import asdict

import numpy as np
import pandas as pd
import streamlit as st

from app_ui import state
from app_ui.resources import dataset, load_pair, show_error
from app_ui.safe_text import md
from app_ui.shared_results import PAIR_LOSSES, PAIR_OUTPUTS
from kd_analysis.losses import LOSSES
from kd_analysis.losses.explorer import MAX_BATCH, ExplorerSettings, explore_pair, pair_outputs
from kd_analysis.losses.toy import ToyConfig, fit_toy, shuffle_demo
from kd_analysis.plots import losses as plots

PNG = {"toImageButtonOptions": {"format": "png", "scale": 2}}

st.title("Loss explorer")
st.caption("SinKD (Cui et al. 2024) adds a batch-wise Sinkhorn distance to the usual KD + CE loss: "
           "(1−α)·CE + α·KD + β·Sinkhorn. See how each loss pulls a student, on a toy and on your own "
           "teacher/student pair. Every chart exports as PNG from its toolbar (camera icon).")
toy_tab, pair_tab = st.tabs(["Toy: one bump vs a multimodal teacher", "Your teacher and student"])


@st.cache_data(show_spinner="Fitting a student under each loss…", max_entries=32)
def _toy(config_json: str) -> dict:
    cfg = ToyConfig(**json.loads(config_json))
    return fit_toy(cfg).to_dict()


with toy_tab:
    st.markdown("The teacher has two modes and a rare event over 24 ordered classes; the student is a single "
                "bump (mean μ, width σ) fitted by gradient descent under each loss. It cannot copy the teacher, "
                "so each loss shows what it prefers.")
    c1, c2, c3 = st.columns(3)
    tau = c1.slider("Temperature τ", 0.5, 5.0, 1.0, 0.25, key="toy_tau")
    eps = c2.slider("Sinkhorn ε", 0.01, 1.0, 0.05, 0.01, key="toy_eps")
    alpha = c3.slider("Skew α", 0.0, 0.9, 0.1, 0.05, key="toy_alpha")
    try:
        res = _toy(json.dumps({"tau": tau, "eps": eps, "alpha": alpha}))
        fits = res["fits"]
        st.plotly_chart(plots.toy_fits(res["teacher"], {k: v["probs"] for k, v in fits.items()}),
                        width="stretch", config=PNG)
        table = pd.DataFrame([{"loss": LOSSES[k].title, "μ": round(v["mu"], 2), "σ": round(v["sigma"], 2),
                               "mass on the rare mode": round(v["rare_mass"], 3),
                               "final loss": round(v["final_loss"], 4)} for k, v in fits.items()])
        st.dataframe(table, hide_index=True, width="stretch")
        st.caption(f"The teacher puts {res['teacher_rare_mass']:.3f} of its mass on the rare mode. Forward KL "
                   "spreads the student over every mode (mode-averaging); reverse KL settles on one mode "
                   "(mode-seeking) and ignores the rest; JS pays little for rare events. On one distribution "
                   "SinKD's batch-wise plan is trivial, so the Sinkhorn panel uses the class-level Sinkhorn "
                   "distance with ground cost |k − l|: it moves mass a short way between neighbouring classes.")
        st.plotly_chart(plots.toy_paths({k: v["path"] for k, v in fits.items()}), width="stretch", config=PNG)
    except Exception as exc:
        show_error(exc)

    st.subheader("Why SinKD keeps KD and CE: shuffle the student's rows")
    st.markdown("A batch of 6 examples over 5 classes where the student answers each example almost like the "
                "teacher; then the same student answers, handed to the wrong examples (a cyclic shift of its rows). "
                "Row-wise losses see the mix-up. Batch-wise Sinkhorn with uniform marginals compares the two sets of "
                "rows and never asks which row belongs to which example, so its value does not move: it cannot "
                "stand alone, which is why SinKD adds it to KD + CE.")
    try:
        demo = shuffle_demo(tau=tau, eps=max(eps, 0.05))
    except Exception as exc:
        show_error(exc)
        demo = None
    if demo is not None:
        st.dataframe(pd.DataFrame([{"loss": LOSSES[n].title, "student in order": demo.aligned[n],
                                    "student rows shuffled": demo.shuffled[n],
                                    "changed": "no" if abs(demo.shuffled[n] - demo.aligned[n]) <= 1e-9 * max(
                                        1.0, abs(demo.aligned[n])) else "yes"} for n in demo.aligned]),
                     hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.4g")
                                    for c in ["student in order", "student rows shuffled"]})

with pair_tab:
    sel = state.selection()
    c1, c2, c3, c4, c5, c6 = st.columns(6)
    settings = ExplorerSettings(
        tau=c1.slider("τ", 0.5, 8.0, 2.0, 0.5, help="SinKD uses τ = 2"),
        eps=c2.slider("ε", 0.01, 1.0, 0.1, 0.01, help="SinKD uses ε = 0.1"),
        iters=c3.slider("iterations", 1, 100, 20, help="SinKD uses 20"),
        alpha=c4.slider("skew α", 0.0, 0.9, 0.1, 0.05),
        cache_k=int(c6.number_input("cache top-k (LM)", 1, 100_000, 64,
                                    help="language models: the k a training run keeps per token (run option "
                                         "teacher_topk); the table below compares it with the full vocabulary")),
    )
    batch = c5.number_input("batch", 2, MAX_BATCH, 16)
    try:
        teacher, student, report = load_pair(sel.teacher, sel.student)
        ds = dataset(sel.data_source)
        if not report.comparable:
            st.warning("This pair's outputs are not comparable, so logit losses do not apply: "
                       + md(" ".join(report.notes)), icon=":material/warning:")
        else:
            start = st.number_input("first example", 0, max(len(ds.examples) - int(batch), 0), 0)
            examples = ds.examples[int(start):int(start) + int(batch)]
            batch_key = json.dumps([sel.teacher.key(), sel.student.key(), sel.data_source, int(start), int(batch)])
            # the forward passes run once per batch, not per slider move, and are shared by every tab of this
            # server, as are the losses per setting (ten tabs on the same pair compute once: bench_server.py)
            with st.spinner("Running teacher and student on the batch…"):
                outputs = PAIR_OUTPUTS.get(batch_key, lambda: pair_outputs(teacher, student, examples,
                                                                           report.aligned_outputs))
            key = json.dumps([batch_key, asdict(settings)], default=str)
            with st.spinner("Computing every loss and its gradient…"):
                rep = PAIR_LOSSES.get(key, lambda: explore_pair(teacher, student, examples, settings,
                                                                report.aligned_outputs, outputs=outputs))
            if teacher.info().notes and any("head is new" in n for n in teacher.info().notes):
                st.info("The teacher's task head is untrained, so its distributions are close to uniform and the "
                        "losses are small. Fine-tune it first, or pick SmolLM2 on the arithmetic set for a real "
                        "language-model teacher.", icon=":material/info:")
            kl = rep.values.get("kl") or 1e-12
            kl_grad = rep.grad_norms.get("kl") or 1e-12
            summary = pd.DataFrame([{"loss": LOSSES[n].title, "value": v, "× KL": v / kl,
                                     "gradient norm": rep.grad_norms[n], "grad × KL": rep.grad_norms[n] / kl_grad,
                                     "student rows shuffled": rep.shuffled.get(n)}
                                    for n, v in rep.values.items()])
            st.subheader(f"All losses on {len(rep.example_ids)} examples ({rep.kind})")
            st.dataframe(summary, hide_index=True, width="stretch",
                         column_config={c: st.column_config.NumberColumn(format="%.4g")
                                        for c in ["value", "× KL", "gradient norm", "grad × KL",
                                                  "student rows shuffled"]})
            st.caption("'Student rows shuffled': each loss after handing the student's outputs to the wrong "
                       "examples. Sinkhorn does not move (uniform marginals ignore which row is which example), which "
                       "is why SinKD adds it to KD + CE rather than replacing them.")
            if rep.topk_values:
                k = rep.settings["cache_k"]
                st.subheader(f"What training from a top-{k} teacher cache computes")
                st.dataframe(pd.DataFrame([{"loss": LOSSES[n].title, "full vocabulary": rep.values[n],
                                            f"top-{k} + tail bucket": v} for n, v in rep.topk_values.items()]),
                             hide_index=True, width="stretch",
                             column_config={c: st.column_config.NumberColumn(format="%.4g")
                                            for c in ["full vocabulary", f"top-{k} + tail bucket"]})
                t_tail, s_tail = np.mean(rep.teacher_tail), np.mean(rep.student_tail)
                st.caption(f"A run caches the teacher's top {k} tokens per position (8·k = {8 * k:,} bytes per "
                           f"token) and merges the rest of the vocabulary into one tail bucket on both sides. Over "
                           f"the {len(rep.teacher_tail)} token positions of this batch the tail holds {t_tail:.1%} of "
                           f"the teacher's mass and {s_tail:.1%} of the student's (at τ = {settings.tau:g}); merging "
                           "can only lower a divergence, and it is exact when the tail is empty. When the teacher's "
                           "tail is large, train with a larger k or with teacher_topk 0 (full vocabulary).")
            if "sinkhorn" in rep.values and rep.values.get("kl"):
                st.caption(f"Balance loss weights by gradient norm, not by value: on this batch Sinkhorn is "
                           f"{rep.values['sinkhorn'] / kl:.2g}× KL in value and {rep.grad_norms['sinkhorn'] / kl_grad:.2g}× "
                           "in gradient norm. Users of SinKD's code reported Sinkhorn values far below KL's with "
                           "larger gradients; the authors scale it by 0.001 and add it to KD + CE.")
            st.plotly_chart(plots.loss_and_gradients(rep.values, rep.grad_norms), width="stretch", config=PNG)
            st.plotly_chart(plots.transport_plan(rep.plan, rep.example_ids), width="stretch", config=PNG)
            pick = st.selectbox("Example", range(len(rep.example_ids)),
                                format_func=lambda i: f"{rep.example_ids[i]}: {rep.example_texts[i][:80]}")
            st.plotly_chart(plots.probability_bars(rep.columns[pick], rep.teacher_probs[pick],
                                                   rep.student_probs[pick], rep.gold[pick]),
                            width="stretch", config=PNG)
            if rep.per_token:
                st.plotly_chart(plots.token_contributions(rep.per_token[rep.example_ids[pick]]), width="stretch",
                                config=PNG)
            per_example = pd.DataFrame(rep.table())
            st.subheader("Per-example contributions")
            st.dataframe(per_example, hide_index=True, width="stretch")
            d1, d2 = st.columns(2)
            d1.download_button("Per-example values (CSV)", per_example.to_csv(index=False), "loss_contributions.csv",
                               "text/csv")
            d2.download_button("Everything (JSON)", json.dumps(rep.to_dict(), default=str), "loss_report.json",
                               "application/json")
    except Exception as exc:
        show_error(exc)
