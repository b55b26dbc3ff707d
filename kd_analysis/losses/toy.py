"""Toy explorer: how each loss pulls a one-bump student towards a multimodal teacher over ordered classes.

The student is a discretised Gaussian (mean μ, width σ), so it cannot copy the teacher and each loss shows its
preference: forward KL covers both modes (mode-averaging), reverse KL locks onto one (mode-seeking), JS pays
little for the rare bump. A batch of one distribution makes SinKD's batch-wise plan trivial, so here the
Sinkhorn entry is the class-level Sinkhorn distance with ground cost |k − l| between ordered classes: it moves
mass a short way rather than matching probabilities class by class.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from kd_analysis.errors import KDLensError
from kd_analysis.losses.registry import LOSSES
from kd_analysis.losses.sinkhorn import sinkhorn_iterations


@dataclass
class ToyConfig:
    classes: int = 24
    modes: tuple[tuple[float, float, float], ...] = ((6.0, 1.5, 0.6), (16.0, 2.0, 0.35), (22.0, 0.6, 0.05))
    tau: float = 1.0
    eps: float = 0.05
    alpha: float = 0.1
    steps: int = 200
    lr: float = 0.1
    start_mu: float = 8.0
    start_sigma: float = 1.5
    snapshot_every: int = 10
    losses: tuple[str, ...] = field(default_factory=lambda: tuple(LOSSES))  # every registered loss


@dataclass
class ToyFit:
    loss: str
    probs: list[float]
    mu: float
    sigma: float
    final_loss: float
    rare_mass: float  # student mass within ±1.5 classes of the rarest teacher mode
    path: list[dict] = field(default_factory=list)  # {step, mu, sigma, loss}
    snapshots: list[list[float]] = field(default_factory=list)


@dataclass
class ToyResult:
    config: ToyConfig
    teacher: list[float]
    teacher_rare_mass: float
    fits: dict[str, ToyFit]

    def to_dict(self) -> dict:
        return asdict(self)


def teacher_distribution(cfg: ToyConfig) -> torch.Tensor:
    k = torch.arange(cfg.classes, dtype=torch.float64)
    dens = sum(w * torch.exp(-0.5 * ((k - mu) / sd) ** 2) / sd for mu, sd, w in cfg.modes)
    return dens / dens.sum()


def _student_logits(mu: torch.Tensor, log_sigma: torch.Tensor, classes: int) -> torch.Tensor:
    k = torch.arange(classes, dtype=torch.float64)
    return -0.5 * ((k - mu) / log_sigma.exp()) ** 2


def class_sinkhorn(student_probs: torch.Tensor, teacher_probs: torch.Tensor, eps: float, iters: int = 50) -> torch.Tensor:
    """Entropic OT between two distributions over ordered classes, ground cost |k − l| / (classes − 1)."""
    n = student_probs.shape[-1]
    k = torch.arange(n, dtype=student_probs.dtype)
    C = ((k[:, None] - k[None, :]).abs() / (n - 1))[None]
    P = sinkhorn_iterations(C, eps, iters, a=teacher_probs[None], b=student_probs[None])
    return (P * C).sum()


def _objective(name: str, cfg: ToyConfig, s_logits: torch.Tensor, t_logp: torch.Tensor) -> torch.Tensor:
    if name == "sinkhorn":
        return class_sinkhorn(torch.softmax(s_logits / cfg.tau, -1), torch.softmax(t_logp / cfg.tau, -1), cfg.eps)
    if name not in LOSSES:
        raise KDLensError(f"unknown loss {name!r}; one of {', '.join(LOSSES)}")
    params = {"alpha": cfg.alpha} if name == "skew_kl" else {}
    return LOSSES[name](s_logits[None], t_logp[None], tau=cfg.tau, **params)


def fit_toy(cfg: ToyConfig | None = None) -> ToyResult:
    cfg = cfg or ToyConfig()
    if cfg.tau <= 0 or cfg.eps <= 0:
        raise KDLensError("τ and ε must be > 0")
    teacher = teacher_distribution(cfg)
    t_logp = teacher.log()
    rare_mu = min(cfg.modes, key=lambda m: m[2])[0]
    near = (torch.arange(cfg.classes) - rare_mu).abs() <= 1.5
    fits: dict[str, ToyFit] = {}
    for name in cfg.losses:
        mu = torch.tensor(cfg.start_mu, dtype=torch.float64, requires_grad=True)
        log_sigma = torch.tensor(cfg.start_sigma, dtype=torch.float64).log().requires_grad_()
        opt = torch.optim.Adam([mu, log_sigma], lr=cfg.lr)
        path, snaps = [], []
        for step in range(cfg.steps + 1):
            logits = _student_logits(mu, log_sigma, cfg.classes)
            loss = _objective(name, cfg, logits, t_logp)
            if step % cfg.snapshot_every == 0 or step == cfg.steps:
                path.append({"step": step, "mu": mu.item(), "sigma": log_sigma.exp().item(), "loss": loss.item()})
                snaps.append(torch.softmax(logits, -1).detach().tolist())
            if step == cfg.steps:
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
        probs = torch.softmax(_student_logits(mu, log_sigma, cfg.classes), -1).detach()
        fits[name] = ToyFit(loss=name, probs=probs.tolist(), mu=mu.item(), sigma=log_sigma.exp().item(),
                            final_loss=path[-1]["loss"], rare_mass=float(probs[near].sum()), path=path,
                            snapshots=snaps)
    return ToyResult(config=cfg, teacher=teacher.tolist(), teacher_rare_mass=float(teacher[near].sum()), fits=fits)


@dataclass
class ShuffleDemo:
    """A batch where the student matches the teacher row by row, then the same student rows in another order."""
    teacher: list[list[float]]
    student: list[list[float]]
    aligned: dict[str, float]  # each loss with the rows in their places
    shuffled: dict[str, float]  # each loss after a cyclic shift of the student's rows

    def to_dict(self) -> dict:
        return asdict(self)


def shuffle_demo(rows: int = 6, classes: int = 5, seed: int = 0, tau: float = 1.0, eps: float = 0.1) -> ShuffleDemo:
    """Why SinKD keeps its KL term: batch-wise Sinkhorn with uniform marginals cannot tell a student that answers
    every example like the teacher from one that gives the same answers to the wrong examples."""
    from kd_analysis.losses.explorer import ExplorerSettings, row_shuffle_effect

    if rows < 2:
        raise KDLensError("the batch needs at least 2 rows")
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(rows, classes, generator=g, dtype=torch.float64) * 3
    student = teacher + 0.3 * torch.randn(rows, classes, generator=g, dtype=torch.float64)
    st = ExplorerSettings(tau=tau, eps=eps)
    with torch.no_grad():
        aligned = {n: float(LOSSES[n](student, teacher, tau=tau, **({"eps": eps} if LOSSES[n].batchwise else {})))
                   for n in st.losses}
    return ShuffleDemo(teacher=torch.softmax(teacher / tau, -1).tolist(), student=torch.softmax(student / tau, -1).tolist(),
                       aligned=aligned, shuffled=row_shuffle_effect(student, teacher, st))
