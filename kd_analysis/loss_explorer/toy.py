"""Toy explorer: how each loss pulls a one-bump student towards a multimodal teacher over ordered classes.

The student is a discretised Gaussian (mean μ, width σ), so it cannot copy the teacher and each loss shows its
preference (at τ = 1 forward KL covers both modes, reverse KL locks onto one, JS pays little for the rare bump;
at other settings this changes, and `describe_fits` says what each fit actually did). A batch of one
distribution makes SinKD's batch-wise plan trivial, so here the Sinkhorn entry is the class-level Sinkhorn
distance with ground cost |k − l| between ordered classes: it moves mass a short way rather than matching
probabilities class by class.

The fit has two parameters (μ, log σ), so Newton's method on the 2×2 Hessian (eigenvalues in absolute value,
a capped step, a batched Armijo line search) reaches the optimum in 5–50 iterations, where 200 Adam steps per
loss took over a second per setting and stopped short of it. The capped step keeps it in the basin that plain
gradient descent from the same start reaches (checked against thousands of gradient steps in
tests/loss_explorer/test_loss_toy_fit.py). TVD has a kink wherever a student and a teacher probability meet, which stalls
steps that rely on derivatives, so it is minimised through a smooth surrogate that tends to it (continuation)
and reported with the loss itself.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from kd_analysis.exceptions import KDLensError
from kd_analysis.losses.registry import LOSSES
from kd_analysis.losses.sinkhorn import class_sinkhorn, class_sinkhorn_rows  # noqa: F401 - the toy's Sinkhorn

METHODS = ("newton", "adam", "gd")  # newton: the fast fit; adam: the old 200-step fit; gd: plain gradient steps


@dataclass
class ToyConfig:
    classes: int = 24
    modes: tuple[tuple[float, float, float], ...] = ((6.0, 1.5, 0.6), (16.0, 2.0, 0.35), (22.0, 0.6, 0.05))
    tau: float = 1.0
    eps: float = 0.05
    alpha: float = 0.1
    iters: int = 50  # iterations of the class-level Sinkhorn (SinKD's batch-wise loss uses 20)
    params: dict[str, float] = field(default_factory=dict)  # any other loss parameter, by name
    steps: int = 200  # most iterations per loss (Newton stops on convergence, usually after 5–40)
    lr: float = 0.1  # step size of "adam" and "gd"; Newton chooses its own steps
    start_mu: float = 8.0
    start_sigma: float = 1.5
    snapshot_every: int = 10
    losses: tuple[str, ...] = field(default_factory=lambda: tuple(LOSSES))  # every registered loss
    method: str = "newton"
    gtol: float = 1e-9  # Newton: converged when ‖∇loss‖ ≤ gtol …
    ftol: float = 1e-11  # … or when the loss fell by less than ftol·|loss| over the last 5 iterations
    max_step: float = 0.5  # Newton: longest step in (μ, log σ), so that it follows the descent from the start

    def param_values(self) -> dict[str, float]:
        """Values for the registry's loss parameters (`LossSpec.resolve` takes those it names)."""
        return {"eps": self.eps, "alpha": self.alpha, "iters": self.iters, **self.params}


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
    mode_mass: list[float] = field(default_factory=list)  # student mass on each teacher mode (ToyResult.modes)
    outside_main: float = 0.0  # student mass outside the teacher's main mode
    iterations: int = 0
    evaluations: int = 0  # batched evaluations (value + gradient + Hessian, or a line search)
    converged: bool = True  # stopped by a convergence test, not by the iteration limit
    grad_norm: float = 0.0  # ‖∇‖ at the end (of the smooth surrogate for TVD)


