"""Distillation losses: a registry of divergences and SinKD's batch-wise Sinkhorn, with transport plans; the same
divergences over a cached top-k teacher (`sparse_kd`)."""

from kd_analysis.losses import divergences, objectives, sinkhorn  # noqa: F401  (fill the registry)
from kd_analysis.losses.divergences import js_loss, kl_loss, rkl_loss, skew_kl_loss, soft_ce_loss, tvd_loss
from kd_analysis.losses.registry import LOSSES, LossSpec, Param, register_loss
from kd_analysis.losses.sinkhorn import SinkhornResult, cost_matrix, sinkhorn_plan, sinkhorn_to_labels
from kd_analysis.losses.sparse import bucket_logprobs, sparse_kd, tail_mass, teacher_topk_logprobs

__all__ = [
    "LOSSES",
    "LossSpec",
    "Param",
    "SinkhornResult",
    "bucket_logprobs",
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
