"""Distillation losses: a registry of divergences and SinKD's batch-wise Sinkhorn, with transport plans; the same
divergences over a cached top-k teacher (`sparse_kd`)."""

from kd_analysis.losses import divergences, objectives, sinkhorn  # fill the registry
from kd_analysis.losses.divergences import js_loss, kl_loss, rkl_loss, skew_kl_loss, soft_ce_loss, tvd_loss
from kd_analysis.losses.registry import LOSSES, LossSpec, Param, register_loss
from kd_analysis.losses.sinkhorn import SinkhornResult, cost_matrix, sinkhorn_plan, sinkhorn_to_labels
from kd_analysis.losses.sparse import bucket_logprobs, sparse_kd, tail_mass, teacher_topk_logprobs


def canonical_order() -> None:
    """Put the registry in one order everywhere (forms, tables, the CLI), whichever thread imported which module
    first: the app warms its story in a background thread, and a registration racing this package's own imports
    once put Sinkhorn before the objectives. Divergences, then objectives, then Sinkhorn, then anything else, each
    in the order it registered."""
    modules = (divergences.__name__, objectives.__name__, sinkhorn.__name__)

    def rank(name: str) -> int:
        spec = LOSSES[name]
        module = (spec.rows or spec.fn).__module__
        return modules.index(module) if module in modules else len(modules)

    for name in sorted(LOSSES, key=rank):
        LOSSES[name] = LOSSES.pop(name)


canonical_order()

__all__ = [
    "LOSSES",
    "LossSpec",
    "Param",
    "SinkhornResult",
    "bucket_logprobs",
    "canonical_order",
    "cost_matrix",
    "js_loss",
    "kl_loss",
    "register_loss",
    "rkl_loss",
    "sinkhorn_plan",
    "sinkhorn_to_labels",
    "skew_kl_loss",
    "soft_ce_loss",
    "sparse_kd",
    "tail_mass",
    "teacher_topk_logprobs",
    "tvd_loss",
]
