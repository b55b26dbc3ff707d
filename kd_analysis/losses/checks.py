"""Input checks shared by every loss: each failure is one sentence the page or CLI can show as is."""

from __future__ import annotations

import torch

from kd_analysis.exceptions import KDLensError


def check_pair_logits(student: torch.Tensor, teacher: torch.Tensor, *, tau: float) -> None:
    if tau is None or not tau > 0:
        raise KDLensError(f"temperature τ must be > 0 (got {tau})")
    if student.shape[-1] != teacher.shape[-1]:
        raise KDLensError(
            f"student outputs have {student.shape[-1]} columns but the teacher's have "
            f"{teacher.shape[-1]}: the vocabularies or label sets differ; see the pair check on the "
            f"Models & data page (padded vocabularies are cut to the common columns there)"
        )
    if student.shape != teacher.shape:
        raise KDLensError(
            f"student and teacher outputs have different shapes {tuple(student.shape)} vs {tuple(teacher.shape)}"
        )
    if student.dim() not in (1, 2):
        raise KDLensError(
            f"logits must be [rows, classes] (got shape {tuple(student.shape)}); flatten token "
            f"positions into rows and pass a mask"
        )
    if bool((torch.isfinite(student) & torch.isfinite(teacher)).all()):
        return  # the common case costs one check; the diagnosis below runs only when something is off
    for name, t in (("student", student), ("teacher", teacher)):
        if torch.isnan(t).any():
            raise KDLensError(f"{name} logits contain NaN: check the model's precision or the inputs")
        if torch.isposinf(t).any():
            raise KDLensError(f"{name} logits contain +inf: check the model's precision or the inputs")
    s_masked, t_masked = torch.isneginf(student), torch.isneginf(teacher)
    if (s_masked != t_masked).any():
        raise KDLensError(
            "logits are -inf in one model but not the other at the same place; -inf may only mark "
            "columns absent in both (e.g. padding choices)"
        )


def check_mask(mask: torch.Tensor | None, rows: int) -> torch.Tensor | None:
    if mask is None:
        return None
    mask = mask.reshape(-1).bool()
    if mask.numel() != rows:
        raise KDLensError(f"mask has {mask.numel()} entries for {rows} rows")
    if not mask.any():
        raise KDLensError("the mask selects no rows (every position is padding or prompt)")
    return mask


def check_positive(name: str, value: float) -> None:
    if value is None or not value > 0:
        raise KDLensError(f"{name} must be > 0 (got {value})")


def upcast(x: torch.Tensor) -> torch.Tensor:
    """Half-precision logits are compared in float32; float32 and float64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
