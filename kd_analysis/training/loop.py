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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from kd_analysis.data.example import Example
from kd_analysis.exceptions import KDLensError
from kd_analysis.losses import LOSSES
from kd_analysis.losses.checks import upcast
from kd_analysis.losses.chunked_head import Head, Term, chunked_head_loss
from kd_analysis.losses.registry import reduce_rows, reduction_weights
from kd_analysis.losses.sinkhorn import sinkhorn_blocks, sinkhorn_topk_teacher
from kd_analysis.losses.sparse import bucket_rows, buckets_from_topk
from kd_analysis.runs import layout
from kd_analysis.runs.records import save_run_records
from kd_analysis.training import shared_teacher
from kd_analysis.training.balance import imbalance, record_norms, term_grad_norms
from kd_analysis.training.batches import (
    AnswerRows,
    LMBatch,
    gold_labels,
    head_parts,
    head_split_matches,
    lm_outputs,
    paper_rows,
    position_outputs,
    target_lengths,
    task_outputs,
)
from kd_analysis.training.config import TrainConfig
from kd_analysis.training.evaluate import evaluate
from kd_analysis.training.taid import TaidSchedule
from kd_analysis.training.teacher_cache import TeacherCache, TopK, run_temperatures

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


def split_examples(examples: Sequence[Example], cfg: TrainConfig) -> tuple[list[Example], list[Example]]:
    """Deterministic shuffle by split_seed (else seed), then eval_size held out (at most half the set);
    train_size caps the rest."""
    items = list(examples)
    random.Random(cfg.seed if cfg.split_seed is None else cfg.split_seed).shuffle(items)
    n_eval = min(cfg.eval_size, max(len(items) // 2, 1))  # never more than half: the rest must train
    evals, train = items[:n_eval], items[n_eval:]
    if cfg.train_size:
        train = train[: cfg.train_size]
    if not train:
        raise KDLensError(f"{cfg.data} has too few examples to train on ({len(items)})")
    return train, evals


def check_task(task: str, examples: Sequence[Example], data: str) -> None:
    if task == "multiple_choice" and any(not ex.choices or ex.label is None for ex in examples):
        raise KDLensError(f"multiple-choice training needs choices and a gold answer in every example of {data}")
    if task == "classification" and any(ex.label is None for ex in examples):
        raise KDLensError(f"classification training needs a label in every example of {data}")
    if task in ("causal_lm", "seq2seq") and any(ex.answer is None for ex in examples):
        raise KDLensError(f"generation training needs an answer in every example of {data}")


class _Once:
    """Passes each distinct message to the log once: loss notes repeat every step."""

    def __init__(self, say: Callable[[str], None]):
        self.say, self.seen = say, set()

    def __call__(self, message: str) -> None:
        if message not in self.seen:
            self.seen.add(message)
            self.say(message)


TAIL_WARNING = 0.2  # warn once when the teacher's top-k cache leaves more than this share of its mass to the tail


def kd_loss_terms(
    cfg: TrainConfig,
    student_out: Any,
    teacher_rows: Any,
    width: int | None,
    *,
    rows: AnswerRows | None = None,
    note: Callable[[str], None] | None = None,
    stats: dict[str, float] | None = None,
    epoch: int = 0,
    epochs: int = 1,
    overrides: dict[str, dict] | None = None,
) -> dict[str, torch.Tensor]:
    """Distillation terms (unweighted, each at its own τ with its τ² factor). `overrides` sets parameters that
    change during training, per term (TAID's current t).

    Language-model rows compare the student's full-vocabulary distribution with the teacher: a cached top-k
    teacher (`TopK`) through k + 1 buckets (`sparse_kd`), or a full-vocabulary teacher (dense [N, V] rows, when
    `teacher_topk` is None) through the dense losses. `stats`, when given, receives the tail masses."""
    note = note or (lambda m: None)
    terms: dict[str, torch.Tensor] = {}
    lm = isinstance(student_out, LMBatch)
    if lm and rows is None:
        rows = AnswerRows.of(student_out)
    for term in cfg.kd_terms:
        spec = LOSSES[term.name]
        tau = cfg.term_tau(term, epoch, epochs)
        params = {**term.params, **(overrides or {}).get(term.name, {})}
        if lm and isinstance(teacher_rows, TopK):
            value = _lm_topk_term(term.name, rows, teacher_rows, tau, params, note, stats)
        elif lm:
            value = _lm_dense_term(term.name, rows, teacher_rows, tau, width, params, note)
        elif spec.batchwise and student_out.shape[0] < 2:
            note(
                f"{spec.title}: a batch of one example has no batch-wise term; it counts 0 for that step (use a "
                f"batch size that leaves no single example at the end of an epoch)"
            )
            value = student_out.sum() * 0.0
        else:
            s = student_out if student_out.dtype == torch.float64 else student_out.float()
            value = spec(s, teacher_rows.to(s.dtype), tau=tau, **params)
        terms[term.name] = value * tau**2 if cfg.term_tau_squared(term) else value
    return terms


def _lm_topk_term(name: str, rows: AnswerRows, top: TopK, tau: float, params: dict, note, stats) -> torch.Tensor:
    """One KD term from the cached top-k teacher over k + 1 buckets (the tails each summed over their own tokens);
    the tail-mass statistics are read off the same buckets, detached, so they never touch the loss's graph."""
    t_lp = top.logprobs(tau)
    k = top.indices.shape[-1]
    full = k >= rows.vocab
    if LOSSES[name].batchwise:
        value = _topk_sinkhorn(rows, top, tau, params, note)
        if stats is not None and "teacher_tail_mass" not in stats and not full:
            with torch.no_grad():
                _tail_stats(stats, top.rest_logprob(tau), rows.rest(top.indices, tau), tau, k, note)
        return value
    at = rows.at(top.indices)
    lse, rest = (rows.lse(tau), None) if full else rows.lse_and_rest(top.indices, tau, at)
    t, s = buckets_from_topk(
        at,
        lse,
        t_lp,
        tau=tau,
        full=full,
        student_rest=rest,
        teacher_rest=None if full else top.rest_logprob(tau),
    )
    if stats is not None and "teacher_tail_mass" not in stats:
        if full:
            stats.update(teacher_tail_mass=0.0, student_tail_mass=0.0)
        else:
            _tail_stats(stats, t[:, -1].detach(), s[:, -1].detach(), tau, k, note)
    if not full and LOSSES[name].bucketed == "approximate":
        note(
            f"note: {LOSSES[name].title} is not an f-divergence, so on the cache's k + 1 buckets it is an "
            "approximation of its full-vocabulary value (above or below it); teacher_cache: none computes it exactly"
        )
    return rows.reduce(name, bucket_rows(name, full)(t, s, **params))


def _tail_stats(stats: dict, t_tail: torch.Tensor, s_tail: torch.Tensor, tau: float, k: int, note) -> None:
    """Mean tail mass of teacher and student (log-probabilities in), and the warning when the teacher's is large."""
    stats["teacher_tail_mass"] = float(t_tail.exp().mean())
    stats["student_tail_mass"] = float(s_tail.exp().mean())
    if stats["teacher_tail_mass"] > TAIL_WARNING:
        note(
            f"warning: at τ = {tau:g} the teacher's top-{k} tokens hold only "
            f"{1 - stats['teacher_tail_mass']:.0%} of its probability mass; the rest is one tail bucket, so "
            "KD sees little of the teacher's distribution. Raise teacher_topk, lower τ, or set teacher_topk "
            "to null (full vocabulary, the teacher runs every step)."
        )


def _topk_sinkhorn(rows: AnswerRows, top: TopK, tau: float, params: dict, note) -> torch.Tensor:
    if not _token_sinkhorn_applies(params, rows.n, note):
        return rows.flat.sum() * 0.0
    student = torch.exp(rows.rows() / tau - rows.lse(tau)[:, None])
    params.pop("topk", None)
    return sinkhorn_topk_teacher(student, top.logprobs(tau).exp(), top.indices, **params)


def _lm_dense_term(
    name: str, rows: AnswerRows, teacher: torch.Tensor, tau: float, width: int | None, params: dict, note
) -> torch.Tensor:
    """Full-vocabulary teacher rows [N, V_t]: the dense loss over the columns both models share."""
    width = width or min(rows.vocab, teacher.shape[-1])
    student = rows.rows()[:, :width]
    if LOSSES[name].batchwise:
        if not _token_sinkhorn_applies(params, rows.n, note):
            return rows.flat.sum() * 0.0
        return sinkhorn_blocks(
            torch.softmax(student / tau, -1),
            torch.softmax(teacher[:, :width].to(student.dtype) / tau, -1),
            teacher_probs=True,
            student_probs=True,
            tau=tau,
            **params,
        )
    return rows.reduce(
        name, LOSSES[name](student, teacher[:, :width].to(student.dtype), tau=tau, reduction="none", **params)
    )


def _token_sinkhorn_applies(params: dict, n: int, note) -> bool:
    """Whether a batch-wise term can run on n answer tokens (False: it counts 0 this step, and the log says so)."""
    if n < 2:
        note("Sinkhorn: a batch with a single answer token has no batch-wise term; it counts 0 for that step")
        return False
    if params.get("mass") == "batch":
        raise KDLensError(
            "Sinkhorn with mass: batch (SinKD's form) is defined on a batch of examples; on "
            "language-model tokens it would scale with the block size: use mass: one"
        )
    if n > 256:
        note(
            "Sinkhorn on language-model rows couples answer tokens in blocks of 64 positions; a batch's leftover "
            "positions form one smaller block (a single leftover joins the last block), so no token is dropped"
        )
    return True


def ce_loss(
    student_out: Any, examples: Sequence[Example], rows: AnswerRows | None = None, labelled: set[str] | None = None
) -> torch.Tensor:
    """CE on the gold labels; with `labelled` (few-label regime) only those examples count, mean over them, and a
    batch without any is 0 (its distillation terms still train)."""
    if isinstance(student_out, LMBatch):
        return (rows or AnswerRows.of(student_out)).ce()
    if labelled is not None:
        keep = [i for i, ex in enumerate(examples) if ex.id in labelled]
        if not keep:
            return upcast(student_out).sum() * 0.0
        student_out, examples = student_out[keep], [examples[i] for i in keep]
    return torch.nn.functional.cross_entropy(upcast(student_out), gold_labels(examples, student_out.device))


def few_labels(cfg: TrainConfig, train_set: list[Example], task: str) -> tuple[list[Example], set[str] | None, str]:
    """The few-label regime's training set, the ids that keep their labels, and the log line saying so."""
    if not cfg.labels:
        return train_set, None, ""
    if task not in ("classification", "multiple_choice"):
        raise KDLensError(f"labels (few-label regime) works for classification and multiple choice, not {task}")
    if cfg.labels > len(train_set):  # taking the first `labels` would silently keep fewer than the user asked
        raise KDLensError(
            f"labels is {cfg.labels} but the training set has {len(train_set)} examples; "
            "name at most that many labelled examples"
        )
    labelled = {ex.id for ex in train_set[: cfg.labels]}
    if not cfg.kd_terms and not cfg.rationales:  # nothing learns from unlabelled inputs: train on the labels alone
        return (
            train_set[: cfg.labels],
            labelled,
            f"few labels: {len(labelled)} labelled examples, no transfer set (CE only)",
        )
    return (
        train_set,
        labelled,
        (
            f"few labels: {len(labelled)} labelled examples + {len(train_set) - len(labelled)} "
            "unlabelled ones that only the distillation terms see"
        ),
    )


def _paper_alignment(cfg: TrainConfig) -> bool:
    return bool(cfg.priming) and cfg.priming.alignment == "paper"


def _teacher_forward(
    cfg, teacher, examples, student_prompt=None, student_tok=None, hidden: bool = False, answer_ids=None
):
    """The teacher's outputs (no grad) as a run reads them: primed prompt or paper alignment when priming;
    `answer_ids` (on-policy samples, by example id) are read as the same token ids the student trains on."""
    with torch.no_grad():
        if _paper_alignment(cfg):  # prompt + question only, compared position by position (Goyal et al.)
            s_raw, t_raw = paper_prompts(cfg)
            n = paper_rows(student_tok, teacher.tokenizer, examples, cfg.max_length, s_raw, t_raw)
            return position_outputs(teacher, examples, cfg.max_length, t_raw, n, hidden=hidden)
        if cfg.priming:  # the primed prompt, and exactly as many answer tokens as the student keeps
            keep = target_lengths(student_tok, examples, cfg.max_length, student_prompt)
            return lm_outputs(
                teacher, examples, cfg.max_length, teacher_prompt(cfg, teacher), keep_targets=keep, hidden=hidden
            )
        return task_outputs(teacher, examples, cfg.max_length, hidden=hidden, answer_ids=answer_ids)


def _teacher_rows(
    cfg, cache: TeacherCache, teacher, examples, width, student_prompt=None, student_tok=None, answer_ids=None
):
    lm = teacher.task in ("causal_lm", "seq2seq")
    missing = list(examples) if lm and cache.topk is None else cache.missing(examples)
    cache.hits += len(examples) - len(missing)
    fresh: dict = {}
    if missing:
        cache.misses += len(missing)
        out = _teacher_forward(cfg, teacher, missing, student_prompt, student_tok, answer_ids=answer_ids)
        if isinstance(out, LMBatch):
            assert out.logits is not None
            if cache.topk is None:  # full vocabulary: nothing is cached, the teacher runs every step
                return out.logits[out.labels != -100]
            fresh = cache.put_lm(missing, out.logits, out.labels, width)
        else:
            cache.put_rows(missing, out)
    device = next(teacher.model.parameters()).device
    return cache.lm(examples, device, fresh) if lm else cache.rows(examples, device)


def student_outputs(
    cfg: TrainConfig, live, teacher, examples: Sequence[Example], s_prompt, hidden: bool = False, answer_ids=None
):
    """The student's grad-enabled outputs for one batch (position-aligned with the teacher under `paper`)."""
    if _paper_alignment(cfg):
        s_raw, t_raw = paper_prompts(cfg)
        n = paper_rows(live.tokenizer, teacher.tokenizer, examples, cfg.max_length, s_raw, t_raw)
        return position_outputs(live, examples, cfg.max_length, s_raw, n, hidden=hidden)
    return task_outputs(live, examples, cfg.max_length, s_prompt, hidden=hidden, answer_ids=answer_ids)


def paper_prompts(cfg: TrainConfig) -> tuple[Callable[[Example], str], Callable[[Example], str]]:
    """Training inputs under Goyal et al.'s alignment, raw text as in their code: (student: the question,
    teacher: the rendered template). Evaluation keeps the chat-formatted prompts."""
    from kd_analysis.prompting.prompts import render_template

    template = cfg.priming_template
    return (lambda ex: ex.text), (lambda ex: render_template(template, ex))


def teacher_prompt(cfg: TrainConfig, teacher) -> Callable[[Example], str] | None:
    """How the teacher reads an example in a priming run (None: the standard prompt)."""
    if not cfg.priming:
        return None
    from kd_analysis.prompting.prompts import format_prompt, render_template

    template = cfg.priming_template
    return lambda ex: format_prompt(teacher.tokenizer, render_template(template, ex))


def student_prompt_fn(cfg: TrainConfig, student) -> Callable[[Example], str] | None:
    if not cfg.priming:
        return None
    from kd_analysis.prompting.prompts import student_prompt

    return lambda ex: student_prompt(student.tokenizer, ex)


def lr_factor(cfg: TrainConfig, per_epoch: int, total: int) -> Callable[[int], float]:
    """The learning-rate multiplier at step s: linear warm-up, then the configured schedule."""

    def factor(s: int) -> float:
        warm = min(1.0, (s + 1) / max(cfg.warmup_steps, 1))
        if cfg.schedule == "cosine_epoch":  # CosineAnnealingLR's closed form, T_max = one epoch, eta_min = 0
            return warm * 0.5 * (1 + math.cos(math.pi * s / per_epoch))
        return warm * max(0.0, 1 - s / max(total, 1))

    return factor


def _optimizer(cfg: TrainConfig, params):
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _apply_lora(cfg: TrainConfig, model):
    from peft import LoraConfig, get_peft_model

    heads = [n for n in ("classifier", "score") if hasattr(model, n)]
    lcfg = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        modules_to_save=heads or None,
    )
    return get_peft_model(model, lcfg)


def text_tokens(tokenizer, examples) -> dict[str, int]:
    """Tokens in each example's text alone (no prompt, choices or special tokens), by example id."""
    texts = [ex.text for ex in examples]
    if not texts:
        return {}
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return {str(ex.id): len(t) for ex, t in zip(examples, ids)}


def over_length(tokenizer, examples, max_length: int) -> int:
    """Examples whose text alone is longer than `max_length` tokens: a lower bound on the inputs a run cuts
    (prompts, choices and answers only add tokens), so the warning it feeds is never an overstatement."""
    return sum(n > max_length for n in text_tokens(tokenizer, examples).values())


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


def _accelerator(cfg: TrainConfig, out_dir: str | Path | None, trackers: list[str]):
    from accelerate import Accelerator

    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise KDLensError(f"device {cfg.device} was asked for, but this machine has no CUDA GPU: use auto or cpu")
    cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    mixed = "no" if cpu or cfg.precision == "fp32" else ("fp16" if cfg.precision == "fp16" else "bf16")
    return Accelerator(
        cpu=cpu,
        mixed_precision=mixed,
        gradient_accumulation_steps=cfg.grad_accum,
        log_with=trackers or None,
        project_dir=str(out_dir) if out_dir else None,
    )


def _load_models(cfg: TrainConfig, device: str, say: Callable[[str], None]):
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.specs import ModelSpec
    from kd_analysis.models.students import derive_student

    tspec = ModelSpec.from_dict(
        {
            **cfg.teacher.to_dict(),
            "device": device,
            "task": cfg.task or cfg.teacher.task,
            "dtype": "float32" if cfg.train_teacher else cfg.teacher.dtype,
        }
    )
    say(f"loading teacher {tspec.source} on {device}")
    teacher = load_model(tspec)
    if cfg.train_teacher:
        return teacher, teacher
    say(f"building student: {cfg.student.describe()}")
    student = derive_student(teacher, cfg.student)
    student.model.float()
    return teacher, student


def _set_up(cfg, out_dir, on_metrics, should_stop, models) -> _Session | TrainResult:
    """Models, data, optimiser, teacher cache: everything before the first evaluation."""
    from accelerate.utils import set_seed

    from kd_analysis.data.sources import load_dataset
    from kd_analysis.models.pair import check_pair

    cfg.validate()
    trackers = [t for t in cfg.report_to if _tracker_installed(t)]
    acc = _accelerator(cfg, out_dir, trackers)
    set_seed(cfg.seed)
    say = logger.info if acc.is_main_process else (lambda m: None)
    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        if acc.is_main_process:
            logger.warning(message)

    device = str(acc.device)
    teacher, student = models if models is not None else _load_models(cfg, device, say)
    width = None
    cross_vocab = False
    if not cfg.train_teacher:
        report = check_pair(teacher, student)
        cross_vocab = (
            bool(cfg.kd_terms)
            and not report.comparable
            and all(LOSSES[t.name].cross_vocab and report.losses.get(t.name, {}).get("applies") for t in cfg.kd_terms)
        )
        if cross_vocab:
            _check_cross_vocab(cfg, say)
        elif cfg.kd_terms and not report.comparable:
            raise KDLensError(
                "these teacher and student outputs are not comparable, so "
                f"{', '.join(t.name for t in cfg.kd_terms)} cannot be used: "
                + " ".join(report.notes)
                + " Use ce only, a cross-tokenizer loss (uld) for two language models, or a student with the "
                "teacher's tokenizer/labels."
            )
        width = report.aligned_outputs
        t_n, s_n = teacher.info().parameters, student.info().parameters
        if s_n > t_n:
            warn(f"the student ({s_n:,} parameters) is bigger than the teacher ({t_n:,})")
    task = teacher.task
    if cfg.priming and task != "causal_lm":
        raise KDLensError(f"priming needs a causal language-model teacher (this one is {task})")
    s_prompt = student_prompt_fn(cfg, student)
    everything = load_dataset(cfg.data).examples
    train_set, eval_set = split_examples(everything, cfg)
    check_task(task, train_set + eval_set, cfg.data)
    train_set, labelled, few = few_labels(cfg, train_set, task)
    say(f"data {cfg.data}: {len(train_set)} train / {len(eval_set)} eval examples, task {task}")
    if len(eval_set) < cfg.eval_size:  # at most half the set is held out: say so where the run's warnings go
        warn(
            f"eval_size is {cfg.eval_size} but {cfg.data} has {len(everything)} examples, so "
            f"{len(eval_set)} were held out (at most half the set, the rest trains)"
        )
    if few:
        say(few)
    long = over_length(student.tokenizer, train_set + eval_set, cfg.max_length)
    if long:
        warn(
            f"at least {long} of {len(train_set) + len(eval_set)} examples have a text longer than "
            f"max_length ({cfg.max_length} tokens) and are cut on the right; raise max_length to keep "
            "their ends (choices, answer cue)"
        )
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

    fused = not cross_vocab and _blockwise(cfg, teacher, student, acc.num_processes, say)
    model = _apply_lora(cfg, student.model) if cfg.lora else student.model
    model.train()
    teacher.model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _optimizer(cfg, params + (list(objective.parameters()) if objective is not None else []))
    loader = torch.utils.data.DataLoader(
        list(range(len(train_set))),
        batch_size=cfg.batch_size,
        shuffle=True,
        collate_fn=list,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    per_epoch = max(1, math.ceil(len(loader) / cfg.grad_accum))
    total = math.ceil(cfg.epochs * per_epoch) if cfg.epochs else cfg.steps
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, per_epoch, total))
    model, optimizer, loader, sched = acc.prepare(model, optimizer, loader, sched)
    if not cfg.online and task in ("causal_lm", "seq2seq") and any(t.tau_end for t in cfg.kd_terms):
        raise KDLensError(
            "an annealed temperature (tau_end) needs the teacher's full rows at every τ: set "
            "teacher_cache to none for language models"
        )
    if not cfg.online and task in ("causal_lm", "seq2seq") and not cross_vocab:
        _check_bucketed(cfg, width)
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
        taid=_taid_schedule(cfg),
        policy_rng=_policy_rng(cfg, task),
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


