"""Distillation runs: configure and start a run, watch it live, cancel it. The run folder is the truth."""

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from app_ui import state
from app_ui.navigation import run_under_app
from app_ui.resources import show_error
from app_ui.safe_text import code, md
from app_ui.views import loss_param_inputs, phase_text, shown_cells
from kd_analysis.attribution.methods import METHODS
from kd_analysis.data.refs import describe_data
from kd_analysis.evidence.groups import group_configs, parse_seeds, start_group
from kd_analysis.exceptions import KDLensError
from kd_analysis.losses import LOSSES
from kd_analysis.models.builtins import BUILTINS
from kd_analysis.models.device import describe_device
from kd_analysis.models.specs import ModelSpec, StudentSpec
from kd_analysis.plots.run_evals import eval_curves
from kd_analysis.plots.runs import balance_curves, run_losses, taid_curve
from kd_analysis.runs import RunStore, cancel_run, layout, reconcile, start_run
from kd_analysis.runs.kinds import RATIONALES
from kd_analysis.runs.origin import missing_words, origin_kind, origin_words
from kd_analysis.training.balance import balance_report
from kd_analysis.training.config import LoraSettings, LossTerm, OnPolicySettings, RationaleSettings, TrainConfig
from kd_analysis.training.evals import active_twin, eval_rows, eval_table
from kd_analysis.training.presets import PRESETS, changed_settings, loss_rows, preset_config
from kd_analysis.training.progress import latest_eval_words, run_progress
from kd_analysis.training.rationale_tasks import check_source_run
from kd_analysis.training.teacher_cache import bytes_per_token

run_under_app()  # before anything draws: a page file run by itself hands over to app.py

PLAIN = "none"
PNG = {"toImageButtonOptions": {"format": "png"}}


@dataclass
class LossChoice:
    """The loss terms typed on the form (own settings); made into terms at the run's τ when it is submitted."""

    weights: dict[str, float]
    params: dict[str, dict]
    at_run_tau: list[str]  # objectives that would train at their reference's τ, moved to the run's τ and τ²

    def terms(self, tau: float) -> list[LossTerm]:
        return [
            LossTerm(k, float(w), self.params.get(k, {}), tau=float(tau), tau_squared=True)
            if k in self.at_run_tau
            else LossTerm(k, float(w), self.params.get(k, {}))
            for k, w in self.weights.items()
            if w > 0
        ]


@dataclass
class RunForm:
    """What the New run form held when it was submitted."""

    models: str  # "preset" or "sidebar": whose teacher, student and data
    teacher_choice: str | None
    name: str
    settings: dict  # schedule, evaluation, precision, device, teacher cache, on-policy, labels: as a run config
    use_lora: bool
    lora_r: int
    seeds_text: str
    losses: LossChoice | None  # None: the preset's
    rationales: dict | None  # RationaleSettings' fields; None: off
    allow_duplicate: bool


def header() -> None:
    st.title("Distillation runs")
    dev = describe_device()
    st.caption(
        f"Runs on **{md(dev['name'])}**"
        + (f" ({dev['memory_gb']} GB)" if dev["device"] == "cuda" else f" with {dev['threads']} threads")
        + ". Runs keep going when you close the browser; one run uses the device at a time, others queue."
    )


def teacher_choices(sel: state.Selection) -> dict[str, str]:
    """The sidebar's teacher, and the reference teacher where it is another."""
    reference_teacher = state.reference_teacher()
    options = {"sidebar": f"The sidebar's teacher · {state.model_label(sel.teacher.source)}"}
    if reference_teacher and sel.teacher.source != reference_teacher:
        reference_option = {"reference": "Reference teacher: MiniLM fine-tuned on the MC demo"}
        # offered first only in place of a built-in (whose task head is untrained): a teacher the user picked, such
        # as the sentiment reference teacher, stays the default
        first_reference = sel.teacher.source in BUILTINS
        options = {**reference_option, **options} if first_reference else {**options, **reference_option}
    return options


