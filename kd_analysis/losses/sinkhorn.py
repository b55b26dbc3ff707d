"""SinKD's batch-wise Sinkhorn distance (Cui et al. 2024) between student and teacher output distributions.

For a batch of B rows, p_i = softmax(z_s,i/τ) and q_j = softmax(z_t,j/τ); the cost C_ij is the L1 distance
between student row i and teacher row j (squared L2 as an option); entropic OT with uniform marginals gives the
plan P, and the loss is Σ P∘C. Three things keep it usable at LLM sizes:
- the cost is never built as a B×B×V tensor: L1 runs in bounded chunks with its own backward, L2 is a matmul;
- `group_size` couples rows in blocks (e.g. 64 token positions) instead of all N×N positions at once;
- `topk` coarsens each group's distributions to the teacher's top-k tokens plus one "rest" bucket, which merges
  the tail (by the triangle inequality this never overstates the L1 cost; it is exact when the tail is empty).
Iterations run in the scaling domain when exp(−C/ε) cannot underflow and in the log domain otherwise, so small
ε is stable. The default update order (columns, then rows) matches POT's `sinkhorn_log`.

SinKD's own code differs in three ways that change the value, all available here: it normalises rows first and
columns last (`first="rows"`), its plan has total mass B (every row and column sums to 1: `mass="batch"`,
i.e. B × ours), and it multiplies the result by 0.001 (`scale`). The `sinkd-*` presets set all three.

Uniform marginals make the distance blind to which student row belongs to which example: permuting the
student's rows permutes the plan and leaves the value unchanged. That is why SinKD adds it to KD + CE rather
than replacing them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kd_analysis.exceptions import KDLensError
from kd_analysis.losses.checks import check_mask, check_pair_logits, check_positive, upcast
from kd_analysis.losses.registry import Param, register_loss

CHUNK_ELEMENTS = 1 << 24  # bounded working set for the L1 cost (64 MiB of float32)
SCALING_DOMAIN_LIMIT = 50.0  # max C/ε for which exp(−C/ε) stays far from underflow
COSTS = ("l1", "l2")
GRADIENTS = ("unrolled", "envelope")
DOMAINS = ("auto", "log", "scaling")


class _L1Cost(torch.autograd.Function):
    """C[g, i, j] = Σ_d |x[g, i, d] − y[g, j, d]| computed in chunks of rows, forward and backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, y)
        G, n, d = x.shape
        m = y.shape[1]
        out = x.new_empty(G, n, m)
        step = max(1, CHUNK_ELEMENTS // max(G * m * d, 1))
        for s in range(0, n, step):  # torch.cdist's p=1 kernel needs no [c, m, d] buffer in the forward pass
            out[:, s : s + step] = torch.cdist(x[:, s : s + step], y, p=1)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, y = ctx.saved_tensors
        G, n, d = x.shape
        m = y.shape[1]
        gx = torch.zeros_like(x) if ctx.needs_input_grad[0] else None
        gy = torch.zeros_like(y) if ctx.needs_input_grad[1] else None
        step = max(1, CHUNK_ELEMENTS // max(G * m * d, 1))
        for s in range(0, n, step):
            sign = torch.sign(x[:, s : s + step, None, :] - y[:, None, :, :])  # [G, c, m, d]
            weighted = sign * grad[:, s : s + step, :, None]
            if gx is not None:
                gx[:, s : s + step] = weighted.sum(2)
            if gy is not None:
                gy -= weighted.sum(1)
        return gx, gy


def cost_matrix(x: torch.Tensor, y: torch.Tensor, cost: str = "l1") -> torch.Tensor:
    """[G, n, m] ground cost between the rows of x [G, n, d] and y [G, m, d]."""
    if cost == "l1":
        if x.shape[0] * x.shape[1] * y.shape[1] * x.shape[2] <= CHUNK_ELEMENTS:
            return torch.cdist(x, y, p=1)  # small enough: the native kernel and its backward are fastest
        return _L1Cost.apply(x, y)
    if cost == "l2":  # squared Euclidean through a matmul: no [n, m, d] intermediate
        sq = (x * x).sum(-1)[:, :, None] + (y * y).sum(-1)[:, None, :] - 2 * x @ y.transpose(1, 2)
        return sq.clamp_min(0)
    raise KDLensError(f"unknown cost {cost!r}; use one of {', '.join(COSTS)}")


def coarsen_topk(p: torch.Tensor, q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep each group's top-k columns by teacher mass and merge the rest into one bucket: [G, n, k + 1]."""
    if k >= p.shape[-1]:
        return p, q, torch.arange(p.shape[-1], device=p.device).expand(p.shape[0], -1)
    idx = q.detach().sum(1).topk(k, dim=-1).indices  # [G, k]
    gather = idx[:, None, :]
    ps = p.gather(-1, gather.expand(-1, p.shape[1], -1))
    qs = q.gather(-1, gather.expand(-1, q.shape[1], -1))
    p_rest = (1 - ps.sum(-1, keepdim=True)).clamp_min(0)
    q_rest = (1 - qs.sum(-1, keepdim=True)).clamp_min(0)
    return torch.cat([ps, p_rest], -1), torch.cat([qs, q_rest], -1), idx


ORDERS = ("columns", "rows")


def _scaling_steps(K, iters: int):
    """Columns-first scaling iterations with uniform marginals on a NumPy array or a torch tensor K [G, n, m]:
    the row scalings u_0..u_T as [G, 1, n] and the column scalings v_1..v_T as [G, m, 1]."""
    n, m = K.shape[-2], K.shape[-1]
    u = K[..., :1].swapaxes(-1, -2) * 0 + 1  # ones [G, 1, n], same array kind, dtype and device as K
    us, vs = [u], []
    for _ in range(iters):
        v = (1.0 / m) / (u @ K).swapaxes(-1, -2)  # b / Kᵀu
        u = (1.0 / n) / (K @ v).swapaxes(-1, -2)  # a / Kv
        vs.append(v)
        us.append(u)
    return us, vs


def _scaling_backward(g, K, us, vs, eps: float):
    """d⟨g, P⟩/dC for P = diag(u_T) K diag(v_T), back through every iteration of `_scaling_steps`. The loop
    carries only vectors; K's gradient from every iteration is one product of the stacked vectors at the end."""
    n, m = K.shape[-2], K.shape[-1]
    u, v = us[-1], vs[-1]
    gk = g * (u.swapaxes(-1, -2) * v.swapaxes(-1, -2))  # P's direct dependence on K
    gpk = g * K
    gu = gpk @ v  # [G, n, 1]
    gv = u @ gpk  # [G, 1, m]
    gs_all, gr_all = [], []
    for t in range(len(vs) - 1, -1, -1):
        gs = gu.swapaxes(-1, -2) * (us[t + 1] * us[t + 1]) * -n  # u = a / s, s = K v: du/ds = −u² / a
        gv = gv + gs @ K
        gr = gv * (vs[t] * vs[t]).swapaxes(-1, -2) * -m  # v = b / r, r = Kᵀ u_prev
        gu = K @ gr.swapaxes(-1, -2)
        gv = 0  # v_{t-1} reaches the loss only through u_t
        gs_all.append(gs)
        gr_all.append(gr)
    order = range(len(vs) - 1, -1, -1)
    s_rows, r_rows = _cat(gs_all, -2), _cat(gr_all, -2)  # [G, T, n], [G, T, m]
    v_rows = _cat([vs[t] for t in order], -1).swapaxes(-1, -2)  # [G, T, m]
    u_rows = _cat([us[t] for t in order], -2)  # [G, T, n]: u_{t} before iteration t + 1
    gk = gk + s_rows.swapaxes(-1, -2) @ v_rows + u_rows.swapaxes(-1, -2) @ r_rows
    return gk * K * (-1.0 / eps)


def _cat(xs, axis: int):
    return np.concatenate(xs, axis=axis) if isinstance(xs[0], np.ndarray) else torch.cat(xs, dim=axis)


class _UnrolledScaling(torch.autograd.Function):
    """Scaling-domain Sinkhorn with uniform marginals (columns first), differentiated through every iteration by
    a written-out backward pass: the same gradient as autograd through the loop (tested to 1e-15 in float64)
    without recording ~100 graph nodes. On CPU both passes run in NumPy, where a 64×64 matrix-vector product
    costs ~1 µs against several µs for a torch call; on a GPU they run as torch batched products."""

    @staticmethod
    def forward(ctx, C: torch.Tensor, eps: float, iters: int) -> torch.Tensor:  # type: ignore[override]
        c = C.detach()
        arr = c.numpy() if c.device.type == "cpu" else c
        K = _exp(arr * (-1.0 / eps))
        us, vs = _scaling_steps(K, iters)
        P = us[-1].swapaxes(-1, -2) * K * vs[-1].swapaxes(-1, -2)
        ctx.state = (K, us, vs, eps)
        return _tensor(P, C)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        K, us, vs, eps = ctx.state
        up: Any = grad.detach().numpy() if isinstance(K, np.ndarray) else grad.detach()
        return _tensor(_scaling_backward(up, K, us, vs, eps), grad), None, None


def _exp(x):
    return np.exp(x) if isinstance(x, np.ndarray) else torch.exp(x)


def _tensor(x, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(like.dtype) if isinstance(x, np.ndarray) else x


def unrolled_plan(C: torch.Tensor, eps: float, iters: int, first: str = "columns") -> torch.Tensor:
    """The scaling-domain plan with uniform marginals and its unrolled gradient (`_UnrolledScaling`); rows-first
    is the columns-first plan of Cᵀ, transposed."""
    if first == "rows":
        return _UnrolledScaling.apply(C.transpose(1, 2).contiguous(), eps, iters).transpose(1, 2)
    return _UnrolledScaling.apply(C.contiguous(), eps, iters)


def sinkhorn_iterations(
    C: torch.Tensor,
    eps: float,
    iters: int,
    domain: str = "auto",
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    first: str = "columns",
    autograd: bool = False,
) -> torch.Tensor:
    """Plan P [G, n, m] with marginals a [G, n] and b [G, m] (uniform when None); differentiable (unrolled).
    Uniform marginals in the scaling domain take the written-out gradient (`unrolled_plan`) unless `autograd`
    asks for the plain loop (the reference the tests compare it with).

    One iteration scales the columns, then the rows (POT's order; the rows are exact at the end); with
    `first="rows"` it scales rows, then columns (SinKD's code; the teacher-side columns are exact at the end)."""
    check_positive("ε (entropic regularisation)", eps)
    if iters < 1:
        raise KDLensError(f"Sinkhorn needs at least one iteration (got {iters})")
    if first not in ORDERS:
        raise KDLensError(f"unknown Sinkhorn order {first!r}; first must be one of {', '.join(ORDERS)}")
    G, n, m = C.shape
    uniform = a is None and b is None
    a = C.new_full((G, n), 1.0 / n) if a is None else a
    b = C.new_full((G, m), 1.0 / m) if b is None else b
    if domain == "auto":
        domain = "scaling" if float(C.detach().max()) / eps < SCALING_DOMAIN_LIMIT else "log"
    if domain == "scaling" and uniform and not autograd:
        return unrolled_plan(C, eps, iters, first)
    if domain == "scaling":
        K = torch.exp(-C / eps)
        u, v = C.new_ones(G, n), C.new_ones(G, m)
        for _ in range(iters):
            if first == "columns":
                v = b / (u.unsqueeze(1) @ K).squeeze(1)  # Kᵀu
                u = a / (K @ v.unsqueeze(-1)).squeeze(-1)  # Kv
            else:
                u = a / (K @ v.unsqueeze(-1)).squeeze(-1)
                v = b / (u.unsqueeze(1) @ K).squeeze(1)
        return u[:, :, None] * K * v[:, None, :]
    if domain != "log":
        raise KDLensError(f"unknown Sinkhorn domain {domain!r}; use one of {', '.join(DOMAINS)}")
    Mr = -C / eps
    log_a, log_b = torch.log(a), torch.log(b)
    u, v = C.new_zeros(G, n), C.new_zeros(G, m)
    for _ in range(iters):
        if first == "columns":
            v = log_b - torch.logsumexp(Mr + u[:, :, None], 1)
            u = log_a - torch.logsumexp(Mr + v[:, None, :], 2)
        else:
            u = log_a - torch.logsumexp(Mr + v[:, None, :], 2)
            v = log_b - torch.logsumexp(Mr + u[:, :, None], 1)
    return torch.exp(Mr + u[:, :, None] + v[:, None, :])


def transport_plan(C: torch.Tensor, eps: float, iters: int, domain: str, first: str, gradient: str) -> torch.Tensor:
    """The plan for cost C, differentiable through the iterations ("unrolled") or held fixed ("envelope")."""
    if gradient == "envelope":
        with torch.no_grad():
            return sinkhorn_iterations(C.detach(), eps, iters, domain, first=first)
    if gradient == "unrolled":
        return sinkhorn_iterations(C, eps, iters, domain, first=first)
    raise KDLensError(f"unknown gradient mode {gradient!r}; use one of {', '.join(GRADIENTS)}")


@dataclass
class SinkhornResult:
    distance: torch.Tensor  # mean over groups of Σ P∘C (one group: the batch's transport cost)
    plan: torch.Tensor  # [G, n, m]
    cost: torch.Tensor  # [G, n, m]
    row_cost: torch.Tensor  # [N] Σ_j P_ij C_ij per student row (sums to the group's distance)
    support: torch.Tensor | None = None  # [G, k] vocabulary columns kept by top-k


def _groups(x: torch.Tensor, size: int | None) -> torch.Tensor:
    n = x.shape[0]
    size = n if not size or size >= n else size
    if n % size:
        raise KDLensError(
            f"{n} rows do not split into groups of {size}; pick a group size that divides the "
            f"number of rows (or none for the whole batch)"
        )
    return x.reshape(n // size, size, *x.shape[1:])


MASSES = ("one", "batch")


def sinkhorn_plan(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    tau: float = 1.0,
    eps: float = 0.1,
    iters: int = 20,
    cost: str = "l1",
    topk: int | None = None,
    group_size: int | None = None,
    mask: torch.Tensor | None = None,
    teacher_probs: bool = False,
    gradient: str = "unrolled",
    domain: str = "auto",
    first: str = "columns",
    mass: str = "one",
    scale: float = 1.0,
    student_probs: bool = False,
) -> SinkhornResult:
    """Distance and transport plan between the rows of a student and a teacher batch.

    One output column (regression) uses the paper's cost |y_s,i − y_t,j| on raw outputs, since the softmax of one
    value is always 1. `teacher_probs=True` takes the teacher as probabilities (e.g. one-hot gold labels), and
    `student_probs=True` the student; rows that sum to less than 1 (a cached top-k teacher) are exact only with
    `topk`, whose rest bucket then holds the missing mass.
    Gradients: "unrolled" back-propagates through every iteration (what SinKD's code and autodiff through POT's
    `sinkhorn2` compute); "envelope" holds the plan fixed and differentiates Σ P∘C through C only, which is the
    gradient of the entropic OT value at convergence (POT's `ot.solve(..., grad="envelope")`): cheaper, and a
    different gradient from the unrolled one at finite iterations.
    `mass="batch"` gives the plan total mass n per group (SinKD's code) instead of 1; `scale` multiplies the
    distance (SinKD: 0.001). The returned plan is always the mass-1 plan.
    """
    if mass not in MASSES:
        raise KDLensError(f"unknown Sinkhorn mass {mass!r}; use one of {', '.join(MASSES)}")
    check_positive("ε (entropic regularisation)", eps)
    if not (teacher_probs or student_probs):
        check_pair_logits(student_logits, teacher_logits, tau=tau)
    elif student_logits.shape != teacher_logits.shape:
        raise KDLensError(
            f"student outputs {tuple(student_logits.shape)} and teacher probabilities "
            f"{tuple(teacher_logits.shape)} differ in shape"
        )
    s = student_logits.reshape(-1, student_logits.shape[-1])
    t = teacher_logits.reshape(-1, teacher_logits.shape[-1])
    m = check_mask(mask, s.shape[0])
    if m is not None:
        s, t = s[m], t[m]
    if s.shape[0] < 2:
        raise KDLensError(
            "batch-wise Sinkhorn needs at least 2 rows: with one row the plan is trivial and the loss "
            "is just the distance between two distributions (use a batch of 2 or more, or TVD)"
        )
    if s.shape[-1] == 1:  # regression
        x, y = upcast(s), upcast(t)
        cost = "l1"
    else:
        x = upcast(s) if student_probs else torch.softmax(upcast(s) / tau, -1)
        y = upcast(t) if teacher_probs else torch.softmax(upcast(t) / tau, -1)
    x, y = _groups(x, group_size), _groups(y, group_size)
    support = None
    if topk:
        x, y, support = coarsen_topk(x, y, int(topk))
    C = cost_matrix(x, y, cost)
    P = transport_plan(C, eps, iters, domain, first, gradient)
    factor = scale * (C.shape[1] if mass == "batch" else 1)  # mass n: every plan entry is n times ours
    row = (P * C).sum(-1) * factor  # [G, n]
    return SinkhornResult(distance=row.sum(-1).mean(), plan=P, cost=C, row_cost=row.reshape(-1), support=support)


# --- the class-level distance the toy fits: one distribution pair over ordered classes ------------------------
def ordered_cost(n: int, dtype=torch.float64) -> torch.Tensor:
    k = torch.arange(n, dtype=dtype)
    return (k[:, None] - k[None, :]).abs() / (n - 1)


def class_sinkhorn_rows(
    student_probs: torch.Tensor, teacher_probs: torch.Tensor, eps: float = 0.05, iters: int = 50
) -> torch.Tensor:
    """`class_sinkhorn` for G pairs of rows at once ([G, n] each): G independent plans, one value per pair."""
    g, n = student_probs.shape
    C = ordered_cost(n, student_probs.dtype).expand(g, n, n)
    P = sinkhorn_iterations(C, eps, iters, a=teacher_probs, b=student_probs)
    return (P * C).sum((-1, -2))


def class_sinkhorn(
    student_probs: torch.Tensor, teacher_probs: torch.Tensor, eps: float = 0.05, iters: int = 50
) -> torch.Tensor:
    """Entropic OT between two distributions over ordered classes, ground cost |k − l| / (classes − 1)."""
    return class_sinkhorn_rows(student_probs.reshape(1, -1), teacher_probs.reshape(1, -1), eps, iters).sum()


def check_sinkhorn_options(options: Mapping[str, Any]) -> None:
    """The settings a config may give the sinkhorn term besides ε and iterations (the `sinkd-*` presets set
    first, mass and scale), checked when the config is read rather than at the first training step."""
    choices = {"cost": COSTS, "gradient": GRADIENTS, "domain": DOMAINS, "first": ORDERS, "mass": MASSES}
    for key, allowed in choices.items():
        if key in options and options[key] not in allowed:
            raise KDLensError(f"sinkhorn's {key} must be one of {', '.join(allowed)} (got {options[key]!r})")
    for key in ("topk", "group_size"):
        v = options.get(key)
        if v is not None and (type(v) is not int or not 1 <= v <= 1_000_000):
            raise KDLensError(f"sinkhorn's {key} must be a whole number from 1 to 1,000,000, or null (got {v!r})")
    if "scale" in options:
        v = options["scale"]
        if type(v) not in (int, float) or not 0 < v <= 1e6:  # NaN fails the comparison too
            raise KDLensError(f"sinkhorn's scale must be a number in (0, 1e6] (got {v!r})")


@register_loss(
    "sinkhorn",
    title="Sinkhorn (SinKD)",
    symmetric=False,
    batchwise=True,
    one_pair=class_sinkhorn_rows,
    params=(
        Param("eps", 0.1, 0.001, 2.0, "entropic regularisation ε (smaller: closer to exact OT)"),
        Param("iters", 20, 1, 500, "Sinkhorn iterations (SinKD uses 20)"),
    ),
    check_options=check_sinkhorn_options,
    description="Batch-wise optimal transport between student and teacher rows (L1 cost between "
    "distributions): compares the batch's geometry, but not which row is which example, so "
    "SinKD adds it to KD + CE rather than replacing them.",
)
def sinkhorn_loss(
    student_logits,
    teacher_logits,
    *,
    tau=1.0,
    mask=None,
    reduction="mean",
    tau_squared=False,
    eps=0.1,
    iters=20,
    cost="l1",
    topk=None,
    group_size=None,
    gradient="unrolled",
    domain="auto",
    first="columns",
    mass="one",
    scale=1.0,
):
    res = sinkhorn_plan(
        student_logits,
        teacher_logits,
        tau=tau,
        eps=eps,
        iters=int(iters),
        cost=cost,
        topk=topk,
        group_size=group_size,
        mask=mask,
        gradient=gradient,
        domain=domain,
        first=first,
        mass=mass,
        scale=scale,
    )
    out = res.row_cost if reduction == "none" else res.distance * (res.plan.shape[0] if reduction == "sum" else 1)
    return out * tau**2 if tau_squared else out


def block_sizes(n: int, block: int = 64, whole_below: int = 256) -> list[int]:
    """How `sinkhorn_blocks` splits n rows: one block up to `whole_below` rows, else blocks of `block`, the
    leftover rows as one more block (a single leftover row joins the last block). Every row is used."""
    if n <= whole_below:
        return [n]
    full, rest = divmod(n, block)
    if rest == 1:
        return [block] * (full - 1) + [block + 1]
    return [block] * full + ([rest] if rest else [])


def _blocks(n: int, block: int, whole_below: int):
    """(rows, weight) per block of `block_sizes`: a slice of consecutive rows and its share of all n rows."""
    start = 0
    for size in block_sizes(n, block, whole_below):
        yield slice(start, start + size), size / n
        start += size


def sinkhorn_blocks(
    student: torch.Tensor, teacher: torch.Tensor, *, block: int = 64, whole_below: int = 256, **kw
) -> torch.Tensor:
    """Batch-wise Sinkhorn over many rows (e.g. the answer tokens of a batch) in blocks of consecutive rows;
    the row-weighted mean of the block distances. Needs at least 2 rows."""
    n = student.shape[0]
    if n < 2:
        raise KDLensError("batch-wise Sinkhorn needs at least 2 rows")
    total = student.new_zeros(())
    for rows, weight in _blocks(n, block, whole_below):
        total = total + sinkhorn_plan(student[rows], teacher[rows], **kw).distance * weight
    return total


def topk_l1_cost(student_probs: torch.Tensor, teacher_probs_k: torch.Tensor, teacher_idx: torch.Tensor) -> torch.Tensor:
    """[n, n] L1 cost between student rows (full vocabulary) and teacher rows known only at their top-k tokens.

    Each pair is compared on the teacher row's own support plus one rest bucket:
    C_ij = Σ_{v ∈ S_j} |p_i(v) − q_j(v)| + |p_i(rest_j) − q_j(rest_j)|. By the triangle inequality this never
    exceeds the true L1 distance, and it is exact when k = V (or when the teacher's tail is empty and the
    student's mass outside S_j sits where the teacher's would)."""
    n, k = teacher_idx.shape
    p_at = student_probs[:, teacher_idx.reshape(-1)].reshape(n, n, k)  # student i at teacher j's support
    kept = (p_at - teacher_probs_k[None]).abs().sum(-1)
    p_rest = (1 - p_at.sum(-1)).clamp_min(0)
    q_rest = (1 - teacher_probs_k.sum(-1)).clamp_min(0)[None]
    return kept + (p_rest - q_rest).abs()


def sinkhorn_topk_teacher(
    student_probs: torch.Tensor,
    teacher_probs_k: torch.Tensor,
    teacher_idx: torch.Tensor,
    *,
    eps: float = 0.1,
    iters: int = 20,
    first: str = "columns",
    scale: float = 1.0,
    gradient: str = "unrolled",
    domain: str = "auto",
    block: int = 64,
    whole_below: int = 256,
) -> torch.Tensor:
    """Batch-wise Sinkhorn between student rows and a cached top-k teacher, in blocks of consecutive rows (as
    `sinkhorn_blocks`), with the `topk_l1_cost` ground cost; the row-weighted mean of the block distances."""
    n = student_probs.shape[0]
    if n < 2:
        raise KDLensError("batch-wise Sinkhorn needs at least 2 rows")
    total = student_probs.new_zeros(())
    for rows, weight in _blocks(n, block, whole_below):
        C = topk_l1_cost(student_probs[rows], teacher_probs_k[rows], teacher_idx[rows])[None]
        P = transport_plan(C, eps, iters, domain, first, gradient)
        total = total + (P * C).sum() * scale * weight
    return total


def sinkhorn_to_labels(student_logits: torch.Tensor, labels: torch.Tensor, **kw) -> SinkhornResult:
    """The one-hot variant: gold labels act as a teacher whose rows are one-hot distributions."""
    onehot = torch.nn.functional.one_hot(labels.long(), student_logits.shape[-1]).to(student_logits.dtype)
    return sinkhorn_plan(student_logits, onehot, teacher_probs=True, **kw)
