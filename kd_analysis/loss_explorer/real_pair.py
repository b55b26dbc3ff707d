"""Real-pair explorer: every loss on one batch through the loaded teacher and student.

What gets compared depends on the task: choice distributions (multiple choice), class distributions
(classification), or next-token distributions (language models: each example's last position for the
batch-wise view, every position for per-token contributions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from kd_analysis.data.example import Example
from kd_analysis.exceptions import KDLensError
from kd_analysis.losses.registry import LOSSES
from kd_analysis.losses.sinkhorn import sinkhorn_plan
from kd_analysis.losses.sparse import sparse_kd, tail_mass, teacher_topk

MAX_BATCH = 64
TOP_TOKENS = 10


@dataclass
class ExplorerSettings:
    tau: float = 2.0
    eps: float = 0.1
    iters: int = 20
    alpha: float = 0.1
    topk: int = 256  # vocabulary support for Sinkhorn on language models
    cache_k: int = 64  # language models: the k a training run caches per token (TrainConfig.teacher_topk)
    losses: tuple[str, ...] = field(default_factory=lambda: tuple(LOSSES))  # every loss registered by now
    params: dict[str, float] = field(default_factory=dict)  # any other loss parameter, by name

    def param_values(self) -> dict[str, float]:
        """Values for the registry's loss parameters (`LossSpec.resolve` takes those it names)."""
        return {"eps": self.eps, "iters": self.iters, "alpha": self.alpha, **self.params}


@dataclass
class PairLossReport:
    kind: str  # choices | labels | tokens
    example_ids: list[str]
    example_texts: list[str]
    values: dict[str, float]
    grad_norms: dict[str, float]
    per_example: dict[str, list[float]]
    plan: list[list[float]]
    cost: list[list[float]]
    columns: list[list[str]]  # per example: names of the compared outputs (choices, classes, top tokens)
    teacher_probs: list[list[float]]
    student_probs: list[list[float]]
    gold: list[int | None]
    per_token: dict[str, list[tuple[str, float]]] = field(default_factory=dict)  # example id -> (token, KL)
    settings: dict[str, Any] = field(default_factory=dict)
    shuffled: dict[str, float] = field(default_factory=dict)  # each loss with the student's rows permuted
    # language models: what training from a top-k cache computes (k tokens + a tail bucket) and how much mass the
    # tail holds, per example, for teacher and student
    topk_values: dict[str, float] = field(default_factory=dict)
    teacher_tail: list[float] = field(default_factory=list)
    student_tail: list[float] = field(default_factory=list)
    # per example: what the probability bars compare (which outputs, which token position) and the share of the
    # teacher's and the student's probability those bars hold (1 unless only the teacher's top tokens are shown)
    shown: list[str] = field(default_factory=list)
    shown_teacher_mass: list[float] = field(default_factory=list)
    shown_student_mass: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> list[dict[str, Any]]:
        """One row per example: every loss's contribution, for CSV export."""
        rows = []
        for i, ex_id in enumerate(self.example_ids):
            row: dict[str, Any] = {"example": ex_id, "text": self.example_texts[i]}
            row.update({name: vals[i] for name, vals in self.per_example.items()})
            rows.append(row)
        return rows


def _loss_kwargs(name: str, s: ExplorerSettings) -> dict[str, Any]:
    return {"tau": s.tau, **LOSSES[name].resolve(s.param_values())}


def pair_outputs(teacher, student, examples: Sequence[Example], aligned_outputs: int | None = None):
    """The models' forward passes for the explorer (the expensive part): compute once per batch and pass to
    `explore_pair(..., outputs=...)` so that changing τ, ε, k or α only recomputes the losses."""
    examples = list(examples)[:MAX_BATCH]
    _check_batch(teacher, student, examples)
    return _outputs(teacher, student, examples, aligned_outputs)


def _check_batch(teacher, student, examples) -> None:
    if len(examples) < 2:
        raise KDLensError("pick at least 2 examples: the Sinkhorn loss couples the rows of a batch")
    if teacher.task != student.task:
        raise KDLensError(
            f"teacher ({teacher.task}) and student ({student.task}) solve different tasks; their "
            f"outputs cannot be compared (see the pair check)"
        )
    if teacher.task == "multiple_choice" and any(not ex.choices for ex in examples):
        raise KDLensError("multiple-choice models need a data set with choices (e.g. the mcq demo)")


