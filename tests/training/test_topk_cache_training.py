"""Training from the cached top-k teacher, checked by its gradient as the loop computes it (statistics on), and
by a short run against the exact online mode: the path every language-model run takes by default."""

from __future__ import annotations

import math

import pytest
import torch

from kd_analysis.data.example import Example
from kd_analysis.exceptions import KDLensError
from kd_analysis.losses import LOSSES
from kd_analysis.models.specs import ModelSpec
from kd_analysis.training.batches import AnswerRows, LMBatch
from kd_analysis.training.config import LossTerm, TrainConfig
from kd_analysis.training.objective import ce_loss, kd_loss_terms
from kd_analysis.training.teacher_cache import TeacherCache
from tests.helpers.lm_runs import arith_file, tiny_lm_config
from tests.helpers.rounding import U32, U64

pytestmark = pytest.mark.numeric  # floats compared across computation orders: rerun on other kernels

BUCKETED = [n for n, s in LOSSES.items() if s.rows is not None and s.bucketed != "none"]
V = 40


def _batch(seed: int = 0, dtype=torch.float64, scale: float = 3.0):
    """A batch of 2 × 7 positions over V tokens with prompt and padding masked (-100), as `lm_outputs` makes."""
    g = torch.Generator().manual_seed(seed)
    student = (torch.randn(2, 7, V, generator=g, dtype=torch.float64) * scale).to(dtype).requires_grad_(True)
    teacher = (torch.randn(2, 7, V, generator=g, dtype=torch.float64) * scale).to(dtype)
    labels = torch.tensor([[-100, -100, 3, 5, 7, 9, -100], [-100, 2, 4, 6, 8, 10, 12]])
    return student, teacher, labels


def _cached(teacher: torch.Tensor, labels: torch.Tensor, k: int, taus) -> object:
    """The teacher through the cache the loop fills (`TeacherCache.put_lm`), read back as one batch."""
    cache = TeacherCache(topk=k, temperatures=tuple(taus))
    examples = [Example(id=str(b), text="q") for b in range(teacher.shape[0])]
    cache.put_lm(examples, teacher, labels, None)
    return cache.lm(examples, "cpu")


def _loop_gradient(name, student, teacher, labels, k, tau, with_ce, stats=True):
    """∂(KD term)/∂(student logits) as the loop computes it: CE first (when the run has it), then the term from
    the cache with the tail-mass statistics switched on."""
    term = LossTerm(name, params=LOSSES[name].defaults(), tau=tau, tau_squared=True)  # not the reference's τ 1
    cfg = TrainConfig(teacher=ModelSpec("x"), losses=[term], tau=tau, teacher_topk=k)
    out = LMBatch(student, labels, int((labels != -100).sum()))
    rows = AnswerRows.of(out)
    if with_ce:
        ce_loss(out, [], rows)
    terms = kd_loss_terms(
        cfg, out, _cached(teacher.detach(), labels, k, (tau,)), V, rows=rows, stats={} if stats else None
    )
    (grad,) = torch.autograd.grad(terms[name], student)
    return terms[name].detach(), grad


def _reference(name, student, teacher, labels, k, tau):
    """The same term by hand in float64: full log-softmax of both rows, the teacher's top-k columns and one
    bucket holding the rest (a logsumexp over the masked row), the registered row divergence on those buckets
    (on the full rows when k = V), mean over answer positions, × τ²; its gradient by autograd."""
    keep = labels != -100
    s, t = student[keep].double(), teacher[keep].double()
    ls, lt = torch.log_softmax(s / tau, -1), torch.log_softmax(t / tau, -1)
    params = LOSSES[name].defaults()
    if k < V:
        idx = lt.topk(k, -1).indices
        rest = torch.ones_like(lt, dtype=torch.bool).scatter(-1, idx, False)
        tail = lambda lp: torch.logsumexp(lp.masked_fill(~rest, -math.inf), -1, keepdim=True)  # noqa: E731
        lt, ls = torch.cat([lt.gather(-1, idx), tail(lt)], -1), torch.cat([ls.gather(-1, idx), tail(ls)], -1)
        if LOSSES[name].bucket_aware:
            params["tail_bucket"] = True
    value = LOSSES[name].rows(lt, ls, **params).mean() * tau**2
    (grad,) = torch.autograd.grad(value, student)
    return value.detach(), grad


