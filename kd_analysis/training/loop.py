"""The distillation loop, written on accelerate: CPU, one GPU in bf16, or many through `accelerate launch`.

One step: student outputs (grad) -> CE on gold labels + weighted KD terms against cached teacher outputs ->
accelerate's backward / accumulate / step. Metrics go to a callback (the worker writes them to the run folder)
and to accelerate's trackers when `report_to` names installed ones.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from kd_analysis.exceptions import KDLensError
from kd_analysis.losses import LOSSES
from kd_analysis.losses.chunked_head import Head, Term, chunked_head_loss
from kd_analysis.losses.registry import reduction_weights
from kd_analysis.runs import layout
from kd_analysis.runs.records import save_run_records
from kd_analysis.training import shared_teacher
from kd_analysis.training.balance import imbalance, record_norms, term_grad_norms
from kd_analysis.training.batches import (
    AnswerRows,
    LMBatch,
    head_parts,
)
from kd_analysis.training.config import TrainConfig
from kd_analysis.training.evaluate import evaluate
from kd_analysis.training.forward import student_outputs, teacher_forward, teacher_rows
from kd_analysis.training.objective import (
    ce_loss,
    cross_vocab_terms,
    kd_loss_terms,
)
from kd_analysis.training.run_data import (
    prepare_examples,
    text_tokens,
)
from kd_analysis.training.run_prompts import student_prompt_fn, teacher_prompt
from kd_analysis.training.setup import (
    blockwise,
    check_bucketed,
    load_models,
    make_accelerator,
    optimisation,
    pair_for_run,
    point_adapter_at,
    policy_rng,
    taid_schedule,
    tracker_installed,
)
from kd_analysis.training.taid import TaidSchedule
from kd_analysis.training.teacher_cache import TeacherCache, run_temperatures

Callback = Callable[[dict[str, Any]], None]
logger = logging.getLogger(__name__)


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


class _Once:
    """Passes each distinct message to the log once: loss notes repeat every step."""

    def __init__(self, say: Callable[[str], None]):
        self.say, self.seen = say, set()

    def __call__(self, message: str) -> None:
        if message not in self.seen:
            self.seen.add(message)
            self.say(message)


@dataclass
class _Session:
    """What `train` sets up once and every step, evaluation and the checkpoint use."""

    cfg: TrainConfig
    acc: Any
    teacher: Any
    student: Any
    live: Any  # the student as accelerate wrapped it
    model: Any
    optimizer: Any
    sched: Any
    loader: Any
    params: list
    task: str
    width: int | None
    train_set: list
    eval_set: list
    teacher_eval_set: list
    originals: dict
    labelled: set | None
    rationales: dict
    objective: Any
    s_prompt: Any
    cache: TeacherCache
    shared_key: str | None
    note: Callable[[str], None]
    emit: Callback
    say: Callable[[str], None]
    out_dir: str | Path | None
    trackers: list[str]
    total: int
    per_epoch: int
    n_epochs: int
    warnings: list[str]
    lengths: dict[str, int] = field(default_factory=dict)
    fused: bool = False  # exact online mode computed block by block from hidden states (`chunked_head_loss`)
    balance_warned: set = field(default_factory=set)  # (strong, weak) pairs the balance monitor has warned about
    taid: TaidSchedule | None = None  # TAID's interpolation weight, moved after every micro-batch
    policy_rng: random.Random | None = None  # on-policy runs: draws which batches the student answers itself
    cross_vocab: bool = False  # teacher and student tokenize apart: ULD on answer positions aligned by index
    phase: Callable[[str], None] = lambda text: None  # what the run does between logged steps, in words
    should_stop: Callable[[], bool] = lambda: False
    step: int = 0  # optimiser steps taken so far (what a cancel during an evaluation reports)

    def generation_hook(self, label: str) -> Callable[[int, int, int, int], None]:
        """A token hook for an evaluation that generates: says where it is, and stops it within one token when
        the run is cancelled (one process only; several stop together at the next step, `_optimise`)."""

        def hook(done: int, total: int, tokens: int, budget: int) -> None:
            if self.acc.num_processes == 1 and self.should_stop():
                raise _Stopped(label)
            self.phase(f"{label}: {done}/{total} examples done, generating token {tokens} of at most {budget}")

        return hook

    def overrides(self) -> dict[str, dict]:
        """Loss parameters that change during training: TAID's current t."""
        return {"taid": {"taid_t": self.taid.t}} if self.taid is not None else {}

    teacher_probs: dict | None = None
    teacher_lm: tuple | None = None

    @property
    def live_role(self) -> str:
        return "teacher" if self.cfg.train_teacher else "student"

    def save_records(self, records: list, role: str, at_step: int) -> None:
        if self.out_dir and self.acc.is_main_process:
            save_run_records(self.out_dir, records, role=role, step=at_step, data=self.cfg.data, lengths=self.lengths)