def choose_preset() -> str:
    """A paper's set-up, or the user's own settings; what differs from the paper when it runs here."""
    preset_name = st.selectbox(
        "Start from",
        [PLAIN] + list(PRESETS),
        key="run_preset",
        format_func=lambda n: "my own settings (below)" if n == PLAIN else f"{PRESETS[n].title} · {PRESETS[n].label}",
        help="Paper presets carry the losses, optimiser and schedule of a paper's code; teacher, student and data "
        "default to the offline demo.",
    )
    preset = PRESETS.get(preset_name)
    if preset:
        st.caption(f"**{preset.label}** · source: {preset.source}")
        if preset.differences:
            with st.expander(f"What differs from the paper when this preset runs here ({len(preset.differences)})"):
                for d in preset.differences:
                    st.markdown(f"- {d}")
                st.markdown("- any value you change in the form below (the run's name lists your edits)")
    return preset_name


def _own_losses(K: str) -> LossChoice:
    st.markdown("**Loss terms** (weight 0 = off)")
    per_row = 6  # wide enough for a name such as "skew_kl" on one line (13 in one row broke them mid-word)
    names = ["ce", *LOSSES]
    cols = [c for i in range(0, len(names), per_row) for c in st.columns(per_row)][: len(names)]
    weights = {"ce": cols[0].number_input("ce", 0.0, 10.0, 0.5, 0.1)}
    for col, (key, spec) in zip(cols[1:], LOSSES.items()):
        weights[key] = col.number_input(key, 0.0, 10.0, 0.5 if key == "kl" else 0.0, 0.1, help=spec.description)
    with st.expander("Loss parameters (used by the terms with a weight)"):
        params = loss_param_inputs(LOSSES, key_prefix=K + "param_")
        own_reference = [k for k, spec in LOSSES.items() if spec.reference_tau is not None]
        every_term_at_tau = st.checkbox(
            f"Train {', '.join(own_reference)} at the run's τ and τ² too (off: at their reference's τ 1, no τ²)",
            key=K + "every_term_at_tau",
            help="off: these objectives train at the temperature their authors' code uses (τ 1, no τ² factor); "
            "on: every distillation term shares the run's τ and Hinton's τ², to compare objectives at one "
            "temperature",
        )
    return LossChoice({k: float(w) for k, w in weights.items()}, params, own_reference if every_term_at_tau else [])


def _schedule(defaults: TrainConfig, base: TrainConfig | None, K: str) -> tuple[dict, str, int]:
    """Temperature, optimiser, schedule, evaluation, device and teacher cache (as a run config), the seeds of a
    group, and the labelled examples."""
    c1, c2, c3, c4, c5, c6 = st.columns(6)
    own_tau = base is not None and bool(base.kd_terms) and all(t.tau is not None for t in base.kd_terms)
    tau = c1.number_input(
        "τ",
        0.1,
        20.0,
        float(defaults.tau),
        0.5,
        key=K + "tau",
        disabled=own_tau,
        help="every term of this preset has its own τ (table above)"
        if own_tau
        else "the run's temperature, with Hinton's τ² factor; terms with their own τ keep theirs, and so do the "
        "objectives that train at their reference's τ (see Loss parameters)",
    )
    lr = c2.number_input("learning rate", 1e-7, 1.0, float(defaults.lr), format="%.1e", key=K + "lr")
    epochs = c3.number_input("epochs (0: use steps)", 0.0, 1000.0, float(defaults.epochs or 0), 1.0, key=K + "epochs")
    steps = c4.number_input("steps", 1, 100_000, int(defaults.steps), key=K + "steps")
    batch = c5.number_input("batch", 1, 512, int(defaults.batch_size), key=K + "batch")
    eval_every = c6.number_input("eval every", 1, 100_000, int(defaults.eval_every), key=K + "eval_every")
    c1, c2, c3, c4, c5, c6 = st.columns(6)
    eval_size = c1.number_input("eval examples", 1, 10_000, int(defaults.eval_size), key=K + "eval_size")
    accum = c2.number_input("grad accumulation", 1, 128, int(defaults.grad_accum), key=K + "accum")
    seed = c3.number_input("seed", 0, 2**31 - 1, int(defaults.seed), key=K + "seed")
    precision = c4.selectbox("precision", ["auto", "fp32", "bf16", "fp16"], key=K + "precision")
    device = c5.selectbox("device", ["auto", "cpu", "cuda"], key=K + "device")
    topk = c6.number_input(
        "LM teacher top-k (0: exact online mode)",
        0,
        1_000_000,
        int(defaults.teacher_topk or 0),
        key=K + "topk",
        help="language models: the teacher is cached as its top-k log-probabilities per answer "
        f"token plus one tail bucket for the rest ({bytes_per_token(64)} bytes per token at "
        "k = 64, 8·k + 8 per temperature in general; a full 49k-token row would be 196 KB). At τ > 1 the top-k "
        "keep little of the teacher (SmolLM2, τ 2: 44% of its mass is outside the top 64). "
        "0: the exact online mode (teacher_cache none): nothing cached, the teacher runs every step and every "
        "loss sees both full distributions, computed a block of answer positions at a time.",
    )
    c1, c2 = st.columns(2)
    seeds_text = c1.text_input(
        "seeds for a run group (e.g. 0,1,2; empty: one run)",
        key=K + "seeds",
        help="one run per seed, all scored on the same held-out examples (the seed above "
        "fixes the split); the Compare page shows the group as one bar with its band "
        "across seeds and compares groups with paired statistics",
    )
    labels = c2.number_input(
        "labelled examples (0: every label)",
        0,
        1_000_000,
        int(defaults.labels or 0),
        key=K + "labels",
        help="the few-label regime: only this many training examples keep their labels; the "
        "rest are an unlabelled transfer set that only distillation terms see",
    )
    settings = {
        "tau": float(tau),
        "lr": float(lr),
        "epochs": float(epochs) or None,
        "steps": int(steps),
        "batch_size": int(batch),
        "eval_every": int(eval_every),
        "eval_size": int(eval_size),
        "grad_accum": int(accum),
        "seed": int(seed),
        "precision": precision,
        "device": device,
        "teacher_topk": int(topk) or None,
        "teacher_cache": "topk" if int(topk) else "none",
    }
    return settings, seeds_text, int(labels)


