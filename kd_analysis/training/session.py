"""A training run's state, set up once before the first evaluation: the pair as the run uses it, the examples it
trains and evaluates on, the optimiser and its schedule, and where it reports. `loop.train` steps through it.

Four typed parts instead of one bag of forty fields, so a reader sees which part of the run a step touches.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from kd_analysis.data.example import Example
from kd_analysis.exceptions import KDLensError
from kd_analysis.models.loading import LoadedModel
from kd_analysis.runs.records import save_run_records
from kd_analysis.training import shared_teacher
from kd_analysis.training.config import TrainConfig
from kd_analysis.training.run_data import prepare_examples, text_tokens
from kd_analysis.training.run_prompts import student_prompt_fn, teacher_prompt
from kd_analysis.training.setup import (
    blockwise,
    check_bucketed,
    load_models,
    make_accelerator,
    optimisation,
    pair_for_run,
    policy_rng,
    taid_schedule,
    tracker_installed,
)
from kd_analysis.training.taid import TaidSchedule
from kd_analysis.training.teacher_cache import TeacherCache, run_temperatures

Callback = Callable[[dict[str, Any]], None]
logger = logging.getLogger("kd_analysis.training.loop")  # the run's progress lines, one logger for the whole loop


class Once:
    """Passes each distinct message to the log once: loss notes repeat every step."""

    def __init__(self, say: Callable[[str], None]):
        self.say, self.seen = say, set[str]()

    def __call__(self, message: str) -> None:
        if message not in self.seen:
            self.seen.add(message)
            self.say(message)


class Stopped(Exception):
    """Cancel pressed during an evaluation: `train` ends the run cancelled, where it was."""


@dataclass
class Pair:
    """The two models as this run uses them."""

    teacher: LoadedModel
    student: LoadedModel
    live: LoadedModel  # what trains (the student, or the teacher being fine-tuned) as accelerate wrapped it
    task: str
    width: int | None  # the vocabulary rows both models share (None: compare the models' own widths)
    cross_vocab: bool = False  # teacher and student tokenize apart: ULD on answer positions aligned by index
    fused: bool = False  # exact online mode computed block by block from hidden states (`chunked_head_loss`)
    student_prompt: Callable[[Example], str] | None = None  # a priming run's student prompt
    # generation records carry KL(teacher ‖ student) per answer token: the teacher is scored again then
    teacher_lm: tuple[LoadedModel, Callable[[Example], str] | None] | None = None
    objective: torch.nn.Module | None = None  # the rationale task's head (multitask rationales)

    @property
    def model(self) -> Any:
        """The trained module, as accelerate wrapped it."""
        return self.live.model


@dataclass
class RunExamples:
    """What the run trains and evaluates on."""

    train: list[Example]
    eval: list[Example]
    teacher_eval: list[Example]  # the eval set as the teacher reads it (rationale tasks rewrite the student's)
    originals: dict[str, Example]  # the untouched example by id: what the teacher always sees
    labelled: set[str] | None  # few-label runs: the ids whose gold label CE may use
    rationales: dict[str, Any]
    lengths: dict[str, int]  # each eval example's length in student tokens (records carry it)


@dataclass
class Schedule:
    """The optimiser and how far it goes."""

    optimizer: Any  # accelerate's wrapper of a torch optimiser
    scheduler: Any
    loader: Iterable[list[int]]
    params: list[torch.nn.Parameter]
    total: int  # optimiser steps in all
    per_epoch: int
    taid: TaidSchedule | None = None  # TAID's interpolation weight, moved after every micro-batch
    policy_rng: random.Random | None = None  # on-policy runs: draws which batches the student answers itself

    @property
    def n_epochs(self) -> int:
        """Epochs the run spans, for per-epoch temperature annealing."""
        return max(1, math.ceil(self.total / self.per_epoch))

    def overrides(self) -> dict[str, dict]:
        """Loss parameters that change during training: TAID's current t."""
        return {"taid": {"taid_t": self.taid.t}} if self.taid is not None else {}