class _Stopped(Exception):
    """Cancel pressed during an evaluation: `train` ends the run cancelled, where it was."""


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
    session = _set_up(cfg, out_dir, on_metrics, should_stop, models)
    if isinstance(session, TrainResult):  # cancelled while the teacher's rationales were computed
        return session
    session.should_stop = should_stop
    if on_phase is not None:
        session.phase = on_phase
    evals: list = []
    try:
        session.phase("evaluating the teacher at step 0")
        teacher_eval = _evaluate_teacher(session)
        session.phase("evaluating the student at step 0")
        evals.append({"step": 0, **_evaluate_student(session, 0, first=True)})
        state, step, last = _optimise(session, should_stop, evals)
    except _Stopped as stopped:
        session.say(f"cancelled while {stopped}")
        return TrainResult(state="cancelled", steps=session.step, evals=evals, warnings=session.warnings)
    checkpoint = _save_checkpoint(session) if state == "finished" else None
    session.acc.wait_for_everyone()
    if session.trackers:
        session.acc.end_training()
    return TrainResult(
        state=state,
        steps=step,
        metrics=last,
        evals=evals,
        teacher_eval=teacher_eval,
        checkpoint=checkpoint,
        warnings=session.warnings,
    )


def _set_up(cfg, out_dir, on_metrics, should_stop, models) -> _Session | TrainResult:
    """Models, data, optimiser, teacher cache: everything before the first evaluation."""
    from accelerate.utils import set_seed

    cfg.validate()
    trackers = [t for t in cfg.report_to if tracker_installed(t)]
    acc = make_accelerator(cfg, out_dir, trackers)
    set_seed(cfg.seed)
    say = logger.info if acc.is_main_process else (lambda m: None)
    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        if acc.is_main_process:
            logger.warning(message)

    device = str(acc.device)
    teacher, student = models if models is not None else load_models(cfg, device, say)
    width, cross_vocab = (None, False) if cfg.train_teacher else pair_for_run(cfg, teacher, student, say, warn)
    task = teacher.task
    if cfg.priming and task != "causal_lm":
        raise KDLensError(f"priming needs a causal language-model teacher (this one is {task})")
    s_prompt = student_prompt_fn(cfg, student)
    train_set, eval_set, labelled = prepare_examples(cfg, task, student.tokenizer, say, warn)
    originals = {ex.id: ex for ex in train_set + eval_set}  # the teacher always sees the untouched example
    teacher_eval_set = list(eval_set)
    rationales, objective = {}, None
    if cfg.rationales:
        from kd_analysis.training import rationale_tasks

        try:
            rationales, train_set, eval_set = rationale_tasks.prepare(
                teacher,
                train_set,
                eval_set,
                cfg.rationales,
                should_stop=should_stop,
                cache=Path(out_dir) / rationale_tasks.CACHE_FILE if out_dir else None,
            )
        except InterruptedError:
            return TrainResult(state="cancelled", steps=0, warnings=warnings)
        if cfg.rationales.mode == "multitask" and cfg.rationales.weight > 0:
            objective = rationale_tasks.RationaleObjective(student).to(device)

    fused = not cross_vocab and blockwise(cfg, teacher, student, acc.num_processes, say)
    model, optimizer, loader, sched, params, per_epoch, total = optimisation(
        cfg, acc, student, teacher, objective, train_set
    )
    if not cfg.online and task in ("causal_lm", "seq2seq") and any(t.tau_end for t in cfg.kd_terms):
        raise KDLensError(
            "an annealed temperature (tau_end) needs the teacher's full rows at every τ: set "
            "teacher_cache to none for language models"
        )
    if not cfg.online and task in ("causal_lm", "seq2seq") and not cross_vocab:
        check_bucketed(cfg, width)
    cache = TeacherCache(
        topk=None if cfg.online else cfg.teacher_topk,
        temperatures=run_temperatures(cfg.term_tau(t) for t in cfg.kd_terms),
    )
    shared_key = shared_teacher.teacher_key(cfg, task)
    if shared_teacher.shared_rows(shared_key) is not None:  # make-reference: one teacher pass for every student
        cache.entries = shared_teacher.shared_rows(shared_key)
    if trackers:
        acc.init_trackers("kd-lens", config={k: str(v) for k, v in cfg.to_dict().items()})
    return _Session(
        cfg=cfg,
        acc=acc,
        teacher=teacher,
        student=student,
        live=replace(student, model=model),
        model=model,
        optimizer=optimizer,
        sched=sched,
        loader=loader,
        params=params,
        task=task,
        width=width,
        train_set=train_set,
        eval_set=eval_set,
        teacher_eval_set=teacher_eval_set,
        originals=originals,
        labelled=labelled,
        rationales=rationales,
        objective=objective,
        s_prompt=s_prompt,
        cache=cache,
        shared_key=shared_key,
        note=_Once(say),
        emit=on_metrics if (on_metrics and acc.is_main_process) else (lambda m: None),
        say=say,
        out_dir=out_dir,
        trackers=trackers,
        total=total,
        per_epoch=per_epoch,
        n_epochs=max(1, math.ceil(total / per_epoch)),  # for per-epoch temperature annealing
        warnings=warnings,
        lengths=text_tokens(student.tokenizer, eval_set),
        fused=fused,
        taid=taid_schedule(cfg),
        policy_rng=policy_rng(cfg, task),
        # generation records carry KL(teacher ‖ student) per answer token: the teacher is scored again then
        teacher_lm=(
            (teacher, teacher_prompt(cfg, teacher))
            if not cfg.train_teacher and teacher.task == "causal_lm" and not cross_vocab
            else None
        ),
        cross_vocab=cross_vocab,
    )