def _outputs(teacher, student, examples: Sequence[Example], aligned: int | None):
    from kd_analysis.models.scoring import choice_scores, class_logits, lm_logits

    if teacher.task == "multiple_choice":
        t, s = choice_scores(teacher, examples), choice_scores(student, examples)
        cols = [list(ex.choices or []) + [""] * (t.shape[1] - len(ex.choices or [])) for ex in examples]
        return "choices", t, s, cols, None
    if teacher.task == "classification":
        t, s = class_logits(teacher, examples), class_logits(student, examples)
        names = [str((teacher.config.id2label or {}).get(i, i)) for i in range(t.shape[1])]
        return "labels", t, s, [names] * len(examples), None
    texts = [f"{ex.text} {ex.answer}" if ex.answer else ex.text for ex in examples]
    t_all, s_all = lm_logits(teacher, texts), lm_logits(student, texts)
    width = aligned or min(t_all.shape[-1], s_all.shape[-1])
    t_all, s_all = t_all[..., :width], s_all[..., :width]
    enc = teacher.tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    mask = enc["attention_mask"].bool()
    if t_all.shape[1] != mask.shape[1]:  # seq2seq: one decoder step
        mask = torch.ones(t_all.shape[:2], dtype=torch.bool)
    last = mask.long().sum(1) - 1 if teacher.head != "seq2seq" else torch.zeros(len(texts), dtype=torch.long)
    idx = torch.arange(len(texts))
    t, s = t_all[idx, last], s_all[idx, last]
    return "tokens", t, s, None, (t_all, s_all, mask, enc["input_ids"])


def explore_pair(
    teacher,
    student,
    examples: Sequence[Example],
    settings: ExplorerSettings | None = None,
    aligned_outputs: int | None = None,
    outputs=None,
) -> PairLossReport:
    """All losses, per-example contributions, gradient norms and the Sinkhorn plan on one batch. `outputs` from
    `pair_outputs` skips the models' forward passes."""
    st = settings or ExplorerSettings()
    examples = list(examples)[:MAX_BATCH]
    _check_batch(teacher, student, examples)
    kind, t, s, cols, tokens = outputs if outputs is not None else _outputs(teacher, student, examples, aligned_outputs)
    t, s = t.detach().float().cpu(), s.detach().float().cpu()
    values, grads, per_example = {}, {}, {}
    for name in st.losses:
        spec = LOSSES[name]
        leaf = s.clone().requires_grad_(True)
        loss = spec(leaf, t, **_loss_kwargs(name, st))
        (g,) = torch.autograd.grad(loss, leaf)
        values[name] = float(loss.detach())
        grads[name] = float(g.norm())
        with torch.no_grad():
            per_example[name] = spec(s, t, reduction="none", **_loss_kwargs(name, st)).tolist()
    shuffled = row_shuffle_effect(s, t, st)
    topk_values: dict[str, float] = {}
    t_tail: list[float] = []
    s_tail: list[float] = []
    if kind == "tokens":  # every token position of the batch, as a run compares its answer tokens
        t_all, s_all, mask, _ = tokens
        topk_values, t_tail, s_tail = cached_topk_view(
            s_all[mask].detach().float().cpu(), t_all[mask].detach().float().cpu(), st
        )
    res = sinkhorn_plan(s, t, tau=st.tau, eps=st.eps, iters=st.iters, topk=st.topk if kind == "tokens" else None)
    p_t, p_s = torch.softmax(t / st.tau, -1), torch.softmax(s / st.tau, -1)
    if kind == "tokens":
        top = p_t.topk(min(TOP_TOKENS, p_t.shape[-1]), -1).indices
        cols = [[teacher.tokenizer.decode([int(i)]) for i in row] for row in top]
        t_show, s_show = p_t.gather(-1, top), p_s.gather(-1, top)
    else:
        t_show, s_show = p_t, p_s
    per_token = _per_token_kl(teacher, examples, tokens, st.tau) if tokens is not None else {}
    return PairLossReport(
        kind=kind,
        example_ids=[ex.id for ex in examples],
        example_texts=[ex.text for ex in examples],
        values=values,
        grad_norms=grads,
        per_example=per_example,
        plan=res.plan[0].tolist(),
        cost=res.cost[0].tolist(),
        columns=cols,
        teacher_probs=t_show.tolist(),
        student_probs=s_show.tolist(),
        gold=[ex.label for ex in examples],
        per_token=per_token,
        settings=asdict(st),
        shuffled=shuffled,
        topk_values=topk_values,
        teacher_tail=t_tail,
        student_tail=s_tail,
        shown=_shown(kind, teacher, examples, tokens, len(cols[0]) if cols else 0),
        shown_teacher_mass=t_show.sum(-1).tolist(),
        shown_student_mass=s_show.sum(-1).tolist(),
    )