def _rationale_inputs(store: RunStore) -> dict | None:
    with st.expander("Rationales (Ballout et al. 2024): also train on the teacher's top-k salient words"):
        r1, r2, r3, r4, r5 = st.columns([1, 1, 1, 1, 2])
        r_mode = r1.selectbox(
            "Use rationales",
            ["off", "multitask", "append"],
            help="multitask: a [rationale] task learns the teacher's words (decoders generate "
            "them, encoders tag them), loss += λ·rationale; inference needs no teacher. "
            "append: the words are appended to the input, at evaluation too (from the "
            "teacher's own prediction, never the gold answer).",
        )
        r_weight = r2.number_input("λ", 0.0, 10.0, 1.0, 0.1, help="weight of the rationale loss (multitask)")
        r_k = r3.number_input("k words", 1, 50, 5)
        r_method = r4.selectbox("Attribution", list(METHODS), format_func=lambda m: METHODS[m].title)
        jobs = [j for j in store.list(kind=RATIONALES) if j.state == "finished"]
        r_source = r5.selectbox(
            "Reuse attributions from",
            [None] + [j.run_id for j in jobs],
            format_func=lambda j: "compute them at the start of the run" if j is None else j,
            help="a finished rationales job (Saliency rationales page) for the same teacher "
            "and method; examples it lacks are attributed at the start",
        )
    if r_mode == "off":
        return None
    return {"mode": r_mode, "weight": float(r_weight), "k": int(r_k), "method": r_method, "source_run": r_source}


def _on_policy_inputs(defaults: TrainConfig, K: str) -> dict | None:
    with st.expander(
        "On-policy (GKD, Agarwal et al. 2024): language models, the student answers and the teacher scores"
    ):
        o1, o2, o3 = st.columns(3)
        on_policy = o1.number_input(
            "λ: share of on-policy batches",
            0.0,
            1.0,
            float(defaults.on_policy.fraction if defaults.on_policy else 0.0),
            0.1,
            key=K + "on_policy",
            help="each batch is, with this probability, replaced by answers the student samples to the same "
            "prompts; the teacher scores every generated token and CE is skipped on it. 0: off-policy (the data "
            "set's answers). Pair it with a divergence such as gjsd (GKD's) or rkl.",
        )
        on_temp = o2.number_input("sampling temperature", 0.05, 5.0, 1.0, 0.05, key=K + "on_temp")
        on_tokens = o3.number_input("answer tokens sampled", 1, 512, 32, key=K + "on_tokens")
        o4, o5, _ = st.columns(3)
        on_top_p = o4.number_input(
            "top-p (1: off)", 0.01, 1.0, 1.0, 0.05, key=K + "on_top_p", help="nucleus sampling; 1 samples everything"
        )
        on_top_k = o5.number_input(
            "top-k (0: off)",
            0,
            100_000,
            0,
            key=K + "on_top_k",
            help="0 samples the student's whole distribution, as GKD and TRL do (transformers would otherwise cut "
            "to its top 50)",
        )
        st.caption(
            "The student samples softmax(logits / temperature) with exactly these settings: no repetition penalty, "
            "and none of the checkpoint's own generation settings. It then trains on the token ids it sampled."
        )
    if on_policy <= 0:
        return None
    return {
        "fraction": float(on_policy),
        "temperature": float(on_temp),
        "top_p": float(on_top_p),
        "top_k": int(on_top_k),
        "max_new_tokens": int(on_tokens),
    }