@dataclass
class Reports:
    """Where the run says what it does."""

    say: Callable[[str], None]
    emit: Callback  # metrics for the run folder (main process only)
    out_dir: str | Path | None
    trackers: list[str]
    warnings: list[str]
    note: Callable[[str], None] = lambda text: None  # once per distinct message
    phase: Callable[[str], None] = lambda text: None  # what the run does between logged steps, in words
    should_stop: Callable[[], bool] = lambda: False
    balance_warned: set[tuple[str, str]] = field(default_factory=set)  # pairs the balance monitor warned about
    main: bool = True  # the main process: the others keep quiet

    def warn(self, message: str) -> None:
        """A warning the run's result carries (and the log shows)."""
        self.warnings.append(message)
        if self.main:
            logger.warning(message)


@dataclass
class Session:
    """What `train` sets up once and every step, evaluation and the checkpoint use."""

    cfg: TrainConfig
    acc: Any  # accelerate.Accelerator
    pair: Pair
    data: RunExamples
    schedule: Schedule
    reports: Reports
    cache: TeacherCache
    shared_key: str | None  # make-reference: students of one teacher share its rows under this key
    teacher_probs: dict[str, list[float]] | None = None  # the teacher's eval distributions (records' KL)
    step: int = 0  # optimiser steps taken so far (what a cancel during an evaluation reports)

    @property
    def live_role(self) -> str:
        return "teacher" if self.cfg.train_teacher else "student"

    def generation_hook(self, label: str) -> Callable[[int, int, int, int], None]:
        """A token hook for an evaluation that generates: says where it is, and stops it within one token when
        the run is cancelled (one process only; several stop together at the next step)."""

        def hook(done: int, total: int, tokens: int, budget: int) -> None:
            if self.acc.num_processes == 1 and self.reports.should_stop():
                raise Stopped(label)
            self.reports.phase(f"{label}: {done}/{total} examples done, generating token {tokens} of at most {budget}")

        return hook

    def save_records(self, records: list, role: str, at_step: int) -> None:
        if self.reports.out_dir and self.acc.is_main_process:
            save_run_records(
                self.reports.out_dir, records, role=role, step=at_step, data=self.cfg.data, lengths=self.data.lengths
            )


class Cancelled(Exception):
    """Cancel pressed while the teacher's rationales were computed, before the first step."""

    def __init__(self, warnings: list[str]):
        super().__init__("cancelled while the teacher's rationales were computed")
        self.warnings = warnings


def set_up(
    cfg: TrainConfig,
    out_dir: str | Path | None,
    on_metrics: Callback | None,
    should_stop: Callable[[], bool],
    models: tuple | None,
) -> Session:
    """Models, data, optimiser, teacher cache: everything before the first evaluation. Raises `Cancelled` when
    a cancel arrives while the teacher's rationales are computed."""
    from accelerate.utils import set_seed

    cfg.validate()
    trackers = [t for t in cfg.report_to if tracker_installed(t)]
    acc = make_accelerator(cfg, out_dir, trackers)
    set_seed(cfg.seed)
    reports = _reports(acc, on_metrics, out_dir, trackers, should_stop)
    pair = _pair(cfg, acc, models, reports)
    data = _examples(cfg, pair, str(acc.device), out_dir, reports)
    schedule = _schedule(cfg, acc, pair, data)
    cache = _teacher_cache(cfg, pair)
    if trackers:
        acc.init_trackers("kd-lens", config={k: str(v) for k, v in cfg.to_dict().items()})
    return Session(
        cfg=cfg,
        acc=acc,
        pair=pair,
        data=data,
        schedule=schedule,
        reports=reports,
        cache=cache,
        shared_key=shared_teacher.teacher_key(cfg, pair.task),
    )


def _reports(acc: Any, on_metrics: Callback | None, out_dir, trackers: list[str], should_stop) -> Reports:
    say = logger.info if acc.is_main_process else (lambda m: None)
    return Reports(
        say=say,
        note=Once(say),
        emit=on_metrics if (on_metrics and acc.is_main_process) else (lambda m: None),
        out_dir=out_dir,
        trackers=trackers,
        warnings=[],
        should_stop=should_stop,
        main=acc.is_main_process,
    )