def _policy_rng(cfg: TrainConfig, task: str) -> random.Random | None:
    if not cfg.on_policy or cfg.on_policy.fraction <= 0:
        return None
    if task != "causal_lm":
        raise KDLensError(f"on-policy distillation needs a causal language-model teacher (this one is {task})")
    return random.Random(cfg.seed * 7919 + 17)  # its own stream: the data order does not move with λ


def _check_bucketed(cfg: TrainConfig, width: int | None) -> None:
    """A term without a form on the top-k cache's k + 1 buckets (ULD) is refused before training, unless k covers
    every shared column (then there is no bucket and the value is the dense one)."""
    if width and cfg.teacher_topk and cfg.teacher_topk >= width:
        return
    for t in cfg.kd_terms:
        spec = LOSSES[t.name]
        if spec.bucketed == "none":
            raise KDLensError(
                f"{spec.title} has no form on the top-{cfg.teacher_topk} teacher cache (it ranks every token of "
                "both distributions, and the cache merges the teacher's tail into one bucket): set "
                "teacher_cache: none"
            )


def _taid_schedule(cfg: TrainConfig) -> TaidSchedule | None:
    term = next((t for t in cfg.kd_terms if t.name == "taid"), None)
    if term is None:
        return None
    schedule = TaidSchedule.from_params(LOSSES["taid"].resolve(term.params))
    if not 0 <= schedule.t_start < schedule.t_end <= 1:
        raise KDLensError(f"TAID needs 0 ≤ taid_t_start < taid_t_end ≤ 1 (got {schedule.t_start} and {schedule.t_end})")
    return schedule