def _form_defaults(sel: state.Selection, base: TrainConfig | None) -> TrainConfig:
    """The preset's config, or a short CE + KL run of the sidebar's teacher."""
    return base or TrainConfig(
        teacher=sel.teacher,
        losses=[LossTerm("ce", 0.5), LossTerm("kl", 0.5)],
        lr=1e-4,
        steps=80,
        eval_every=20,
        eval_size=52,
    )


def run_form(sel: state.Selection, preset_name: str, store: RunStore) -> RunForm | None:
    """The New run form, filled from the preset (per-preset widget keys: picking another preset refills it); what
    it held when Start run was clicked, else None. Enter in a field does not submit: a number confirmed with Enter
    started a run (and a second click then met "identical run already running"); only the button starts one."""
    preset = PRESETS.get(preset_name)
    base = preset.config() if preset else None
    defaults = _form_defaults(sel, base)
    K = f"{preset_name}_"
    with st.form("new_run", enter_to_submit=False):
        st.subheader("New run")
        c1, c2 = st.columns([2, 1])
        choices = teacher_choices(sel)
        if preset:
            models = c1.radio(
                "Teacher, student and data",
                ["preset", "sidebar"],
                key=K + "models",
                horizontal=True,
                format_func=lambda m: {
                    "preset": f"the preset's: {md(state.model_label(base.teacher.source))} → {md(base.student.describe())} on {md(base.data)}",
                    "sidebar": f"the sidebar's: {md(state.model_label(sel.teacher.source))} on {md(describe_data(sel.data_source))}",
                }[m],
            )
            teacher_choice = None
        else:
            models = "sidebar"
            teacher_choice = c1.selectbox("Teacher", list(choices), format_func=choices.get)
            st.caption(
                f"Student: {md(sel.student.describe())} · data: {md(describe_data(sel.data_source))} (change them in "
                "the sidebar)"
            )
        name = c2.text_input("Name", placeholder="e.g. KL τ=2", key=K + "name")
        if base is not None:
            st.markdown("**Loss terms** (the preset's; each term at its own temperature)")
            st.dataframe(pd.DataFrame(shown_cells(loss_rows(base))), hide_index=True, width="stretch")
            losses = None
        else:
            losses = _own_losses(K)
        settings, seeds_text, labels = _schedule(defaults, base, K)
        c1, c2 = st.columns(2)
        use_lora = c1.checkbox("LoRA", value=defaults.lora is not None, key=K + "lora")
        lora_r = c2.number_input("LoRA r", 1, 256, int(defaults.lora.r if defaults.lora else 8), key=K + "lora_r")
        rationales = _rationale_inputs(store) if preset is None else None
        on_policy = _on_policy_inputs(defaults, K)
        f1, f2 = st.columns([1, 3])
        submitted = f1.form_submit_button("Start run", type="primary")
        allow_duplicate = f2.checkbox(
            "start it even if an identical run is queued or running",
            key=K + "dup",
            help="a second click on Start run would start the same run twice; identical active runs are refused "
            "unless ticked",
        )

    if not submitted:
        return None
    settings.update(on_policy=on_policy, labels=labels or None)
    return RunForm(
        models,
        teacher_choice,
        name,
        settings,
        bool(use_lora),
        int(lora_r),
        seeds_text,
        losses,
        rationales,
        bool(allow_duplicate),
    )