def _evaluate_teacher(s: _Session) -> dict | None:
    """The frozen teacher on the eval set at step 0 (shared between make-reference students of one teacher)."""
    if s.cfg.train_teacher:
        return None
    cfg, teacher = s.cfg, s.teacher

    def teacher_pass() -> tuple[dict, list]:
        records: list = []
        return evaluate(
            teacher,
            s.teacher_eval_set,
            cfg,
            prompt=teacher_prompt(cfg, teacher),
            records=records,
            on_token=s.generation_hook("evaluating the teacher at step 0"),
        ), records

    key = None if cfg.priming or cfg.rationales else s.shared_key
    teacher_eval, t_records = shared_teacher.shared_eval(key, [ex.id for ex in s.teacher_eval_set], teacher_pass)
    s.teacher_probs = {r.example_id: r.probs for r in t_records if r.probs is not None}
    s.save_records(t_records, "teacher", 0)
    s.say(f"teacher on the eval set: {teacher_eval}")
    s.emit({"step": 0, **{f"teacher_{k}": v for k, v in teacher_eval.items()}})
    return teacher_eval


def _evaluate_student(s: _Session, step: int, first: bool = False) -> dict:
    """The live model on the eval set; per-example records at the last step (every evaluation when asked)."""
    keep = s.cfg.records_every_eval or (step == s.total and not first)
    records: list | None = [] if keep else None

    def student_pass() -> tuple[dict, list]:
        return evaluate(
            s.live,
            s.eval_set,
            s.cfg,
            unwrap=s.acc.unwrap_model,
            prompt=s.s_prompt,
            records=records,
            teacher_probs=s.teacher_probs,
            teacher_lm=s.teacher_lm if (records is not None or first) else None,
            on_token=s.generation_hook(f"evaluating the student at step {step}"),
        ), []

    shared = first and records is None  # make-reference: students identical at step 0 share their first evaluation
    key = shared_teacher.student_start_key(s.cfg) if shared else None
    ev = dict(shared_teacher.shared_eval(key, [ex.id for ex in s.eval_set], student_pass)[0])
    if records:
        s.save_records(records, s.live_role, step)
    if first:
        s.emit(
            {
                "step": 0,
                "held_out": len(s.eval_set),
                "train_examples": len(s.train_set),
                **({"labelled": len(s.labelled)} if s.labelled is not None else {}),
                **{f"eval_{k}": v for k, v in ev.items()},
            }
        )
    return ev