def _blockwise(cfg: TrainConfig, teacher, student, processes: int, say: Callable[[str], None]) -> bool:
    """Whether the exact online mode computes its terms block by block from hidden states; says why not."""
    if not (cfg.online and teacher.task == "causal_lm" and cfg.kd_terms and not cfg.train_teacher):
        return False
    batchwise = [LOSSES[t.name].title for t in cfg.kd_terms if LOSSES[t.name].batchwise]
    if batchwise:
        why = f"{', '.join(batchwise)} couples positions, so it needs every row at once"
    elif processes > 1:
        why = "several processes train together (the blocks would bypass the wrapper that syncs gradients)"
    elif not (head_split_matches(teacher) and head_split_matches(student)):
        why = "a model's output layer does not reproduce its logits (e.g. soft-capped or scaled logits)"
    else:
        say("exact online mode: every term computed from both models' hidden states, a block of positions at a time")
        return True
    say(f"exact online mode on full [positions, vocabulary] logits: {why}")
    return False


def _check_cross_vocab(cfg: TrainConfig, say: Callable[[str], None]) -> None:
    if cfg.priming:
        raise KDLensError(
            "priming aligns the teacher's answer tokens with the student's one to one, which needs one tokenizer; "
            "this pair tokenizes apart"
        )
    say(
        "cross-tokenizer pair: the teacher runs every step on its own tokenization of the same texts, and "
        f"{', '.join(t.name for t in cfg.kd_terms)} compares the i-th answer token of each (the shorter answer "
        "sets how many)"
    )