@dataclass
class ToyResult:
    config: ToyConfig
    teacher: list[float]
    teacher_rare_mass: float
    fits: dict[str, ToyFit]
    modes: list[dict] = field(default_factory=list)  # the teacher's modes: {lo, peak, hi, mass} (classes lo..hi)
    main: int = 0  # index in `modes` of the teacher's main mode (the one with the most mass)
    teacher_outside_main: float = 0.0
    rare_class: float = 0.0  # centre of the rarest teacher mode

    def to_dict(self) -> dict:
        return asdict(self)


def teacher_distribution(cfg: ToyConfig) -> torch.Tensor:
    k = torch.arange(cfg.classes, dtype=torch.float64)
    dens = torch.stack([w * torch.exp(-0.5 * ((k - mu) / sd) ** 2) / sd for mu, sd, w in cfg.modes]).sum(0)
    return dens / dens.sum()


def _student_logits(mu: torch.Tensor, log_sigma: torch.Tensor, classes: int) -> torch.Tensor:
    k = torch.arange(classes, dtype=torch.float64)
    return -0.5 * ((k - mu) / log_sigma.exp()) ** 2


def _objective_rows(name: str, cfg: ToyConfig, s_logits: torch.Tensor, t_logp: torch.Tensor) -> torch.Tensor:
    """The loss between each student row of s_logits [G, classes] and the teacher: [G]."""
    t = t_logp.expand_as(s_logits)
    if name not in LOSSES:
        raise KDLensError(f"unknown loss {name!r}; one of {', '.join(LOSSES)}")
    spec = LOSSES[name]
    params = spec.resolve(cfg.param_values())
    if spec.batchwise:
        if spec.one_pair is None:
            raise KDLensError(f"{spec.title} couples the rows of a batch; the toy fits one distribution")
        return spec.one_pair(torch.softmax(s_logits / cfg.tau, -1), torch.softmax(t / cfg.tau, -1), **params)
    return spec(s_logits, t, tau=cfg.tau, reduction="none", **params)


def _objective(name: str, cfg: ToyConfig, s_logits: torch.Tensor, t_logp: torch.Tensor) -> torch.Tensor:
    return _objective_rows(name, cfg, s_logits.reshape(1, -1), t_logp)[0]


def _smooth_tvd(cfg: ToyConfig, s_logits: torch.Tensor, t_logp: torch.Tensor, delta: float) -> torch.Tensor:
    """½ Σ (√((p_s − p_t)² + δ²) − δ) per row: TVD with its kinks rounded off over δ, below it by at most
    ½·classes·δ."""
    p_s, p_t = torch.softmax(s_logits / cfg.tau, -1), torch.softmax(t_logp / cfg.tau, -1)
    return 0.5 * (torch.sqrt((p_s - p_t) ** 2 + delta**2) - delta).sum(-1)


def _smooth_uld(cfg: ToyConfig, s_logits: torch.Tensor, t_logp: torch.Tensor, delta: float) -> torch.Tensor:
    """Σ (√((sorted p_s − sorted p_t)² + δ²) − δ) per row: ULD with its kinks rounded off over δ."""
    p_s = torch.softmax(s_logits / cfg.tau, -1).sort(-1, descending=True).values
    p_t = torch.softmax(t_logp / cfg.tau, -1).sort(-1, descending=True).values
    return (torch.sqrt((p_s - p_t) ** 2 + delta**2) - delta).sum(-1)


# losses with kinks, minimised through smooth surrogates with a shrinking δ (each stage starts where the last ended)
SURROGATES = {"tvd": (_smooth_tvd, (1e-4, 1e-6, 1e-8)), "uld": (_smooth_uld, (1e-4, 1e-6, 1e-8))}


@dataclass
class Minimum:
    x: np.ndarray
    value: float
    grad: np.ndarray
    iterations: int
    evaluations: int
    converged: bool


LINE_SEARCH = 0.5 ** np.arange(6)  # step fractions tried at once (Armijo: the longest that lowers enough)