def student_answers(s: _Session, examples: list) -> tuple[list, dict[str, list[int]]]:
    """The batch with each answer replaced by one the student samples to the same prompt (GKD's on-policy data):
    the examples with the decoded text (for logs and records) and, by example id, the sampled token ids the
    student and a same-tokenizer teacher then read."""
    from kd_analysis.models.generation import Sampling, generate_ids
    from kd_analysis.models.scoring import mc_prompt

    settings = s.cfg.on_policy
    assert settings is not None
    prompt = s.s_prompt or mc_prompt
    ids = generate_ids(
        s.live,
        [prompt(ex) for ex in examples],
        settings.max_new_tokens,
        len(examples),
        model=s.acc.unwrap_model(s.model),
        sample=Sampling(temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k),
    )
    texts = s.live.tokenizer.batch_decode(ids, skip_special_tokens=True)
    sampled = [
        replace(ex, solution=None, choices=None, label=None, answer=text.strip()) for ex, text in zip(examples, texts)
    ]
    return sampled, {ex.id: row for ex, row in zip(examples, ids)}


def _blockwise_loss(
    s: _Session,
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
        out = student_outputs(cfg, s.live, s.teacher, examples, s.s_prompt, hidden=True, answer_ids=answer_ids)
    t_out = teacher_forward(
        cfg, s.teacher, teacher_examples, s.s_prompt, s.student.tokenizer, hidden=True, answer_ids=answer_ids
    )
    s.cache.misses += len(examples)
    epoch = step // s.per_epoch
    ce_weight = sum(t.weight for t in cfg.losses if t.name == "ce") if with_ce else 0.0
    terms = [Term("ce", ce_weight)] if ce_weight > 0 else []
    seq = (out.labels != -100).nonzero()[:, 0]  # each target row's sequence, in the rows' order
    for t in cfg.kd_terms:
        tau = cfg.term_tau(t, epoch, s.n_epochs)
        scale = tau**2 if cfg.term_tau_squared(t) else 1.0
        reduce = LOSSES[t.name].reduce
        weights = None if reduce == "token" else reduction_weights(reduce, seq)
        terms.append(Term(t.name, t.weight, tau, scale, {**t.params, **s.overrides().get(t.name, {})}, weights))
    s_layer = head_parts(s.live.model)[1]  # type: ignore[index]
    t_layer = head_parts(s.teacher.model)[1]  # type: ignore[index]
    width = s.width or min(s_layer.weight.shape[0], t_layer.weight.shape[0])
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
    s: _Session, examples: list, step: int, monitor: bool = False
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict, Any]:
    """One batch's weighted loss: CE on gold labels, the KD terms against the teacher, the rationale task. The
    third item holds per-step statistics: tail masses, and with `monitor` each term's `grad_norm_<term>`."""
    cfg = s.cfg
    on_policy = s.policy_rng is not None and s.policy_rng.random() < cfg.on_policy.fraction  # type: ignore[union-attr]
    # the teacher and the rationale task read the untouched text; an on-policy batch, the student's own answers
    originals = [s.originals[ex.id] for ex in examples]
    answer_ids: dict[str, list[int]] | None = None
    if on_policy:
        examples, answer_ids = student_answers(s, originals)
        originals = examples
    stats: dict[str, float] = {"on_policy_batch": float(on_policy)} if s.policy_rng is not None else {}
    if s.fused:
        norms: dict[str, float] | None = {} if monitor else None
        loss, values, out = _blockwise_loss(s, examples, originals, step, norms, not on_policy, answer_ids)
        stats.update({f"grad_norm_{k}": v for k, v in (norms or {}).items()})
        return _finite(loss, step), values, stats, out
    out = student_outputs(cfg, s.live, s.teacher, examples, s.s_prompt, answer_ids=answer_ids)
    tail_stats: dict[str, float] = stats
    answer_rows = AnswerRows.of(out) if isinstance(out, LMBatch) else None
    terms: dict[str, torch.Tensor] = {}
    if sum(t.weight for t in cfg.losses if t.name == "ce") > 0 and not on_policy:
        terms["ce"] = ce_loss(out, examples, answer_rows, s.labelled)
    if cfg.kd_terms and s.cross_vocab:
        if on_policy:
            s.note(
                "on-policy with a cross-tokenizer teacher: the student trains on the token ids it sampled, and the "
                "teacher reads the same answers as text, tokenized by its own tokenizer (the one place where text "
                "is the interface between the two)"
            )
        t_out = teacher_forward(cfg, s.teacher, originals, s.s_prompt, s.student.tokenizer)
        s.cache.misses += len(examples)
        terms.update(cross_vocab_terms(cfg, out, t_out, step // s.per_epoch, s.n_epochs, s.overrides()))
    elif cfg.kd_terms:
        # sampled answers are new every time: scored by the teacher once, never kept under the example's id
        cache = TeacherCache(s.cache.topk, s.cache.temperatures, keep=False) if on_policy else s.cache
        t_rows = teacher_rows(cfg, cache, s.teacher, originals, s.width, s.s_prompt, s.student.tokenizer, answer_ids)
        if s.cache.over_budget:
            s.note(
                f"warning: the teacher cache reached its budget ({s.cache.budget_bytes / 2**20:.0f} MB); the "
                "examples it could not keep run the teacher again each time. A smaller teacher_topk keeps more; "
                "teacher_topk null runs the teacher every step and keeps nothing."
            )
        terms.update(
            kd_loss_terms(
                cfg,
                out,
                t_rows,
                s.width,
                rows=answer_rows,
                note=s.note,
                stats=tail_stats,
                epoch=step // s.per_epoch,
                epochs=s.n_epochs,
                overrides=s.overrides(),
            )
        )
    weights = {t.name: t.weight for t in cfg.losses}
    if monitor:  # before the rationale head joins: its gradient does not pass through the student's output
        logits = out.logits if isinstance(out, LMBatch) else out
        tail_stats.update({f"grad_norm_{k}": v for k, v in term_grad_norms(terms, logits).items()})
    if s.objective is not None:
        terms["rationale"] = s.objective(s.live, originals, s.rationales, cfg.max_length)
        weights["rationale"] = cfg.rationales.weight
    loss = sum(weights[k] * v for k, v in terms.items())
    return _finite(loss, step), terms, tail_stats, out


def _finite(loss: torch.Tensor, step: int) -> torch.Tensor:
    if not torch.isfinite(loss):
        raise KDLensError(
            f"the loss became {float(loss)} at step {step + 1}: lower the learning rate or the loss weights"
        )
    return loss


def _optimise(s: _Session, should_stop: Callable[[], bool], evals: list) -> tuple[str, int, dict]:
    """Steps until `total` (or a stop); returns (state, steps taken, the last step's metrics)."""
    acc, cfg = s.acc, s.cfg
    step, start, last = 0, time.monotonic(), {}
    while step < s.total:
        for idx in s.loader:
            if should_stop():
                acc.set_trigger()  # every rank stops at the same step (`accelerate launch`), not just this one
            if acc.check_trigger():
                return "cancelled", step, last
            examples = [s.train_set[i] for i in idx]
            t0 = time.monotonic()
            monitor = bool(cfg.balance_every) and (step == 0 or (step + 1) % cfg.balance_every == 0)
            with acc.accumulate(s.model):
                loss, terms, tail_stats, out = _loss(s, examples, step, monitor)
                acc.backward(loss)
                if cfg.max_grad_norm and acc.sync_gradients:
                    acc.clip_grad_norm_(s.params, cfg.max_grad_norm)
                s.optimizer.step()
                s.sched.step()
                s.optimizer.zero_grad()
            taid_t = None
            if s.taid is not None:  # every micro-batch moves t for the next one, as TAID's code does on every forward
                taid_t = s.taid.t
                s.taid.update(float(terms["taid"].detach()), step, s.total)
            if not acc.sync_gradients:
                continue
            step += 1
            s.step = step
            dt = time.monotonic() - t0
            elapsed = time.monotonic() - start
            tokens = out.tokens if isinstance(out, LMBatch) else None
            last = {
                "step": step,
                "total_steps": s.total,
                "loss": float(loss.detach()),
                **{f"loss_{k}": float(v.detach()) for k, v in terms.items()},
                "lr": s.sched.get_last_lr()[0],
                "examples_per_s": len(examples) / max(dt, 1e-9),
                "tokens_per_s": (tokens / max(dt, 1e-9)) if tokens else None,
                "elapsed_s": elapsed,
                "eta_s": elapsed / step * (s.total - step),
                "epoch": step / s.per_epoch,
                "teacher_cache_hits": s.cache.hits,
                **({"taid_t": taid_t} if taid_t is not None else {}),
                **tail_stats,
            }
            _check_balance(s, tail_stats)
            if step % cfg.eval_every == 0 or step == s.total:
                ev = _evaluate_student(s, step)
                last.update({f"eval_{k}": v for k, v in ev.items()})
                evals.append({"step": step, **ev})
                s.say(f"step {step}/{s.total}: loss {last['loss']:.4f}, eval {ev}")
            s.emit(last)
            if s.trackers:
                acc.log({k: v for k, v in last.items() if isinstance(v, (int, float))}, step=step)
            if step >= s.total:
                return "finished", step, last
    return "finished", step, last


def _check_balance(s: _Session, stats: dict) -> None:
    """Warn once per pair of terms when one pulls on the student over 100x harder than another."""
    norms = record_norms(stats)
    found = imbalance(norms, {t.name: t.weight for t in s.cfg.losses}) if norms else None
    if found and (found.strong, found.weak) not in s.balance_warned:
        s.balance_warned.add((found.strong, found.weak))
        message = found.message({t.name: t.weight for t in s.cfg.losses})
        s.warnings.append(message)
        if s.acc.is_main_process:
            logger.warning(message)


def _save_checkpoint(s: _Session) -> str | None:
    cfg = s.cfg
    if not (cfg.save_checkpoint and s.out_dir and s.acc.is_main_process):
        return None
    checkpoint = str(Path(s.out_dir) / layout.CHECKPOINT)
    s.acc.unwrap_model(s.model).save_pretrained(checkpoint)  # safetensors; a peft model saves only its adapter
    if not cfg.lora:
        s.student.tokenizer.save_pretrained(checkpoint)
    if cfg.lora and cfg.train_teacher:
        point_adapter_at(Path(checkpoint), cfg.teacher.source)
    s.say(f"saved {'LoRA adapter' if cfg.lora else 'student'} to {checkpoint}")
    return checkpoint