@pytest.mark.parametrize("with_ce", [False, True])
@pytest.mark.parametrize("tau", [1.0, 2.0])
@pytest.mark.parametrize("k", [V, 8])
@pytest.mark.parametrize("name", BUCKETED)
def test_the_cached_top_k_path_follows_the_true_gradient(name, k, tau, with_ce):
    """Every row-wise objective with a bucketed form, k = V (the dense loss) and k < V (k + 1 buckets), τ 1 and 2,
    with and without CE computed first: the loop's gradient equals the reference's to float64 rounding. A
    normaliser computed without gradient (for the statistics) and then reused by the loss fails this at once
    (cosine 0.3–0.9 with the true gradient)."""
    student, teacher, labels = _batch()
    value, grad = _loop_gradient(name, student, teacher, labels, k, tau, with_ce)
    want, want_grad = _reference(name, student, teacher, labels, k, tau)
    # Log-probabilities of magnitude ≲ |z|/τ + log V ≈ 15 are formed in another order on each side, so values and
    # gradient entries differ by a few u64 × that; 1e3 units (≈ 2e-12) allowed, observed ≤ 1e-14.
    tol = 1e3 * U64 * (float(teacher.abs().max()) / tau + math.log(V))
    assert value.item() == pytest.approx(want.item(), rel=0, abs=tol * tau**2)
    assert torch.allclose(grad, want_grad, rtol=0, atol=tol * tau)
    cos = torch.nn.functional.cosine_similarity(grad.flatten(), want_grad.flatten(), 0)
    assert cos.item() > 1 - 1e-9


@pytest.mark.parametrize("name", [n for n, s in LOSSES.items() if s.bucketed != "none"])
def test_statistics_do_not_change_the_gradient(name):
    """The tail-mass statistics are read off, never fed back: every term (Sinkhorn included) has the same
    gradient with them on and off."""
    student, teacher, labels = _batch(seed=1)
    on = _loop_gradient(name, student, teacher, labels, 8, 2.0, False, stats=True)[1]
    off = _loop_gradient(name, student, teacher, labels, 8, 2.0, False, stats=False)[1]
    assert torch.equal(on, off)


def test_a_normaliser_computed_without_gradient_is_not_kept():
    student, _, labels = _batch()
    rows = AnswerRows.of(LMBatch(student, labels, 0))
    with torch.no_grad():
        rows.lse(2.0)
    assert rows.lse(2.0).requires_grad
    kept = rows.lse(2.0)
    with torch.no_grad():
        assert not rows.lse(2.0).requires_grad
    assert rows.lse(2.0) is kept


def _confident(dtype=torch.float32):
    """A teacher sure of one token per position (its other tokens ≈ 1e-13 together at τ 1) and an unsure
    student: the case where 1 − Σ top-k cannot see the teacher's tail in float32."""
    g = torch.Generator().manual_seed(3)
    teacher = torch.randn(2, 7, V, generator=g, dtype=torch.float64)
    teacher[..., 0] += 34.0  # log(1e-13 / (V − 1)) ≈ −33.6 below the top token
    student = torch.randn(2, 7, V, generator=g, dtype=torch.float64).to(dtype).requires_grad_(True)
    return student, teacher.to(dtype), torch.tensor([[-100, -100, 3, 5, 7, 9, -100], [-100, 2, 4, 6, 8, 10, 12]])