def newton(
    grad_hessian: Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]],
    values: Callable[[np.ndarray], np.ndarray],
    x0: Sequence[float] | np.ndarray,
    *,
    max_iter: int = 200,
    gtol: float = 1e-9,
    ftol: float = 1e-11,
    max_step: float = 0.5,
    callback: Callable[[int, np.ndarray, float], None] | None = None,
) -> Minimum:
    """Minimise a smooth function of a few parameters by Newton steps with Armijo backtracking.

    `grad_hessian(x)` gives (value, gradient, Hessian); `values(X)` the values at the rows of X (the line
    search tries several step lengths in one call). Each step uses the Hessian with its eigenvalues taken in
    absolute value (a descent direction where the function is not convex, and away from saddles) and is at most
    `max_step` long, so the iterates follow the descent from x0 rather than jumping to another basin; flat
    directions get the full capped step. Converged when ‖∇‖ ≤ gtol, when the value fell by at most ftol·|value|
    over the last 5 iterations (a flat valley, e.g. a student collapsing onto one class), or when no step lowers
    the value."""
    x = np.asarray(x0, dtype=np.float64).copy()
    f, g, H = grad_hessian(x)
    evals, it = 1, 0
    history = [f]
    while it < max_iter:
        if float(np.linalg.norm(g)) <= gtol:
            return Minimum(x, f, g, it, evals, True)
        lam, vec = np.linalg.eigh((H + H.T) / 2)
        floor = 1e-10 * max(1.0, float(np.abs(lam).max()))
        d = -(vec @ ((vec.T @ g) / np.maximum(np.abs(lam), floor)))
        length = float(np.linalg.norm(d))
        if length > max_step:
            d = d * (max_step / length)
        slope = float(g @ d)
        scale, t = 1.0, None
        while t is None:
            ts = scale * LINE_SEARCH
            vals = values(x[None, :] + ts[:, None] * d[None, :])
            evals += 1
            ok = np.isfinite(vals) & (vals <= f + 1e-4 * ts * slope)
            if ok.any():
                t = float(ts[int(np.argmax(ok))])
            elif ts[-1] < 1e-12:  # no step lowers the value: a minimum to machine precision
                return Minimum(x, f, g, it, evals, True)
            scale = ts[-1] / 2
        x = x + t * d
        f, g, H = grad_hessian(x)
        evals += 1
        it += 1
        history.append(f)
        if callback is not None:
            callback(it, x, f)
        if len(history) > 5 and history[-6] - f <= ftol * max(abs(f), 1e-12):
            return Minimum(x, f, g, it, evals, True)
    return Minimum(x, f, g, it, evals, False)


FD_STEP = 1e-5  # central differences of exact gradients, for the Hessian of losses with FINITE_DIFFERENCES
# losses whose exact Hessian is slow (double backward through 50 unrolled Sinkhorn iterations): their Hessian comes
# from central differences of exact gradients at x ± h·e_i, all 2n + 1 points in one batched pass
FINITE_DIFFERENCES = frozenset({"sinkhorn"})