def _pair(cfg: TrainConfig, acc: Any, models: tuple | None, reports: Reports) -> Pair:
    """The teacher and student, checked against each other for this run (vocabulary width, cross-tokenizer)."""
    say = reports.say
    teacher, student = models if models is not None else load_models(cfg, str(acc.device), say)
    width, cross_vocab = (None, False) if cfg.train_teacher else pair_for_run(cfg, teacher, student, say, reports.warn)
    if cfg.priming and teacher.task != "causal_lm":
        raise KDLensError(f"priming needs a causal language-model teacher (this one is {teacher.task})")
    return Pair(
        teacher=teacher,
        student=student,
        live=student,  # replaced by the prepared model in `_schedule`
        task=teacher.task,
        width=width,
        cross_vocab=cross_vocab,
        fused=not cross_vocab and blockwise(cfg, teacher, student, acc.num_processes, say),
        student_prompt=student_prompt_fn(cfg, student),
        teacher_lm=(
            (teacher, teacher_prompt(cfg, teacher))
            if not cfg.train_teacher and teacher.task == "causal_lm" and not cross_vocab
            else None
        ),
    )


def _examples(cfg: TrainConfig, pair: Pair, device: str, out_dir: str | Path | None, reports: Reports) -> RunExamples:
    """The run's train and eval sets; with rationales, the teacher's rationales and the rationale task's head."""
    train_set, eval_set, labelled = prepare_examples(cfg, pair.task, pair.student.tokenizer, reports.say, reports.warn)
    originals = {ex.id: ex for ex in train_set + eval_set}  # the teacher always sees the untouched example
    teacher_eval_set = list(eval_set)
    rationales: dict[str, Any] = {}
    if cfg.rationales:
        from kd_analysis.training import rationale_tasks

        try:
            rationales, train_set, eval_set = rationale_tasks.prepare(
                pair.teacher,
                train_set,
                eval_set,
                cfg.rationales,
                should_stop=reports.should_stop,
                cache=Path(out_dir) / rationale_tasks.CACHE_FILE if out_dir else None,
            )
        except InterruptedError:
            raise Cancelled(reports.warnings) from None
        if cfg.rationales.mode == "multitask" and cfg.rationales.weight > 0:
            pair.objective = rationale_tasks.RationaleObjective(pair.student).to(device)
    return RunExamples(
        train=train_set,
        eval=eval_set,
        teacher_eval=teacher_eval_set,
        originals=originals,
        labelled=labelled,
        rationales=rationales,
        lengths=text_tokens(pair.student.tokenizer, eval_set),
    )


def _schedule(cfg: TrainConfig, acc: Any, pair: Pair, data: RunExamples) -> Schedule:
    """The optimiser over the trained parameters, the loader and the learning-rate schedule, as accelerate
    prepared them; the prepared model becomes the pair's live model."""
    model, optimizer, loader, sched, params, per_epoch, total = optimisation(
        cfg, acc, pair.student, pair.teacher, pair.objective, data.train
    )
    pair.live = replace(pair.student, model=model)
    return Schedule(
        optimizer=optimizer,
        scheduler=sched,
        loader=loader,
        params=params,
        total=total,
        per_epoch=per_epoch,
        taid=taid_schedule(cfg),
        policy_rng=policy_rng(cfg, pair.task),
    )


def _teacher_cache(cfg: TrainConfig, pair: Pair) -> TeacherCache:
    """Where the teacher's rows are kept between epochs (top-k or nothing), after checking the run can use it."""
    language_model = pair.task in ("causal_lm", "seq2seq")
    if not cfg.online and language_model and any(t.tau_end for t in cfg.kd_terms):
        raise KDLensError(
            "an annealed temperature (tau_end) needs the teacher's full rows at every τ: set "
            "teacher_cache to none for language models"
        )
    if not cfg.online and language_model and not pair.cross_vocab:
        check_bucketed(cfg, pair.width)
    cache = TeacherCache(
        topk=None if cfg.online else cfg.teacher_topk,
        temperatures=run_temperatures(cfg.term_tau(t) for t in cfg.kd_terms),
    )
    shared = shared_teacher.shared_rows(shared_teacher.teacher_key(cfg, pair.task))
    if shared is not None:  # make-reference: one teacher pass for every student
        cache.entries = shared
    return cache