def _shown(kind: str, teacher, examples: Sequence[Example], tokens, width: int) -> list[str]:
    """Per example, what its probability bars compare: the answer choices, the classes, or (language models) the
    teacher's top tokens for the next token after the example's last token."""
    if kind == "choices":
        return [f"example {ex.id}: its {len(ex.choices or [])} answer choices" for ex in examples]
    if kind == "labels":
        return [f"example {ex.id}: its {width} classes" for ex in examples]
    _, _, mask, ids = tokens
    if getattr(teacher, "head", None) == "seq2seq" or mask.shape[1] != ids.shape[1]:
        return [
            f"example {ex.id}: the first token the decoder answers (teacher's top {width} tokens)" for ex in examples
        ]
    out = []
    for b, ex in enumerate(examples):
        last = int(mask[b].long().sum()) - 1
        token = teacher.tokenizer.decode([int(ids[b, last])])
        out.append(
            f"example {ex.id}: the next token after position {last} (the example's last token, "
            f"{token!r}), over the teacher's top {width} tokens"
        )
    return out


def row_shuffle_effect(
    student: torch.Tensor, teacher: torch.Tensor, settings: ExplorerSettings, seed: int = 0
) -> dict[str, float]:
    """Every loss after a fixed permutation of the student's rows (a cyclic shift: no row keeps its place).
    Row-wise divergences change; batch-wise Sinkhorn with uniform marginals does not, since it never asks which
    student row belongs to which example."""
    n = student.shape[0]
    perm = torch.roll(torch.arange(n), 1 + seed % max(n - 1, 1))
    out = {}
    with torch.no_grad():
        for name in settings.losses:
            out[name] = float(LOSSES[name](student[perm], teacher, **_loss_kwargs(name, settings)))
    return out


def cached_topk_view(
    student: torch.Tensor, teacher: torch.Tensor, settings: ExplorerSettings
) -> tuple[dict[str, float], list[float], list[float]]:
    """What a training run computes from a top-k teacher cache on these rows: each row-wise loss that has a form
    on the buckets over the k tokens plus a tail bucket, and the tail mass of teacher and student per row."""
    lp, idx, rest = teacher_topk(teacher, settings.cache_k, tau=settings.tau)
    values = {}
    with torch.no_grad():
        for name in settings.losses:
            if LOSSES[name].rows is not None and LOSSES[name].bucketed != "none":
                kw = {k: v for k, v in _loss_kwargs(name, settings).items() if k != "tau"}
                values[name] = float(sparse_kd(name, student, lp, idx, tau=settings.tau, teacher_rest=rest, **kw))
    t_tail, s_tail = tail_mass(student, lp, idx, tau=settings.tau, teacher_rest=rest)
    return values, t_tail.tolist(), s_tail.tolist()


def _per_token_kl(teacher, examples, tokens, tau: float) -> dict[str, list[tuple[str, float]]]:
    t_all, s_all, mask, ids = tokens
    kl = LOSSES["kl"]
    out = {}
    for b, ex in enumerate(examples):
        pos = mask[b].nonzero().flatten()
        vals = kl(s_all[b, pos].float(), t_all[b, pos].float(), tau=tau, reduction="none")
        toks = [teacher.tokenizer.decode([int(i)]) for i in ids[b, pos]]
        out[ex.id] = list(zip(toks, [float(v) for v in vals]))
    return out