def _newton_problem(rows: Callable[[torch.Tensor], torch.Tensor], classes: int, differences: bool = False):
    """(grad_hessian, values) for Newton from `rows(logits [G, classes]) -> [G]`, a loss per student row.

    Value and gradient are exact (autograd); the Hessian is exact (double backward) or, with `differences`, from
    central differences of exact gradients computed in one batched evaluation. Exact matters for TVD's smooth
    surrogate, whose curvature across a rounded kink is ~1/δ; differences are 4× cheaper through Sinkhorn."""

    def logits(z: torch.Tensor) -> torch.Tensor:
        return _student_logits(z[:, :1], z[:, 1:2], classes)

    def values(X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return rows(logits(torch.as_tensor(X, dtype=torch.float64))).numpy()

    def grad_hessian(x: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        n = x.size
        if not differences:
            z = torch.tensor(x[None, :], dtype=torch.float64, requires_grad=True)
            v = rows(logits(z))[0]
            (g,) = torch.autograd.grad(v, z, create_graph=True)
            rows_h = [torch.autograd.grad(g[0, i], z, retain_graph=i + 1 < n)[0][0] for i in range(n)]
            H = torch.stack(rows_h).detach().numpy()
            return float(v.detach()), g[0].detach().numpy().copy(), (H + H.T) / 2
        offsets = np.zeros((2 * n + 1, n))
        for i in range(n):
            offsets[1 + 2 * i, i], offsets[2 + 2 * i, i] = FD_STEP, -FD_STEP
        Z = torch.tensor(x[None, :] + offsets, dtype=torch.float64, requires_grad=True)
        v = rows(logits(Z))
        (G_t,) = torch.autograd.grad(v.sum(), Z)  # the rows are independent: row r's gradient is G[r]
        G = G_t.numpy()
        H = np.stack([(G[1 + 2 * i] - G[2 + 2 * i]) / (2 * FD_STEP) for i in range(n)], axis=1)
        return float(v[0].detach()), G[0].copy(), (H + H.T) / 2

    return grad_hessian, values


def teacher_modes(p: Sequence[float]) -> list[dict]:
    """The modes of a distribution over ordered classes: runs of classes split at the valleys between peaks.

    Each mode is {lo, peak, hi, mass}: classes lo..hi (a valley class goes with the mode on its left)."""
    p = [float(v) for v in p]
    n = len(p)
    peaks = [k for k in range(n) if (k == 0 or p[k] > p[k - 1]) and (k == n - 1 or p[k] >= p[k + 1])]
    bounds, lo = [], 0
    for a, b in itertools.pairwise(peaks):
        valley = min(range(a, b + 1), key=lambda k: p[k])
        bounds.append((lo, valley))
        lo = valley + 1
    bounds.append((lo, n - 1))
    return [{"lo": lo, "peak": peak, "hi": hi, "mass": sum(p[lo : hi + 1])} for (lo, hi), peak in zip(bounds, peaks)]


def mass_per_mode(q: Sequence[float], modes: Sequence[dict]) -> list[float]:
    q = [float(v) for v in q]
    return [sum(q[m["lo"] : m["hi"] + 1]) for m in modes]


class _Path:
    """The fit's path (a point at every iteration, or every snapshot_every steps) and snapshots of the student's
    distribution (every snapshot_every iterations and at the end)."""

    def __init__(self, name: str, cfg: ToyConfig, t_logp: torch.Tensor):
        self.name, self.cfg, self.t_logp = name, cfg, t_logp
        self.points: list[dict] = []
        self.snaps: list[list[float]] = []
        self.snap_steps: list[int] = []

    def logits(self, mu, log_sigma) -> torch.Tensor:
        return _student_logits(mu, log_sigma, self.cfg.classes)

    def true_loss(self, x: np.ndarray) -> float:
        with torch.no_grad():
            xt = torch.as_tensor(x, dtype=torch.float64)
            return float(_objective(self.name, self.cfg, self.logits(xt[0], xt[1]), self.t_logp))

    def record(self, step: int, x: np.ndarray, loss: float, final: bool = False) -> None:
        if not self.points or self.points[-1]["step"] != step:
            self.points.append({"step": step, "mu": float(x[0]), "sigma": math.exp(float(x[1])), "loss": loss})
        if (step % self.cfg.snapshot_every == 0 or final) and (not self.snap_steps or self.snap_steps[-1] != step):
            with torch.no_grad():
                xt = torch.as_tensor(x, dtype=torch.float64)
                self.snaps.append(torch.softmax(self.logits(xt[0], xt[1]), -1).tolist())
            self.snap_steps.append(step)


def _fit_newton(track: _Path) -> tuple[float, float, dict]:
    """Newton's method to convergence; a loss with surrogates is followed through each of them in turn."""
    name, cfg, t_logp = track.name, track.cfg, track.t_logp
    x0 = np.array([cfg.start_mu, math.log(cfg.start_sigma)])
    surrogate, deltas = SURROGATES.get(name, (None, (None,)))
    track.record(0, x0, track.true_loss(x0))
    x, done, evals, converged, grad = x0, 0, 0, True, np.zeros(2)
    for delta in deltas:

        def rows(lg: torch.Tensor, delta=delta) -> torch.Tensor:
            return _objective_rows(name, cfg, lg, t_logp) if surrogate is None else surrogate(cfg, lg, t_logp, delta)

        def on_iter(i: int, z: np.ndarray, v: float, offset=done) -> None:
            track.record(offset + i, z, v if surrogate is None else track.true_loss(z))

        grad_hessian, values = _newton_problem(rows, cfg.classes, differences=name in FINITE_DIFFERENCES)
        res = newton(
            grad_hessian,
            values,
            x,
            max_iter=max(cfg.steps - done, 0),
            gtol=cfg.gtol,
            ftol=cfg.ftol,
            max_step=cfg.max_step,
            callback=on_iter,
        )
        x, done, evals = res.x, done + res.iterations, evals + res.evaluations
        converged, grad = res.converged, res.grad
    if track.points[-1]["step"] == done:
        track.points[-1]["loss"] = track.true_loss(x)  # the value at the end, computed once more outside the optimiser
    track.record(done, x, track.true_loss(x), final=True)
    stats = {
        "iterations": done,
        "evaluations": evals,
        "converged": bool(converged),
        "grad_norm": float(np.linalg.norm(grad)),
    }
    return float(x[0]), math.exp(float(x[1])), stats


def _fit_gradient(track: _Path) -> tuple[float, float, dict]:
    """cfg.steps of gradient descent or Adam."""
    name, cfg, t_logp = track.name, track.cfg, track.t_logp
    mu = torch.tensor(cfg.start_mu, dtype=torch.float64, requires_grad=True)
    log_sigma = torch.tensor(cfg.start_sigma, dtype=torch.float64).log().requires_grad_()
    opt = torch.optim.Adam([mu, log_sigma], lr=cfg.lr) if cfg.method == "adam" else None
    grad_norm = 0.0
    for step in range(cfg.steps + 1):
        loss = _objective(name, cfg, track.logits(mu, log_sigma), t_logp)
        if step % cfg.snapshot_every == 0 or step == cfg.steps:
            track.record(step, np.array([mu.item(), log_sigma.item()]), loss.item(), final=step == cfg.steps)
        g_mu, g_ls = torch.autograd.grad(loss, [mu, log_sigma])
        grad_norm = math.hypot(g_mu.item(), g_ls.item())
        if step == cfg.steps:
            break
        if opt is not None:
            mu.grad, log_sigma.grad = g_mu, g_ls
            opt.step()
        else:
            with torch.no_grad():
                mu -= cfg.lr * g_mu
                log_sigma -= cfg.lr * g_ls
    stats = {
        "iterations": cfg.steps,
        "evaluations": cfg.steps + 1,
        "converged": grad_norm <= cfg.gtol,
        "grad_norm": grad_norm,
    }
    return mu.item(), log_sigma.exp().item(), stats


def _fit_one(name: str, cfg: ToyConfig, t_logp: torch.Tensor) -> tuple[float, float, list[dict], list, dict]:
    """(μ, σ, path, snapshots, stats) of one loss's fit, by cfg.method."""
    if cfg.method != "newton" and cfg.method not in METHODS:
        raise KDLensError(f"unknown toy fit method {cfg.method!r}; one of {', '.join(METHODS)}")
    track = _Path(name, cfg, t_logp)
    mu, sigma, stats = _fit_newton(track) if cfg.method == "newton" else _fit_gradient(track)
    return mu, sigma, track.points, track.snaps, stats


def fit_toy(cfg: ToyConfig | None = None) -> ToyResult:
    """Fit the one-bump student to the teacher under each loss in cfg.losses, from the same start."""
    cfg = cfg or ToyConfig()
    if not (cfg.tau > 0 and cfg.eps > 0):
        raise KDLensError("τ and ε must be > 0")
    if cfg.method not in METHODS:
        raise KDLensError(f"unknown toy fit method {cfg.method!r}; one of {', '.join(METHODS)}")
    teacher = teacher_distribution(cfg)
    t_logp = teacher.log()
    rare_mu = min(cfg.modes, key=lambda m: m[2])[0]
    near = (torch.arange(cfg.classes) - rare_mu).abs() <= 1.5
    modes = teacher_modes(teacher.tolist())
    main = max(range(len(modes)), key=lambda i: modes[i]["mass"])
    fits: dict[str, ToyFit] = {}
    for name in cfg.losses:
        mu, sigma, path, snaps, stats = _fit_one(name, cfg, t_logp)
        with torch.no_grad():
            probs = torch.softmax(
                _student_logits(
                    torch.tensor(mu, dtype=torch.float64),
                    torch.tensor(math.log(sigma), dtype=torch.float64),
                    cfg.classes,
                ),
                -1,
            )
        per_mode = mass_per_mode(probs.tolist(), modes)
        fits[name] = ToyFit(
            loss=name,
            probs=probs.tolist(),
            mu=mu,
            sigma=sigma,
            final_loss=path[-1]["loss"],
            rare_mass=float(probs[near].sum()),
            path=path,
            snapshots=snaps,
            mode_mass=per_mode,
            outside_main=max(0.0, 1.0 - per_mode[main]),
            **stats,
        )
    return ToyResult(
        config=cfg,
        teacher=teacher.tolist(),
        teacher_rare_mass=float(teacher[near].sum()),
        fits=fits,
        modes=modes,
        main=main,
        teacher_outside_main=max(0.0, 1.0 - modes[main]["mass"]),
        rare_class=float(rare_mu),
    )


# ---------------------------------------------------------------------------------------------------------------
# What each fit did, in words computed from the numbers

SEEKING, COVERING, BETWEEN = "mode-seeking", "mass-covering", "in between"
NAMES = {"kl": "Forward KL"}  # how a sentence names a loss (the registry's title otherwise)


def fit_behaviour(mode_mass: Sequence[float], teacher_mass: Sequence[float], main: int) -> tuple[str, int]:
    """(behaviour, mode) of a fitted student from its mass on each teacher mode.

    Mode-seeking: outside the mode where it puts most of its mass, the student keeps at most a quarter of what
    the teacher has there. Mass-covering: outside the teacher's main mode it keeps at least three quarters of the
    teacher's mass there. In between otherwise. `mode` is the student's dominant mode."""
    j = max(range(len(mode_mass)), key=lambda i: mode_mass[i])
    if 1.0 - mode_mass[j] <= 0.25 * (1.0 - teacher_mass[j]):
        return SEEKING, j
    if 1.0 - mode_mass[main] >= 0.75 * (1.0 - teacher_mass[main]):
        return COVERING, j
    return BETWEEN, j


def _pct(x: float) -> str:
    if x == 0 or x >= 0.095:
        return f"{x:.0%}"
    return f"{x:.1%}" if x >= 0.0095 else f"{x:.2%}" if x >= 0.00005 else "under 0.01%"


def describe_fits(result: ToyResult | dict) -> list[str]:
    """One sentence on the teacher, then one per loss saying what its fit did, all computed from `result`.

    Every claim is measured on the distributions drawn (teacher and student at τ = 1): the student's mass outside
    the teacher's main mode, against the teacher's own, decides between mode-seeking, mass-covering and in
    between; its mass on the rare mode and a width below half a class (a student collapsed onto one class) are
    reported as measured."""
    r = result.to_dict() if isinstance(result, ToyResult) else result
    modes, main = r["modes"], r["main"]
    t_mass = [m["mass"] for m in modes]
    m = modes[main]
    where = f"classes {m['lo']}–{m['hi']}"
    t_out, t_rare = r["teacher_outside_main"], r["teacher_rare_mass"]
    rare_at = r.get("rare_class", 0.0)
    if len(modes) < 2 or t_out < 0.01:
        head = (
            f"The teacher has a single mode ({where}, {_pct(1 - t_out)} of its mass): nothing is left to cover "
            "or to drop, so the losses differ only in how closely the bump matches it."
        )
    else:
        head = (
            f"The teacher has {len(modes)} modes (drawn at τ = 1): its main mode, {where}, holds "
            f"{_pct(1 - t_out)} of its mass, so {_pct(t_out)} lies outside it"
        )
        head += f", {_pct(t_rare)} on the rare mode around class {rare_at:g}." if t_rare > 0 else "."
    out = [head]
    for name, f in r["fits"].items():
        who = NAMES.get(name) or (LOSSES[name].title if name in LOSSES else name)
        s_out, s_rare = f["outside_main"], f["rare_mass"]
        kind, j = fit_behaviour(f["mode_mass"], t_mass, main)
        if len(modes) < 2 or t_out < 0.01:
            text = f"{who}: {_pct(s_out)} of the student's mass lies outside the teacher's mode."
        elif kind == SEEKING and j == main:
            text = (
                f"{who} settles on the main mode and leaves the rest (mode-seeking): only {_pct(s_out)} of "
                f"the student's mass lies outside {where}, against the teacher's {_pct(t_out)}."
            )
        elif kind == SEEKING:
            text = (
                f"{who} settles on the mode around class {modes[j]['peak']} (mode-seeking), away from the main "
                f"mode: {_pct(s_out)} of the student's mass lies outside {where}."
            )
        elif kind == COVERING:
            text = (
                f"{who} spreads the student over the modes (mass-covering): {_pct(s_out)} of its mass lies "
                f"outside the main mode, against the teacher's {_pct(t_out)}"
            )
            text += ", so the main mode gets less than the teacher gives it." if s_out > t_out + 0.05 else "."
        else:
            text = (
                f"{who} leans towards the main mode but does not drop the rest: {_pct(s_out)} of the student's "
                f"mass lies outside it, against the teacher's {_pct(t_out)}."
            )
        if t_rare > 0 and len(modes) > 1:
            if s_rare < 0.1 * t_rare:
                text += f" The rare mode gets almost nothing ({_pct(s_rare)}, the teacher {_pct(t_rare)})."
            else:
                text += f" The rare mode gets {_pct(s_rare)} (the teacher {_pct(t_rare)})."
        if f["sigma"] < 0.5:
            peak = max(range(len(f["probs"])), key=lambda k: f["probs"][k])
            text += (
                f" Its width σ = {f['sigma']:.2f} is under half a class: the student puts "
                f"{_pct(f['probs'][peak])} on class {peak} alone."
            )
        if not f.get("converged", True):
            text += f" (Not converged after {f.get('iterations', 0)} iterations.)"
        out.append(text)
    return out


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
    from kd_analysis.loss_explorer.real_pair import ExplorerSettings, row_shuffle_effect

    if rows < 2:
        raise KDLensError("the batch needs at least 2 rows")
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(rows, classes, generator=g, dtype=torch.float64) * 3
    student = teacher + 0.3 * torch.randn(rows, classes, generator=g, dtype=torch.float64)
    st = ExplorerSettings(tau=tau, eps=eps)
    with torch.no_grad():
        aligned = {
            n: float(LOSSES[n](student, teacher, tau=tau, **({"eps": eps} if LOSSES[n].batchwise else {})))
            for n in st.losses
        }
    return ShuffleDemo(
        teacher=torch.softmax(teacher / tau, -1).tolist(),
        student=torch.softmax(student / tau, -1).tolist(),
        aligned=aligned,
        shuffled=row_shuffle_effect(student, teacher, st),
    )
