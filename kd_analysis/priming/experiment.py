"""A priming experiment: one student run per strategy from a shared base config, and the accuracy table.

Relative gain is against the `none` strategy's student (distillation without priming), as in the paper, and is
given only when the two 95% Wilson intervals do not overlap. The paper's own GSM8K numbers come from another scale
of model and data: they are a separate reference table (`paper_reference`), never a column of ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from kd_analysis.exceptions import KDLensError
from kd_analysis.models.specs import ModelSpec, StudentSpec
from kd_analysis.prompting.strategies import PAPER_ACCURACY, STRATEGIES
from kd_analysis.runs.kinds import TRAIN
from kd_analysis.stats.intervals import wilson_interval
from kd_analysis.training.config import LoraSettings, LossTerm, PrimingSettings, TrainConfig


def priming_base_config(
    teacher: str,
    data: str,
    student: StudentSpec,
    *,
    ce_weight: float = 0.6,
    kd_loss: str = "rkl",
    kd_weight: float = 0.4,
    lora: LoraSettings | None = None,
    **settings: Any,
) -> TrainConfig:
    """The config every strategy's student starts from (the page, `prime start` and the reference runs): a causal
    LM teacher, a loss mix near the paper's (ours: 0.6·CE + 0.4·reverse KL at the run's τ by default, where the
    authors' code has 0.6093·CE + 0.3907·T²·reverse KL at T 5.9423 — the `goyal-priming` preset; weight 0 drops a
    term) and a LoRA student (r 8, α 16 unless `lora` says otherwise; theirs r 4, α 8). `settings` are any other
    TrainConfig fields."""
    losses = [t for t in (LossTerm("ce", ce_weight), LossTerm(kd_loss, kd_weight)) if t.weight > 0]
    return TrainConfig(
        teacher=ModelSpec(teacher, task="causal_lm"),
        data=data,
        student=student,
        losses=losses,
        lora=lora or LoraSettings(r=8, alpha=16),
        **settings,
    )


def strategy_configs(
    base: TrainConfig, strategies: Sequence[str], templates: dict[str, str] | None = None, alignment: str = "answer"
) -> list[TrainConfig]:
    """One config per strategy, identical but for the priming settings (and the name)."""
    if not strategies:
        raise KDLensError("choose at least one strategy")
    templates = templates or {}
    out = []
    for s in strategies:
        if s not in STRATEGIES:
            raise KDLensError(f"unknown strategy {s!r}; one of {', '.join(STRATEGIES)}")
        edited = templates.get(s)
        custom = edited if edited and edited != STRATEGIES[s].template else None
        cfg = replace(
            base,
            priming=PrimingSettings(strategy=s, template=custom, alignment=alignment),
            name=f"{base.name + ': ' if base.name else ''}priming {s}{' (edited)' if custom else ''}",
        )
        cfg.validate()
        out.append(cfg)
    return out


def _at_start(metrics: list[dict], key: str) -> float | None:
    return next((m[key] for m in metrics if m.get("step") == 0 and key in m), None)


def _final(metrics: list[dict], key: str) -> float | None:
    vals = [m[key] for m in metrics if m.get(key) is not None]
    return vals[-1] if vals else None


def gain_vs_none(row: dict[str, Any], base: dict[str, Any] | None) -> tuple[float | None, str]:
    """Relative gain of one row over the `none` student's row, and the text a table shows for it. The number is
    given only when the two 95% Wilson intervals do not overlap; otherwise it is None and the text says
    "not distinguishable at n = N" (N: held-out questions)."""
    if base is None:
        return None, "no finished none run"
    if row is base:
        return None, "baseline"
    acc, ref = row.get("student exact match"), base["student exact match"]
    if acc is None:
        return None, "n/a"
    if None in (row.get("95% low"), row.get("95% high"), base.get("95% low"), base.get("95% high")):
        return None, "n/a (no held-out count)"
    n, n_base = row.get("eval questions"), base.get("eval questions")
    if not (row["95% low"] > base["95% high"] or row["95% high"] < base["95% low"]):
        return None, f"not distinguishable at n = {n}" + (f" (none: {n_base})" if n_base != n else "")
    if not ref:
        return None, f"{(acc - ref) * 100:+.0f} points (the none student is at 0%: no relative gain)"
    gain = (acc - ref) / ref
    return gain, f"{gain:+.0%}"


def accuracy_table(store, run_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Per priming run: strategy, student and teacher exact match with the student's 95% Wilson interval and the
    number of held-out questions, the students' gold-answer NLL (moves long before exact match does), and the
    gain relative to the `none` student where the intervals support one ("gain vs none", else None; the text to
    show is "gain vs none note"). Our results only: the paper's numbers are `paper_reference()`."""
    rows = []
    for rid in run_ids:
        run = store.get(rid)
        cfg = run.config()
        priming = cfg.get("priming") or {}
        if not priming:
            continue
        metrics = run.metrics()  # read once: the page redraws this table every few seconds
        acc = _final(metrics, "eval_exact_match")
        n = _at_start(metrics, "held_out") or 0
        low, high = wilson_interval(acc, n) if acc is not None and n else (None, None)
        rows.append(
            {
                "run": rid,
                "strategy": priming.get("strategy"),
                "edited template": bool(priming.get("template")),
                "state": run.status().get("state"),
                "student exact match": acc,
                "95% low": low,
                "95% high": high,
                "eval questions": n or None,
                "student before": _at_start(metrics, "eval_exact_match"),
                "student answer NLL": _final(metrics, "eval_answer_nll"),
                "NLL before": _at_start(metrics, "eval_answer_nll"),
                "teacher exact match": _final(metrics, "teacher_exact_match"),
            }
        )
    base = next((r for r in rows if r["strategy"] == "none" and r["student exact match"] is not None), None)
    for r in rows:
        r["gain vs none"], r["gain vs none note"] = gain_vs_none(r, base)
    return rows