def start_from_form(form: RunForm, sel: state.Selection, preset_name: str, store: RunStore) -> None:
    """Start the run (or one per seed) the form describes, unless an identical one is already active."""
    preset = PRESETS.get(preset_name)
    base = preset.config() if preset else None
    defaults = _form_defaults(sel, base)
    settings = dict(form.settings)
    try:
        use_lora, lora_r = form.use_lora, form.lora_r
        if use_lora != (defaults.lora is not None) or (use_lora and lora_r != defaults.lora.r):
            settings["lora"] = {"r": lora_r, "alpha": 2 * lora_r} if use_lora else None
        if form.models == "sidebar":
            teacher = (
                ModelSpec(state.reference_teacher(), task="multiple_choice")
                if form.teacher_choice == "reference"
                else sel.teacher
            )
            settings.update(teacher=teacher.to_dict(), student=sel.student.to_dict(), data=sel.data_source)
        if preset:
            edits = changed_settings(base, settings)
            cfg = preset_config(preset.name, settings)
            cfg.name = form.name.strip() or (base.name + (f" · edited: {', '.join(edits)}" if edits else ""))
        else:
            cfg = TrainConfig(
                teacher=ModelSpec.from_dict(settings.pop("teacher")),
                student=StudentSpec.from_dict(settings.pop("student")),
                data=settings.pop("data"),
                name=form.name.strip(),
                losses=form.losses.terms(settings["tau"]) if form.losses else [],
                lora=(LoraSettings(r=int(lora_r), alpha=2 * int(lora_r)) if use_lora else None),
                rationales=RationaleSettings(**form.rationales) if form.rationales else None,
                on_policy=OnPolicySettings(**settings["on_policy"]) if settings.get("on_policy") else None,
                **{k: v for k, v in settings.items() if k not in ("lora", "on_policy")},
            )
            cfg.validate()
            if cfg.rationales and cfg.rationales.source_run:
                source = cfg.rationales.source_run
                check_source_run(source, cfg.teacher.source, cfg.rationales.method, store.folder(source))
            if not cfg.name:
                cfg.name = cfg.auto_name(with_seed=not form.seeds_text.strip())
        seeds = parse_seeds(form.seeds_text) if form.seeds_text.strip() else None
        configs = group_configs(cfg.to_dict(), seeds) if seeds else [cfg.to_dict()]
        twin = None if form.allow_duplicate else next(filter(None, (active_twin(store, c) for c in configs)), None)
        # shown by refused_notice, for this form (another preset's form is another submit)
        st.session_state["refused_twin"] = (twin, preset_name) if twin else None
        if twin is None and seeds:
            ids = start_group(cfg.to_dict(), seeds, store)
            st.session_state["watch_run"] = ids[0]
            st.success(
                f"Started the group {md(configs[0]['group'])}: {len(ids)} runs (seeds "
                f"{', '.join(map(str, seeds))}), queued one after another. Compare runs › Groups shows them "
                "as one bar with its band.",
                icon=":material/play_circle:",
            )
        elif twin is None:
            run = start_run(cfg.to_dict(), store, name=cfg.name)
            st.session_state["watch_run"] = run.run_id
            st.success(f"Started {md(run.run_id)}", icon=":material/play_circle:")
    except KDLensError as exc:
        st.error(md(exc), icon=":material/error:")
    except Exception as exc:  # never a traceback on the page
        show_error(exc)


@st.fragment(run_every=2)
def refused_notice(store: RunStore) -> None:
    """Why the last submit started nothing, re-checked every 2 s: once the identical run ends the notice says so
    (a warning drawn once stayed after the run it named had finished)."""
    refused = st.session_state.get("refused_twin")
    if not refused or refused[1] != st.session_state.get("run_preset"):
        return
    twin = refused[0]
    try:
        now = store.get(twin).status().get("state")
    except (KDLensError, OSError, ValueError):  # deleted since, or a status file mid-write
        now = None
    if now in ("queued", "running"):
        st.warning(
            f"Not started: the identical run {md(twin)} is {now} (a second submit of the same form). "
            "Change a setting, or tick *start it even if an identical run is queued or running*.",
            icon=":material/content_copy:",
        )
    else:
        st.info(
            f"The identical run {md(twin)} that stopped your last submit has ended"
            + (f" ({now})" if now else "")
            + "; Start run would start yours now.",
            icon=":material/info:",
        )


def _fmt_eta(seconds):
    if seconds is None:
        return ""
    m, s = divmod(int(seconds), 60)
    return f" · ETA {m}m{s:02d}s" if m else f" · ETA {s}s"


