"""Linear CKA between every teacher layer and every student layer, from minibatches (Nguyen et al. 2021).

CKA(X, Y) = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L)) with linear kernels K = X Xᵀ, L = Y Yᵀ over the same n
examples. HSIC is the unbiased estimator of Song et al. (2012), averaged over minibatches of examples, so memory
holds one minibatch of one vector per example and layer, however many examples there are. With one minibatch of
all examples it is the unbiased CKA of the whole set. It is invariant to orthogonal transforms and isotropic
scaling of either representation, and CKA(X, X) = 1."""

from __future__ import annotations

from collections.abc import Sequence

import torch

MIN_BATCH = 4  # the unbiased HSIC needs n ≥ 4


def unbiased_hsic(k: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """HSIC₁ of two n×n kernel matrices (Song et al. 2012, eq. 5), in float64."""
    n = k.shape[0]
    k = k.double().clone()
    m = m.double().clone()
    k.fill_diagonal_(0)
    m.fill_diagonal_(0)
    ones = torch.ones(n, 1, dtype=torch.float64)
    trace = (k * m.T).sum()
    sums = (ones.T @ k @ ones) * (ones.T @ m @ ones) / ((n - 1) * (n - 2))
    cross = 2 / (n - 2) * (ones.T @ k @ m @ ones)
    return ((trace + sums - cross) / (n * (n - 3))).squeeze()


class MinibatchCKA:
    """Accumulates HSIC terms for every (teacher layer, student layer) pair, one minibatch at a time."""

    def __init__(self, teacher_layers: int, student_layers: int):
        self.cross = torch.zeros(teacher_layers, student_layers, dtype=torch.float64)
        self.teacher_self = torch.zeros(teacher_layers, dtype=torch.float64)
        self.student_self = torch.zeros(student_layers, dtype=torch.float64)
        self.batches = 0
        self.examples = 0
        # a layer whose representation is the same for every example (an encoder's [CLS] embedding) has no CKA:
        # HSIC(K, K) is 0 up to rounding, and the ratio would be rounding noise
        self.teacher_varies = [False] * teacher_layers
        self.student_varies = [False] * student_layers

    def update(self, teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor]) -> None:
        """One minibatch: per layer, an [n, width] matrix of the same n examples (n ≥ 4; smaller ones are left
        out, since the unbiased estimator is undefined there)."""
        n = teacher[0].shape[0]
        if n < MIN_BATCH:
            return
        for i, x in enumerate(teacher):
            self.teacher_varies[i] |= _varies(x)
        for j, y in enumerate(student):
            self.student_varies[j] |= _varies(y)
        kt = [x.double() @ x.double().T for x in teacher]
        ks = [y.double() @ y.double().T for y in student]
        for i, k in enumerate(kt):
            self.teacher_self[i] += unbiased_hsic(k, k)
            for j, m in enumerate(ks):
                self.cross[i, j] += unbiased_hsic(k, m)
        for j, m in enumerate(ks):
            self.student_self[j] += unbiased_hsic(m, m)
        self.batches += 1
        self.examples += n

    def matrix(self) -> list[list[float | None]]:
        """CKA per (teacher layer, student layer); rows are teacher layers. None where either layer's
        representation does not vary across the examples (CKA is undefined there)."""
        if not self.batches:
            return []
        denom = torch.outer(self.teacher_self, self.student_self).clamp_min(1e-300).sqrt()
        values = (self.cross / denom).tolist()
        return [
            [v if self.teacher_varies[i] and self.student_varies[j] else None for j, v in enumerate(row)]
            for i, row in enumerate(values)
        ]


def _varies(x: torch.Tensor) -> bool:
    """Some example's representation differs from the others' by more than float32 rounding of their size."""
    x = x.double()
    return bool((x - x.mean(0)).norm() > 1e-6 * x.norm())


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float | None:
    """Unbiased linear CKA of two [n, width] representations of the same n examples (one minibatch)."""
    acc = MinibatchCKA(1, 1)
    acc.update([x], [y])
    return acc.matrix()[0][0]