# Goyal et al.'s GSM8K test results (docs/methods.md §2): which of our strategies each matches, and where the number is from
PAPER_SETUP = (
    "Goyal et al. 2024, Llama-3.1-405B-Instruct teacher → Llama-3.1-8B-Instruct student (LoRA), GSM8K "
    "test, 1319 questions"
)
PAPER_QUESTIONS = 1319
_PAPER_ROWS = (  # (key in PAPER_ACCURACY, our strategy or None, the paper's name, correct in the repo's logs, note)
    ("no distillation", None, "no distillation (8B student as is)", 161, "repo logs: 161 / 1319"),
    (
        "fine-tune (CE only)",
        None,
        "LoRA fine-tune (CE only)",
        None,
        "paper text; the repo's fine-tune log has 303 / 1319 = 23.0%",
    ),
    ("none", "none", "base KD (no prompt)", 404, "repo logs: 404 / 1319"),
    ("confidence", "confidence", "Confidence", None, "paper text (not in the repo's logs)"),
    ("teacher", "teacher", "Teacher", 558, "repo logs: 558 / 1319"),
    ("ai_to_ai", "ai_to_ai", "Ground Truth", 635, "repo logs: 635 / 1319"),
)


def paper_reference() -> list[dict[str, Any]]:
    """The paper's GSM8K accuracies as a reference table of its own (another teacher, student and data set than
    any run here: never a column of `accuracy_table`): our strategy name (None where we have no counterpart), the
    paper's name, accuracy with its 95% Wilson interval over the 1319 test questions, where the number comes from
    ("note") and the full source (set-up and note)."""
    rows = []
    for key, strategy, name, correct, note in _PAPER_ROWS:
        acc = PAPER_ACCURACY[key]
        low, high = wilson_interval(correct / PAPER_QUESTIONS if correct is not None else acc, PAPER_QUESTIONS)
        rows.append(
            {
                "strategy": strategy,
                "paper name": name,
                "GSM8K accuracy": acc,
                "95% low": low,
                "95% high": high,
                "questions": PAPER_QUESTIONS,
                "correct (repo logs)": correct,
                "note": note,
                "source": f"{PAPER_SETUP}; {note}",
            }
        )
    return rows


def priming_runs(store) -> list[str]:
    """Finished or live priming runs in the store, newest first."""
    return [s.run_id for s in store.list(kind=TRAIN) if (store.get(s.run_id).config().get("priming"))]