@st.fragment(run_every=2)
def live_runs(store: RunStore) -> None:
    """The user's runs with progress, Cancel and Watch, then the watched run, refreshed every 2 s."""
    runs = [r for r in store.list(kind="train") if not r.reference]
    active = [r for r in runs if r.state in ("queued", "running")]
    st.subheader(f"Your runs ({len(active)} active)")
    if not runs:
        st.info("No runs yet: start one above. Reference runs are on the Compare runs page.", icon=":material/info:")
        return
    watch = st.session_state.get("watch_run") or runs[0].run_id
    if watch not in {r.run_id for r in runs}:
        watch = runs[0].run_id
    for summary in runs[:8]:
        p = run_progress(store.get(summary.run_id))
        c1, c2, c3 = st.columns([5, 2, 1])
        label = f"**{md(p.name)}** · {code(p.run_id)} · {p.state}"
        if p.state == "running" and p.total:
            c1.progress(p.fraction, text=f"{label} · step {p.step}/{p.total}{_fmt_eta(p.eta_s)}{phase_text(p)}")
        else:
            c1.markdown(label + (f" · step {p.step}" if p.step else "") + phase_text(p))
            if p.reason:
                c1.caption(md(p.reason))
        if origin_kind(store.get(summary.run_id).config()) is not None:
            c1.caption(md(origin_words(store.get(summary.run_id).config())))
        if p.skipped_lines:
            c1.caption(f"{p.skipped_lines} unreadable metrics line(s) skipped (see `runs show {p.run_id}`)")
        c2.markdown(md(latest_eval_words(store.get(summary.run_id), p)))
        if p.state in ("queued", "running") and c3.button("Cancel", key=f"cancel_{p.run_id}"):
            cancel_run(store, p.run_id, wait_s=5)
            st.rerun(scope="fragment")
        if c3.button("Watch", key=f"watch_{p.run_id}"):
            st.session_state["watch_run"] = p.run_id
            watch = p.run_id
    state.write_url_state("watch", watch)  # a copied link reopens this run
    watched_run(store.get(watch))


def watched_run(run) -> None:
    """One run: its warnings, loss and evaluation curves, loss balance, TAID schedule and log."""
    p = run_progress(run)
    st.subheader(f"Watching {md(p.name)}")
    if origin_kind(run.config()) is not None:  # trained elsewhere: say so, and what the pages cannot show
        words = origin_words(run.config())
        st.caption(md(words[:1].upper() + words[1:] + "."))
        for line in missing_words(run):
            st.caption(md(f"It has {line}."))
    if (run.path / layout.PREDICTIONS).is_file():
        st.page_link(
            "pages/error_analysis.py",
            label="Analyse the errors of this run",
            icon=":material/rule:",
            query_params={"run": run.run_id},
        )
    metrics = run.metrics()
    records = [m for m in metrics if "loss" in m]
    evals = eval_rows(metrics)
    said = run.status().get("warnings")
    for w in said if isinstance(said, list) else []:  # what the run decided for you (a smaller held-out set, ...)
        st.warning(md(str(w)), icon=":material/warning:")
    if records or evals:
        left, right = st.columns(2)
        if records:
            left.plotly_chart(run_losses(records), width="stretch", config=PNG)
        if evals:
            right.plotly_chart(
                eval_curves(evals, "Evaluation (dashed: the teacher)"),
                width="stretch",
                config=PNG,
            )
            st.dataframe(pd.DataFrame(shown_cells(eval_table(evals, metrics))), hide_index=True, width="stretch")
    if records:
        balance = balance_report(records, run.config())
        if balance["monitored_steps"]:
            if balance["imbalance"]:
                st.warning(f"{md(balance['imbalance']['message'])} (step {balance['imbalance']['step']})")
            st.plotly_chart(
                balance_curves(balance["series"], balance["weights"]),
                width="stretch",
                config=PNG,
            )
        else:
            st.caption("No loss-balance data: this run was made before the monitor existed, or with balance_every 0.")
        if any("taid_t" in r for r in records):
            st.plotly_chart(taid_curve(records), width="stretch", config=PNG)
    with st.expander("Log", expanded=p.state == "failed"):
        st.code(run.log_tail(40) or "(empty)", language=None)


def render() -> None:
    store = RunStore()
    reconcile(store)  # re-attach: runs whose worker died since we last looked are marked failed
    sel = state.selection()
    state.url_state("watch", "watch_run", valid=lambda r: (store.folder(r) / layout.STATUS).is_file())
    header()
    preset_name = choose_preset()
    form = run_form(sel, preset_name, store)
    if form is not None:
        start_from_form(form, sel, preset_name, store)
    refused_notice(store)
    live_runs(store)


render()
