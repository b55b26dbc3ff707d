"""The distillation loop, written on accelerate: CPU, one GPU in bf16, or many through `accelerate launch`.

One step: student outputs (grad) -> CE on gold labels + weighted KD terms against cached teacher outputs ->
accelerate's backward / accumulate / step. Metrics go to a callback (the worker writes them to the run folder)
and to accelerate's trackers when `report_to` names installed ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import torch

from kd_analysis.exceptions import KDLensError
from kd_analysis.losses import LOSSES
from kd_analysis.losses.chunked_head import Head, Term, chunked_head_loss
from kd_analysis.losses.registry import reduction_weights
from kd_analysis.runs import layout
from kd_analysis.training import shared_teacher
from kd_analysis.training.balance import imbalance, record_norms, term_grad_norms
from kd_analysis.training.batches import AnswerRows, LMBatch, head_parts
from kd_analysis.training.config import TrainConfig
from kd_analysis.training.evaluate import evaluate
from kd_analysis.training.forward import student_outputs, teacher_forward, teacher_rows
from kd_analysis.training.objective import ce_loss, cross_vocab_terms, kd_loss_terms
from kd_analysis.training.run_prompts import teacher_prompt
from kd_analysis.training.session import Callback, Cancelled, Session, Stopped, set_up
from kd_analysis.training.setup import point_adapter_at
from kd_analysis.training.teacher_cache import TeacherCache


@dataclass
class TrainResult:
    state: str  # finished | cancelled
    steps: int
    metrics: dict[str, Any] = field(default_factory=dict)
    evals: list[dict[str, Any]] = field(default_factory=list)
    teacher_eval: dict[str, Any] | None = None
    checkpoint: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train(
    cfg: TrainConfig,
    *,
    out_dir: str | Path | None = None,
    on_metrics: Callback | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    models: tuple | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> TrainResult:
    """Run one distillation (or teacher fine-tuning) as configured; returns what it reached. Progress lines go
    to this module's logger (`kd_analysis.logs.lines_to` picks where); `on_phase` hears what the run does between
    logged steps (an evaluation that generates, token by token)."""
    try:
        session = set_up(cfg, out_dir, on_metrics, should_stop, models)
    except Cancelled as cancelled:  # while the teacher's rationales were computed
        return TrainResult(state="cancelled", steps=0, warnings=cancelled.warnings)
    if on_phase is not None:
        session.reports.phase = on_phase
    evals: list = []
    try:
        session.reports.phase("evaluating the teacher at step 0")
        teacher_eval = _evaluate_teacher(session)
        session.reports.phase("evaluating the student at step 0")
        evals.append({"step": 0, **_evaluate_student(session, 0, first=True)})
        state, step, last = _optimise(session, should_stop, evals)
    except Stopped as stopped:
        session.reports.say(f"cancelled while {stopped}")
        return TrainResult(state="cancelled", steps=session.step, evals=evals, warnings=session.reports.warnings)
    checkpoint = _save_checkpoint(session) if state == "finished" else None
    session.acc.wait_for_everyone()
    if session.reports.trackers:
        session.acc.end_training()
    return TrainResult(
        state=state,
        steps=step,
        metrics=last,
        evals=evals,
        teacher_eval=teacher_eval,
        checkpoint=checkpoint,
        warnings=session.reports.warnings,
    )


def _evaluate_teacher(s: Session) -> dict | None:
    """The frozen teacher on the eval set at step 0 (shared between make-reference students of one teacher)."""
    if s.cfg.train_teacher:
        return None
    cfg, teacher = s.cfg, s.pair.teacher

    def teacher_pass() -> tuple[dict, list]:
        records: list = []
        return evaluate(
            teacher,
            s.data.teacher_eval,
            cfg,
            prompt=teacher_prompt(cfg, teacher),
            records=records,
            on_token=s.generation_hook("evaluating the teacher at step 0"),
        ), records

    key = None if cfg.priming or cfg.rationales else s.shared_key
    teacher_eval, t_records = shared_teacher.shared_eval(key, [ex.id for ex in s.data.teacher_eval], teacher_pass)
    s.teacher_probs = {r.example_id: r.probs for r in t_records if r.probs is not None}
    s.save_records(t_records, "teacher", 0)
    s.reports.say(f"teacher on the eval set: {teacher_eval}")
    s.reports.emit({"step": 0, **{f"teacher_{k}": v for k, v in teacher_eval.items()}})
    return teacher_eval


def _evaluate_student(s: Session, step: int, first: bool = False) -> dict:
    """The live model on the eval set; per-example records at the last step (every evaluation when asked)."""
    keep = s.cfg.records_every_eval or (step == s.schedule.total and not first)
    records: list | None = [] if keep else None

    def student_pass() -> tuple[dict, list]:
        return evaluate(
            s.pair.live,
            s.data.eval,
            s.cfg,
            unwrap=s.acc.unwrap_model,
            prompt=s.pair.student_prompt,
            records=records,
            teacher_probs=s.teacher_probs,
            teacher_lm=s.pair.teacher_lm if (records is not None or first) else None,
            on_token=s.generation_hook(f"evaluating the student at step {step}"),
        ), []

    shared = first and records is None  # make-reference: students identical at step 0 share their first evaluation
    key = shared_teacher.student_start_key(s.cfg) if shared else None
    ev = dict(shared_teacher.shared_eval(key, [ex.id for ex in s.data.eval], student_pass)[0])
    if records:
        s.save_records(records, s.live_role, step)
    if first:
        s.reports.emit(
            {
                "step": 0,
                "held_out": len(s.data.eval),
                "train_examples": len(s.data.train),
                **({"labelled": len(s.data.labelled)} if s.data.labelled is not None else {}),
                **{f"eval_{k}": v for k, v in ev.items()},
            }
        )
    return ev


def student_answers(s: Session, examples: list) -> tuple[list, dict[str, list[int]]]:
    """The batch with each answer replaced by one the student samples to the same prompt (GKD's on-policy data):
    the examples with the decoded text (for logs and records) and, by example id, the sampled token ids the
    student and a same-tokenizer teacher then read."""
    from kd_analysis.models.generation import Sampling, generate_ids
    from kd_analysis.models.scoring import mc_prompt

    settings = s.cfg.on_policy
    assert settings is not None
    prompt = s.pair.student_prompt or mc_prompt
    ids = generate_ids(
        s.pair.live,
        [prompt(ex) for ex in examples],
        settings.max_new_tokens,
        len(examples),
        model=s.acc.unwrap_model(s.pair.model),
        sample=Sampling(temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k),
    )
    texts = s.pair.live.tokenizer.batch_decode(ids, skip_special_tokens=True)
    sampled = [
        replace(ex, solution=None, choices=None, label=None, answer=text.strip()) for ex, text in zip(examples, texts)
    ]
    return sampled, {ex.id: row for ex, row in zip(examples, ids)}


def _blockwise_loss(
    s: Session,
    examples: list,
    teacher_examples: list,
    step: int,
    norms: dict[str, float] | None = None,
    with_ce: bool = True,
    answer_ids: dict[str, list[int]] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], Any]:
    """The exact online mode's loss: CE and every KD term from the two models' final hidden states."""
    cfg = s.cfg
    with s.acc.autocast():  # calling the body directly skips the autocast accelerate put on the model's forward
        out = student_outputs(
            cfg, s.pair.live, s.pair.teacher, examples, s.pair.student_prompt, hidden=True, answer_ids=answer_ids
        )
    t_out = teacher_forward(
        cfg,
        s.pair.teacher,
        teacher_examples,
        s.pair.student_prompt,
        s.pair.student.tokenizer,
        hidden=True,
        answer_ids=answer_ids,
    )
    s.cache.misses += len(examples)
    epoch = step // s.schedule.per_epoch
    ce_weight = sum(t.weight for t in cfg.losses if t.name == "ce") if with_ce else 0.0
    terms = [Term("ce", ce_weight)] if ce_weight > 0 else []
    seq = (out.labels != -100).nonzero()[:, 0]  # each target row's sequence, in the rows' order
    for t in cfg.kd_terms:
        tau = cfg.term_tau(t, epoch, s.schedule.n_epochs)
        scale = tau**2 if cfg.term_tau_squared(t) else 1.0
        reduce = LOSSES[t.name].reduce
        weights = None if reduce == "token" else reduction_weights(reduce, seq)
        terms.append(
            Term(t.name, t.weight, tau, scale, {**t.params, **s.schedule.overrides().get(t.name, {})}, weights)
        )
    s_layer = head_parts(s.pair.live.model)[1]  # type: ignore[index]
    t_layer = head_parts(s.pair.teacher.model)[1]  # type: ignore[index]
    width = s.pair.width or min(s_layer.weight.shape[0], t_layer.weight.shape[0])
    loss, values = chunked_head_loss(
        Head(out.target_hidden(), s_layer.weight, s_layer.bias),
        Head(t_out.target_hidden(), t_layer.weight, t_layer.bias),
        out.labels[out.labels != -100],
        terms,
        width=width,
        norms=norms,
    )
    # float64: torch.tensor(float) would round each logged value to float32 (2e-7 at a CE of 5)
    return loss, {k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()}, out


def _loss(
    s: Session, examples: list, step: int, monitor: bool = False
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict, Any]:
    """One batch's weighted loss: CE on gold labels, the KD terms against the teacher, the rationale task. The
    third item holds per-step statistics: tail masses, and with `monitor` each term's `grad_norm_<term>`."""
    cfg = s.cfg
    on_policy = s.schedule.policy_rng is not None and s.schedule.policy_rng.random() < cfg.on_policy.fraction  # type: ignore[union-attr]
    # the teacher and the rationale task read the untouched text; an on-policy batch, the student's own answers
    originals = [s.data.originals[ex.id] for ex in examples]
    answer_ids: dict[str, list[int]] | None = None
    if on_policy:
        examples, answer_ids = student_answers(s, originals)
        originals = examples
    stats: dict[str, float] = {"on_policy_batch": float(on_policy)} if s.schedule.policy_rng is not None else {}
    if s.pair.fused:
        norms: dict[str, float] | None = {} if monitor else None
        loss, values, out = _blockwise_loss(s, examples, originals, step, norms, not on_policy, answer_ids)
        stats.update({f"grad_norm_{k}": v for k, v in (norms or {}).items()})
        return _finite(loss, step), values, stats, out
    out = student_outputs(cfg, s.pair.live, s.pair.teacher, examples, s.pair.student_prompt, answer_ids=answer_ids)
    tail_stats: dict[str, float] = stats
    answer_rows = AnswerRows.of(out) if isinstance(out, LMBatch) else None
    terms: dict[str, torch.Tensor] = {}
    if sum(t.weight for t in cfg.losses if t.name == "ce") > 0 and not on_policy:
        terms["ce"] = ce_loss(out, examples, answer_rows, s.data.labelled)
    if cfg.kd_terms:
        terms.update(_kd_terms(s, out, originals, step, on_policy, answer_ids, answer_rows, tail_stats))
    weights = {t.name: t.weight for t in cfg.losses}
    if monitor:  # before the rationale head joins: its gradient does not pass through the student's output
        logits = out.logits if isinstance(out, LMBatch) else out
        assert logits is not None  # the student's outputs always carry logits outside the block mode
        tail_stats.update({f"grad_norm_{k}": v for k, v in term_grad_norms(terms, logits).items()})
    if s.pair.objective is not None and cfg.rationales is not None:
        terms["rationale"] = s.pair.objective(s.pair.live, originals, s.data.rationales, cfg.max_length)
        weights["rationale"] = cfg.rationales.weight
    loss = cast(torch.Tensor, sum(weights[k] * v for k, v in terms.items()))  # in the terms' order, as always
    return _finite(loss, step), terms, tail_stats, out


def _kd_terms(
    s: Session,
    out: Any,
    originals: list,
    step: int,
    on_policy: bool,
    answer_ids: dict[str, list[int]] | None,
    answer_rows: AnswerRows | None,
    tail_stats: dict[str, float],
) -> dict[str, torch.Tensor]:
    """The KD terms against the teacher: over answer positions aligned by index when the two tokenize apart,
    else from the teacher's rows (cached, or scored afresh for an on-policy batch)."""
    cfg = s.cfg
    if s.pair.cross_vocab:
        if on_policy:
            s.reports.note(
                "on-policy with a cross-tokenizer teacher: the student trains on the token ids it sampled, and the "
                "teacher reads the same answers as text, tokenized by its own tokenizer (the one place where text "
                "is the interface between the two)"
            )
        t_out = teacher_forward(cfg, s.pair.teacher, originals, s.pair.student_prompt, s.pair.student.tokenizer)
        s.cache.misses += len(originals)  # one teacher pass per example of the batch
        return cross_vocab_terms(
            cfg, out, t_out, step // s.schedule.per_epoch, s.schedule.n_epochs, s.schedule.overrides()
        )
    else:
        # sampled answers are new every time: scored by the teacher once, never kept under the example's id
        cache = TeacherCache(s.cache.topk, s.cache.temperatures, keep=False) if on_policy else s.cache
        t_rows = teacher_rows(
            cfg,
            cache,
            s.pair.teacher,
            originals,
            s.pair.width,
            s.pair.student_prompt,
            s.pair.student.tokenizer,
            answer_ids,
        )
        if s.cache.over_budget:
            s.reports.note(
                f"warning: the teacher cache reached its budget ({s.cache.budget_bytes / 2**20:.0f} MB); the "
                "examples it could not keep run the teacher again each time. A smaller teacher_topk keeps more; "
                "teacher_topk null runs the teacher every step and keeps nothing."
            )
        return kd_loss_terms(
            cfg,
            out,
            t_rows,
            s.pair.width,
            rows=answer_rows,
            note=s.reports.note,
            stats=tail_stats,
            epoch=step // s.schedule.per_epoch,
            epochs=s.schedule.n_epochs,
            overrides=s.schedule.overrides(),
        )


def _finite(loss: torch.Tensor, step: int) -> torch.Tensor:
    if not torch.isfinite(loss):
        raise KDLensError(
            f"the loss became {float(loss)} at step {step + 1}: lower the learning rate or the loss weights"
        )
    return loss


def _optimise(s: Session, should_stop: Callable[[], bool], evals: list) -> tuple[str, int, dict]:
    """Steps until `total` (or a stop); returns (state, steps taken, the last step's metrics)."""
    acc, cfg = s.acc, s.cfg
    step, start, last = 0, time.monotonic(), dict[str, Any]()
    while step < s.schedule.total:
        for idx in s.schedule.loader:
            if should_stop():
                acc.set_trigger()  # every rank stops at the same step (`accelerate launch`), not just this one
            if acc.check_trigger():
                return "cancelled", step, last
            examples = [s.data.train[i] for i in idx]
            t0 = time.monotonic()
            monitor = bool(cfg.balance_every) and (step == 0 or (step + 1) % cfg.balance_every == 0)
            with acc.accumulate(s.pair.model):
                loss, terms, tail_stats, out = _loss(s, examples, step, monitor)
                acc.backward(loss)
                if cfg.max_grad_norm and acc.sync_gradients:
                    acc.clip_grad_norm_(s.schedule.params, cfg.max_grad_norm)
                s.schedule.optimizer.step()
                s.schedule.scheduler.step()
                s.schedule.optimizer.zero_grad()
            taid_t = None
            if (
                s.schedule.taid is not None
            ):  # every micro-batch moves t for the next one, as TAID's code does on every forward
                taid_t = s.schedule.taid.t
                s.schedule.taid.update(float(terms["taid"].detach()), step, s.schedule.total)
            if not acc.sync_gradients:
                continue
            step += 1
            s.step = step
            dt = time.monotonic() - t0
            elapsed = time.monotonic() - start
            tokens = out.tokens if isinstance(out, LMBatch) else None
            last = {
                "step": step,
                "total_steps": s.schedule.total,
                "loss": float(loss.detach()),
                **{f"loss_{k}": float(v.detach()) for k, v in terms.items()},
                "lr": s.schedule.scheduler.get_last_lr()[0],
                "examples_per_s": len(examples) / max(dt, 1e-9),
                "tokens_per_s": (tokens / max(dt, 1e-9)) if tokens else None,
                "elapsed_s": elapsed,
                "eta_s": elapsed / step * (s.schedule.total - step),
                "epoch": step / s.schedule.per_epoch,
                "teacher_cache_hits": s.cache.hits,
                **({"taid_t": taid_t} if taid_t is not None else {}),
                **tail_stats,
            }
            _check_balance(s, tail_stats)
            if step % cfg.eval_every == 0 or step == s.schedule.total:
                ev = _evaluate_student(s, step)
                last.update({f"eval_{k}": v for k, v in ev.items()})
                evals.append({"step": step, **ev})
                s.reports.say(f"step {step}/{s.schedule.total}: loss {last['loss']:.4f}, eval {ev}")
            s.reports.emit(last)
            if s.reports.trackers:
                acc.log({k: v for k, v in last.items() if isinstance(v, (int, float))}, step=step)
            if step >= s.schedule.total:
                return "finished", step, last
    return "finished", step, last


def _check_balance(s: Session, stats: dict) -> None:
    """Warn once per pair of terms when one pulls on the student over 100x harder than another."""
    norms = record_norms(stats)
    found = imbalance(norms, {t.name: t.weight for t in s.cfg.losses}) if norms else None
    if found and (found.strong, found.weak) not in s.reports.balance_warned:
        s.reports.balance_warned.add((found.strong, found.weak))
        s.reports.warn(found.message({t.name: t.weight for t in s.cfg.losses}))


def _save_checkpoint(s: Session) -> str | None:
    cfg = s.cfg
    if not (cfg.save_checkpoint and s.reports.out_dir and s.acc.is_main_process):
        return None
    checkpoint = str(Path(s.reports.out_dir) / layout.CHECKPOINT)
    s.acc.unwrap_model(s.pair.model).save_pretrained(checkpoint)  # safetensors; a peft model saves only its adapter
    if not cfg.lora:
        s.pair.student.tokenizer.save_pretrained(checkpoint)
    if cfg.lora and cfg.train_teacher:
        point_adapter_at(Path(checkpoint), cfg.teacher.source)
    s.reports.say(f"saved {'LoRA adapter' if cfg.lora else 'student'} to {checkpoint}")
    return checkpoint