def aligned_answer_rows(student: LMBatch, teacher: LMBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each example's answer positions of both models, paired by index and cut to the shorter answer (ULD's
    alignment of two tokenizations): ([M, V_student], [M, V_teacher]) logits and [M] each row's example."""
    assert student.logits is not None and teacher.logits is not None
    s_rows, t_rows, seq = [], [], []
    for b in range(student.labels.shape[0]):
        s_pos = (student.labels[b] != -100).nonzero().flatten()
        t_pos = (teacher.labels[b] != -100).nonzero().flatten()
        m = min(len(s_pos), len(t_pos))
        s_rows.append(student.logits[b, s_pos[:m]])
        t_rows.append(teacher.logits[b, t_pos[:m]].to(student.logits.device))
        seq.append(torch.full((m,), b, dtype=torch.long, device=student.logits.device))
    s, t = upcast(torch.cat(s_rows)), torch.cat(t_rows)
    return s, t.to(s.dtype), torch.cat(seq)


def cross_vocab_terms(
    cfg: TrainConfig, student: LMBatch, teacher: LMBatch, epoch: int, epochs: int, overrides: dict
) -> dict[str, torch.Tensor]:
    """The distillation terms of a cross-tokenizer pair (each a cross-vocabulary row divergence, ULD), at each
    term's τ with its τ² factor, reduced over the aligned answer positions as the term's entry says (ULD: each
    example's mean over its aligned positions, then the mean over the examples, as Boizard et al. and TRL's GOLD)."""
    s_rows, t_rows, seq = aligned_answer_rows(student, teacher)
    terms = {}
    for term in cfg.kd_terms:
        tau = cfg.term_tau(term, epoch, epochs)
        rows = LOSSES[term.name].rows
        assert rows is not None
        params = {**term.params, **overrides.get(term.name, {})}
        if s_rows.shape[0] == 0:
            value = student.logits.sum() * 0.0  # type: ignore[union-attr]
        else:
            per_row = rows(torch.log_softmax(t_rows / tau, -1), torch.log_softmax(s_rows / tau, -1), **params)
            value = reduce_rows(per_row, LOSSES[term.name].reduce, seq)
        terms[term.name] = value * tau**2 if cfg.term_tau_squared(term) else value
    return terms


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
    t_out = _teacher_forward(
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
        t_out = _teacher_forward(cfg, s.teacher, originals, s.s_prompt, s.student.tokenizer)
        s.cache.misses += len(examples)
        terms.update(cross_vocab_terms(cfg, out, t_out, step // s.per_epoch, s.n_epochs, s.overrides()))
    elif cfg.kd_terms:
        # sampled answers are new every time: scored by the teacher once, never kept under the example's id
        cache = TeacherCache(s.cache.topk, s.cache.temperatures, keep=False) if on_policy else s.cache
        t_rows = _teacher_rows(cfg, cache, s.teacher, originals, s.width, s.s_prompt, s.student.tokenizer, answer_ids)
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
        _point_adapter_at(Path(checkpoint), cfg.teacher.source)
    s.say(f"saved {'LoRA adapter' if cfg.lora else 'student'} to {checkpoint}")
    return checkpoint


def _point_adapter_at(folder: Path, base_source: str) -> None:
    """peft records the base as an absolute path; name the user's source (e.g. a built-in) so it loads anywhere."""
    import json

    cfg_path = folder / "adapter_config.json"
    data = json.loads(cfg_path.read_text(encoding="utf-8"))
    data["base_model_name_or_path"] = base_source
    cfg_path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _tracker_installed(name: str) -> bool:
    import importlib.util

    module = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}.get(name, name)
    return importlib.util.find_spec(module) is not None