@pytest.mark.parametrize("name", ["kl", "rkl", "akl", "alpha_beta", "taid"])
def test_a_confident_teachers_tail_survives_a_float32_cache(name):
    """The tail bucket is a logsumexp over the tail's own tokens, so a teacher tail of 1e-13 keeps its size in a
    float32 cache: the loop's value equals the float64 bucket reference to float32 rounding. With the tail taken
    as 1 − Σ top-k it is lost (floored at 1e-30), and reverse KL comes out about twice too large."""
    student, teacher, labels = _confident()
    t_tail = torch.logsumexp(torch.log_softmax(teacher[labels != -100].double(), -1)[:, 1:], -1)
    assert float(t_tail.exp().max()) < 1e-12  # the case: below float32's resolution of 1 − Σ (6e-8)
    value, _ = _loop_gradient(name, student, teacher, labels, 4, 1.0, False)
    want, _ = _reference(name, student.detach().double().requires_grad_(True), teacher.double(), labels, 4, 1.0)
    # Each bucket's log-probability is formed in float32 from terms of magnitude ≲ |z| + log V ≈ 40 (abs error a
    # few u32 × 40) and each divergence moves by at most (1 + |log p_t − log p_s|) ≈ 35 per unit of log-probability
    # error: 64 u32 × 40 × 35 ≈ 5e-3 of slack allowed; observed ≤ 2e-6. The lost tail is off by ≥ 30.
    tol = 64 * U32 * 40 * 35
    assert value.item() == pytest.approx(want.item(), rel=0, abs=tol)


def test_merged_tails_stay_below_the_dense_reverse_kl_for_a_confident_teacher():
    """Reverse KL is an f-divergence, so its bucketed value cannot exceed the dense one; from a float32 cache
    with a confident teacher that held only while the tail was computed over its own tokens."""
    student, teacher, labels = _confident()
    value, _ = _loop_gradient("rkl", student, teacher, labels, 4, 1.0, False)
    keep = labels != -100
    dense = LOSSES["rkl"](student.detach()[keep].double(), teacher[keep].double()).item()
    assert value.item() <= dense * (1 + 1e-5)


def test_a_loss_without_a_bucketed_form_is_refused_with_a_cache(tiny_dir, tmp_path):
    from kd_analysis.training.loop import train

    cfg = tiny_lm_config(tiny_dir / "llama", arith_file(tmp_path / "a.jsonl"), losses=[LossTerm("uld")])
    with pytest.raises(KDLensError, match="teacher_cache: none"):
        train(cfg)


def _run(tiny_dir, tmp_path, cached: bool, name: str = "kl"):
    """Four float64 AdamW steps of one KD term at τ 2 with τ² and without CE (for forward KL, the case a detached
    normaliser broke), the balance monitor on at every step; the cache keeps every column, so it must train
    exactly like the exact online mode."""
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.students import derive_student
    from kd_analysis.training import loop

    extra = {"teacher_topk": 10**6} if cached else {"teacher_cache": "none"}
    cfg = tiny_lm_config(
        tiny_dir / "llama",
        arith_file(tmp_path / "a.jsonl"),
        tau=2.0,
        losses=[LossTerm(name, 1.0, tau=2.0, tau_squared=True)],
        balance_every=1,
        steps=4,
        lr=3e-4,
        **extra,
    )
    teacher = load_model(ModelSpec(str(tiny_dir / "llama")))
    student = derive_student(teacher, cfg.student)
    teacher.model.double(), student.model.double()
    seen: list = []
    assert loop.train(cfg, on_metrics=seen.append, models=(teacher, student)).state == "finished"
    return [m for m in seen if "loss" in m]


@pytest.mark.parametrize("name", ["kl", "uld"])  # ULD: reduced per sequence on both paths
def test_a_cache_covering_the_vocabulary_trains_step_by_step_like_the_exact_mode(tiny_dir, tmp_path, name):
    cached, exact = _run(tiny_dir, tmp_path, True, name), _run(tiny_dir, tmp_path, False, name)
    assert len(cached) == len(exact) == 4
    key = f"loss_{name}"
    assert exact[-1][key] < exact[0][key]  # the student learns, so later steps test the gradients
    for step, (a, b) in enumerate(zip(cached, exact), 1):
        # one computation in real arithmetic: the terms differ by float64 rounding of log-probabilities of size
        # ≈ log V (cross-entropies ≈ 6), × τ²; observed ≤ 1e-14, 64 u64 × 6 × 4 allowed
        assert a[key] == pytest.approx(b[key], rel=0, abs=64 * U64 * 6 * 4), f"step {step}"
        assert a[f"grad_norm_{name}"] == pytest.approx(b[f"grad_norm_{name}"], rel=1e-10), f"step {step}"
